"""The KServe v2 / Triton inference protocol of the ``trackflow`` model, without a server.

One event per request. Inputs are TrackML's hit columns as named 1-D tensors of one length N
(:data:`INPUTS`): ``hit_id`` INT64, ``x``, ``y``, ``z`` FP32 in mm, ``volume_id``, ``layer_id``,
``module_id`` INT32 (INT64 accepted). The output ``track_id`` INT64 [N] is aligned with
``hit_id``. ``trackflow serve`` and the Triton repository of ``trackflow export triton`` declare
the same model, so one client drives both.

A request's body is JSON (``{"inputs": [{"name", "datatype", "shape", "data"}], ...}``) or, with
Triton's binary tensor data extension, a JSON header of ``Inference-Header-Content-Length`` bytes
followed by each input's raw little-endian bytes (``parameters.binary_data_size``), as
``tritonclient`` sends it by default. The answer is binary when the request asks for it
(``parameters.binary_data_output``, or ``binary_data`` on the requested output), else JSON.

Everything wrong with a request raises :class:`ProtocolError`, whose one-line message names the
input and the problem; the server sends it back as ``{"error": message}`` and keeps serving.
No server, no Dask here: :mod:`trackflow.service.kserve` serves it over HTTP.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from trackflow.errors import TrackflowError

if TYPE_CHECKING:
    from trackflow.pipeline.graph import EventTracks

#: model name, the same in ``trackflow serve`` and the exported Triton repository
MODEL_NAME = "trackflow"
MODEL_VERSION = "1"

#: input name -> datatypes accepted (the first one is declared in the model's metadata)
INPUTS: dict[str, tuple[str, ...]] = {
    "hit_id": ("INT64",),
    "x": ("FP32",),
    "y": ("FP32",),
    "z": ("FP32",),
    "volume_id": ("INT32", "INT64"),
    "layer_id": ("INT32", "INT64"),
    "module_id": ("INT32", "INT64"),
}
OUTPUT = "track_id"
OUTPUT_DATATYPE = "INT64"

#: KServe v2 datatype -> numpy little-endian dtype (the binary extension's byte order)
DTYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype("?"),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
#: the pandas dtype of each hits column (trackflow.events.Event's contract)
COLUMN_DTYPES = {
    "hit_id": "int64",
    "x": "float32",
    "y": "float32",
    "z": "float32",
    "volume_id": "int32",
    "layer_id": "int32",
    "module_id": "int32",
}


class ProtocolError(TrackflowError, ValueError):
    """A request the protocol refuses; ``status`` is the HTTP status to answer with (400: the
    request is wrong, 404: no such model, 413: too large)."""

    def __init__(self, message: str, status: int = 400) -> None:
        self.status = status
        super().__init__(" ".join(str(message).split()))

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.status))


@dataclass
class InferRequest:
    """A parsed request: ``hits`` (a frame in :data:`COLUMN_DTYPES`), the client's ``request_id``
    (echoed back), ``event_id`` (``parameters.event_id``, or None) and whether the answer goes
    back binary."""

    hits: pd.DataFrame
    request_id: str | None
    event_id: int | None
    binary_output: bool
    #: the ``hit_id`` input as sent (the frame's column, without making a Series of it)
    hit_ids: np.ndarray | None = None


def check_model(model: str, version: str | None) -> None:
    """ProtocolError (404) unless ``model`` is this server's model; ``version`` None or "" (gRPC's
    unset) means any. The one check of every endpoint, HTTP and gRPC."""
    if model != MODEL_NAME:
        raise ProtocolError(f"unknown model {model!r}; this server serves {MODEL_NAME!r}", 404)
    if version not in (None, "", MODEL_VERSION):
        raise ProtocolError(f"model {model!r} has no version {version!r}; it has {MODEL_VERSION!r}", 404)


def model_metadata() -> dict[str, Any]:
    """The model-metadata answer (``GET /v2/models/trackflow``)."""
    return {
        "name": MODEL_NAME,
        "versions": [MODEL_VERSION],
        "platform": "trackflow",
        "inputs": [{"name": name, "datatype": types[0], "shape": [-1]} for name, types in INPUTS.items()],
        "outputs": [{"name": OUTPUT, "datatype": OUTPUT_DATATYPE, "shape": [-1]}],
    }


def _tensor_from_json(name: str, datatype: str, shape: list[int], data: Any) -> np.ndarray:
    dtype = DTYPES[datatype]
    try:
        values = np.asarray(data, dtype=dtype)
    except (TypeError, ValueError, OverflowError) as error:
        raise ProtocolError(f"input {name!r}: data is not {datatype} numbers ({error})") from error
    return values.reshape(-1)


def _shape(name: str, raw: Any) -> list[int]:
    if not isinstance(raw, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in raw):
        raise ProtocolError(f"input {name!r}: shape must be a list of integers, got {raw!r}")
    if len(raw) != 1:
        raise ProtocolError(f"input {name!r}: shape {raw} has {len(raw)} dimensions, expected 1 ([N] hits)")
    if raw[0] < 0:
        raise ProtocolError(f"input {name!r}: shape {raw} is negative")
    return raw


def _header(body: bytes, header_length: int | None) -> tuple[dict[str, Any], memoryview]:
    """The JSON header and the binary section after it."""
    if header_length is None:
        header_bytes, binary = body, memoryview(b"")
    else:
        if not 0 < header_length <= len(body):
            raise ProtocolError(
                f"Inference-Header-Content-Length {header_length} does not fit a body of {len(body)} bytes"
            )
        header_bytes, binary = body[:header_length], memoryview(body)[header_length:]
    try:
        header = json.loads(header_bytes)
    except (UnicodeDecodeError, ValueError) as error:
        raise ProtocolError(
            f"the request is not a KServe v2 inference request: its JSON header does not parse ({error})"
        ) from error
    if not isinstance(header, dict):
        raise ProtocolError(
            "the request is not a KServe v2 inference request: its JSON header is not an object"
        )
    return header, binary


def parse_infer_request(
    body: bytes, header_length: int | None = None, max_hits: int | None = None
) -> InferRequest:
    """Parse and check one inference request (module docstring); raises ProtocolError.

    ``header_length``: the ``Inference-Header-Content-Length`` header (None: all JSON).
    ``max_hits``: the most hits one event may have (None: no limit).
    """
    header, binary = _header(body, header_length)
    inputs = header.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise ProtocolError("the request has no 'inputs' list")
    tensors: dict[str, np.ndarray] = {}
    offset = 0
    for raw in inputs:
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
            raise ProtocolError(f"an input is not an object with a 'name': {str(raw)[:80]}")
        name = raw["name"]
        datatype = raw.get("datatype")
        shape = check_input(name, datatype, raw.get("shape"), tensors)
        parameters = raw.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise ProtocolError(f"input {name!r}: 'parameters' is not an object")
        size = parameters.get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or size < 0:
                raise ProtocolError(f"input {name!r}: binary_data_size {size!r} is not a byte count")
            if offset + size > len(binary):
                raise ProtocolError(
                    f"input {name!r}: binary_data_size {size} runs past the end of the body "
                    f"({len(binary) - offset} bytes left)"
                )
            values = tensor_from_bytes(name, str(datatype), binary[offset : offset + size])
            offset += size
        elif "data" in raw:
            values = _tensor_from_json(name, str(datatype), shape, raw["data"])
        else:
            raise ProtocolError(f"input {name!r} has neither 'data' nor binary_data_size")
        if values.size != shape[0]:
            raise ProtocolError(f"input {name!r}: shape {shape} but {values.size} values")
        tensors[name] = values
    if offset != len(binary):
        raise ProtocolError(f"{len(binary) - offset} bytes after the last input's binary data")
    hits = hits_from_tensors(tensors, max_hits)
    return InferRequest(
        hits=hits,
        request_id=str(header["id"]) if "id" in header else None,
        event_id=_event_id(header),
        binary_output=_binary_output(header),
        hit_ids=tensors["hit_id"],
    )


def check_input(name: str, datatype: Any, shape: Any, seen: dict[str, np.ndarray]) -> list[int]:
    """One input's name, datatype and shape (1-D); its shape. ``seen``: the inputs read so far."""
    if name not in INPUTS:
        raise ProtocolError(f"unexpected input {name!r}; the inputs are {', '.join(INPUTS)}")
    if name in seen:
        raise ProtocolError(f"input {name!r} is given twice")
    if datatype not in INPUTS[name]:
        raise ProtocolError(f"input {name!r}: datatype {datatype!r}, expected {' or '.join(INPUTS[name])}")
    return _shape(name, shape)


