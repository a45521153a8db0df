"""Node types of an estimate: cores, GPUs, memory and NIC bandwidth, parsed from ``--node``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from trackflow.errors import ConfigError
from trackflow.estimation.option_parsers import parse_bandwidth, parse_bytes


@dataclass(frozen=True)
class NodeSpec:
    """One node type: ``cores``, ``gpus``, ``memory_bytes`` and NIC ``network_bytes_per_s``."""

    name: str
    cores: int
    gpus: int = 0
    memory_bytes: float = 0.0
    network_bytes_per_s: float | None = None

    @classmethod
    def parse(cls, text: str) -> NodeSpec:
        """``NAME=cores:128,mem:512GB[,gpus:4][,net:200Gbit/s]``; ConfigError naming the text."""
        name, sep, spec = text.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"node {text!r}: expected NAME=cores:N,mem:SIZE[,gpus:N][,net:BW]")
        fields: dict[str, Any] = {"name": name.strip(), "cores": 0}
        for item in filter(None, (part.strip() for part in spec.split(","))):
            key, _, value = item.partition(":")
            key = key.strip().lower()
            option = f"node {name.strip()}: {key}"
            try:
                if key in ("cores", "cpus"):
                    fields["cores"] = int(value)
                elif key == "gpus":
                    fields["gpus"] = int(value)
                elif key in ("mem", "memory"):
                    fields["memory_bytes"] = parse_bytes(value, option)
                elif key in ("net", "nic", "network"):
                    fields["network_bytes_per_s"] = parse_bandwidth(value, option)
                else:
                    raise ConfigError(f"node {text!r}: unknown key {key!r} (cores, gpus, mem, net)")
            except ValueError as error:
                if isinstance(error, ConfigError):
                    raise
                raise ConfigError(f"{option}: cannot read {value!r} as an integer") from None
        node = cls(**fields)
        if node.cores < 1 and node.gpus < 1:
            raise ConfigError(f"node {text!r}: needs cores:N or gpus:N")
        return node

    @property
    def kind(self) -> str:
        return "gpu" if self.gpus > 0 else "cpu"


DEFAULT_NODES: tuple[NodeSpec, ...] = (
    NodeSpec("cpu", cores=128, memory_bytes=512e9, network_bytes_per_s=200e9 / 8),
    NodeSpec("gpu", cores=64, gpus=4, memory_bytes=256e9, network_bytes_per_s=4 * 200e9 / 8),
)
