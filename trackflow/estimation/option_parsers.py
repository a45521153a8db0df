"""Units of the estimate options: sizes (bytes), bandwidths (bytes/s), rates (Hz), durations (s).

Each parser takes a number (already in the base unit) or a string with a unit, and raises
:class:`trackflow.errors.ConfigError` naming the option when it cannot read it.
"""

from __future__ import annotations

import re

from trackflow.errors import ConfigError

_SI = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12, "p": 1e15}
_BINARY = {"ki": 2.0**10, "mi": 2.0**20, "gi": 2.0**30, "ti": 2.0**40, "pi": 2.0**50}
_NUMBER = r"([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"


def parse_bytes(text: str | float | int, option: str = "memory") -> float:
    """Bytes from ``"512GB"`` (SI, 512e9), ``"512GiB"`` (binary, 512·2³⁰), ``"1.5TB"`` or a number.

    A bare prefix (``"512G"``) is refused: it is ambiguous between GB and GiB.
    """
    if isinstance(text, int | float):
        return float(text)
    match = re.fullmatch(_NUMBER + r"\s*([kKmMgGtTpP]i?)?([bB])?", text.strip())
    if not match:
        raise ConfigError(f"{option}: cannot read {text!r} as a size (examples: 512GB, 256GiB)")
    value, prefix, unit = match.groups()
    if prefix and not unit:
        raise ConfigError(f"{option}: {text!r} is ambiguous, write {text}B (SI) or {text}iB")
    prefix = (prefix or "").lower()
    scale = _BINARY[prefix] if prefix.endswith("i") else _SI[prefix]
    return float(value) * scale


def parse_bandwidth(text: str | float | int, option: str = "net") -> float:
    """Bytes/s from ``"200Gbit/s"``, ``"200Gbps"``, ``"200Gb/s"`` (bits) or ``"25GB/s"`` (bytes)."""
    if isinstance(text, int | float):
        return float(text)
    match = re.fullmatch(_NUMBER + r"\s*([kKmMgGtT]?)(bit|bps|b|B)(/s)?", text.strip())
    if not match:
        raise ConfigError(f"{option}: cannot read {text!r} as a bandwidth (e.g. 200Gbit/s, 25GB/s)")
    value, prefix, unit, _ = match.groups()
    per_second = float(value) * _SI[prefix.lower()]
    return per_second if unit == "B" else per_second / 8.0


def parse_rate(text: str | float | int, option: str = "rate") -> float:
    """Events per second from ``"1kHz"``, ``"500 Hz"``, ``"2MHz"`` or a plain number (Hz)."""
    if isinstance(text, int | float):
        rate = float(text)
    else:
        match = re.fullmatch(_NUMBER + r"\s*([kKmMgG]?)(?:Hz|hz)?", text.strip())
        if not match:
            raise ConfigError(f"{option}: cannot read {text!r} as a rate (examples: 500, 1kHz)")
        value, prefix = match.groups()
        # "m" in a rate means mega: nobody asks for milli-hertz event rates
        rate = float(value) * _SI[prefix.lower()]
    if not rate > 0:
        raise ConfigError(f"{option}: the rate must be positive, got {text!r}")
    return rate


_DURATION = {"": 1.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "min": 60.0}


def parse_duration(text: str | float | int, option: str = "latency_budget") -> float:
    """Seconds from ``"0.5"``, ``"500ms"``, ``"2s"``, ``"100us"`` or ``"1min"``."""
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        match = re.fullmatch(_NUMBER + r"\s*(s|ms|us|µs|min)?", text.strip())
        if not match:
            raise ConfigError(f"{option}: cannot read {text!r} as a duration (e.g. 0.5, 500ms)")
        value, unit = match.groups()
        seconds = float(value) * _DURATION[unit or ""]
    if not seconds > 0:
        raise ConfigError(f"{option}: the duration must be positive, got {text!r}")
    return seconds