def tensor_from_bytes(name: str, datatype: str, raw: bytes | memoryview) -> np.ndarray:
    """An input's raw little-endian bytes (HTTP binary extension, gRPC raw_input_contents)."""
    dtype = DTYPES[datatype]
    if len(raw) % dtype.itemsize:
        raise ProtocolError(f"input {name!r}: {len(raw)} bytes is not a whole number of {datatype}")
    return np.frombuffer(raw, dtype=dtype)


def hits_from_tensors(tensors: dict[str, np.ndarray], max_hits: int | None) -> pd.DataFrame:
    """The hits frame of an event's checked input tensors (every input there, one length, at
    least one hit, at most ``max_hits``, finite coordinates, distinct hit ids)."""
    missing = [name for name in INPUTS if name not in tensors]
    if missing:
        raise ProtocolError(f"missing input(s) {', '.join(missing)}")
    lengths = {name: len(values) for name, values in tensors.items()}
    if len(set(lengths.values())) != 1:
        raise ProtocolError("inputs differ in length: " + ", ".join(f"{k} {v}" for k, v in lengths.items()))
    n_hits = lengths["hit_id"]
    if n_hits == 0:
        raise ProtocolError("the event has no hits (shape [0])")
    if max_hits is not None and n_hits > max_hits:
        raise ProtocolError(f"the event has {n_hits} hits, more than serve.max_hits {max_hits}", 413)
    for name in ("x", "y", "z"):
        bad = int(np.count_nonzero(~np.isfinite(tensors[name])))
        if bad:
            raise ProtocolError(f"input {name!r}: {bad} value(s) are not finite")
    ordered = np.sort(tensors["hit_id"])
    if np.any(ordered[1:] == ordered[:-1]):
        raise ProtocolError("input 'hit_id': values repeat; each hit needs its own id")
    # copies: the frame owns its columns (the tensors may be views of the request's body)
    columns = {name: np.array(tensors[name], dtype=dtype) for name, dtype in COLUMN_DTYPES.items()}
    # the derived columns in the same one frame: with_derived's copy and three column inserts
    # cost more than the rest of a small event's parsing (pandas makes each a new block)
    return hits_frame(columns | derived_columns(columns["x"], columns["y"], columns["z"]))


#: the labels of the hits frame the protocol builds, made once and shared (an Index is immutable):
#: pandas 3 infers an Arrow string index for every frame built from a dict, which was a third of
#: building a small event's frame and a quarter of pickling it
HITS_COLUMNS = pd.Index([*COLUMN_DTYPES, "r", "phi", "eta"], dtype=object)


def hits_frame(columns: dict[str, np.ndarray]) -> pd.DataFrame:
    """The frame of ``columns`` (1-D arrays of one length, in :data:`HITS_COLUMNS`' order), the
    arrays taken as they are (not copied). The same frame as ``pd.DataFrame(columns)``, but for
    its labels' dtype (object: the index is :data:`HITS_COLUMNS`)."""
    arrays = list(columns.values())
    # pandas' own constructor from arrays, with no inference left to do: a fifth of
    # DataFrame(dict)'s time on a small event (a pandas without it builds the frame publicly)
    from_arrays = getattr(pd.DataFrame, "_from_arrays", None)
    if from_arrays is None or list(columns) != list(HITS_COLUMNS):
        return pd.DataFrame(columns, copy=False)
    frame: pd.DataFrame = from_arrays(
        arrays, columns=HITS_COLUMNS, index=pd.RangeIndex(len(arrays[0])), verify_integrity=False
    )
    return frame


def derived_columns(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> dict[str, np.ndarray]:
    """r (mm), phi (rad) and eta of hits at ``x``, ``y``, ``z`` (mm), computed exactly as
    :func:`trackflow.events.event.with_derived` computes them (float64, stored float32), so a
    served event is the event ``reconstruct`` reads."""
    x64, y64, z64 = (np.asarray(v, dtype=np.float64) for v in (x, y, z))
    r = np.hypot(x64, y64)
    return {
        "r": r.astype(np.float32),
        "phi": np.arctan2(y64, x64).astype(np.float32),
        "eta": np.arcsinh(np.divide(z64, r, out=np.zeros_like(z64), where=r > 0)).astype(np.float32),
    }


def _event_id(header: dict[str, Any]) -> int | None:
    parameters = header.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise ProtocolError("'parameters' of the request is not an object")
    value = parameters.get("event_id")
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise ProtocolError(f"parameter 'event_id' {value!r} is not an integer")
    return int(value)


def _binary_output(header: dict[str, Any]) -> bool:
    """Whether the answer's track_id goes back as binary data (Triton's rules: the requested
    output's ``binary_data``, else the request's ``binary_data_output``, else JSON)."""
    parameters = header.get("parameters") or {}
    binary = bool(parameters.get("binary_data_output", False))
    outputs = header.get("outputs")
    if outputs is None:
        return binary
    if not isinstance(outputs, list):
        raise ProtocolError("'outputs' of the request is not a list")
    for raw in outputs:
        name = raw.get("name") if isinstance(raw, dict) else None
        if name != OUTPUT:
            raise ProtocolError(f"unexpected output {name!r}; the output is {OUTPUT!r}")
        wanted = (raw.get("parameters") or {}).get("binary_data")
        if wanted is not None:
            binary = bool(wanted)
    return binary


def encode_infer_response(
    track_id: np.ndarray, request_id: str | None, binary: bool
) -> tuple[bytes, int | None]:
    """The answer's body and, when binary, its JSON header's length (for the
    ``Inference-Header-Content-Length`` header)."""
    values = np.ascontiguousarray(track_id, dtype=DTYPES[OUTPUT_DATATYPE])
    output: dict[str, Any] = {"name": OUTPUT, "datatype": OUTPUT_DATATYPE, "shape": [len(values)]}
    if binary:
        output["parameters"] = {"binary_data_size": values.nbytes}
    else:
        output["data"] = values.tolist()
    answer: dict[str, Any] = {"model_name": MODEL_NAME, "model_version": MODEL_VERSION, "outputs": [output]}
    if request_id is not None:
        answer["id"] = request_id
    header = json.dumps(answer, separators=(",", ":")).encode()
    if not binary:
        return header, None
    return header + values.tobytes(), len(header)


def track_ids(hits: pd.DataFrame | np.ndarray, tracks: EventTracks) -> np.ndarray:
    """The tracks' labels in the order of the request's hit ids (``hits``: its frame, or its
    ``hit_id`` array)."""
    wanted = hits if isinstance(hits, np.ndarray) else hits["hit_id"].to_numpy()
    if np.array_equal(np.asarray(tracks.hit_ids), wanted):
        return np.asarray(tracks.track_labels, dtype=np.int64)
    labels = pd.Series(np.asarray(tracks.track_labels), index=np.asarray(tracks.hit_ids))
    return labels.reindex(wanted).to_numpy(dtype=np.int64)


def error_body(message: str) -> bytes:
    """``{"error": message}``, the protocol's error answer."""
    return json.dumps({"error": message}).encode()
