"""The wire format between a training process and its viewers: one versioned, compact
encoding for every event and command, and a decoder that trusts nothing.

A frame is an 8-byte header, ``b"GT"``, the protocol version, the message kind, and
the body's length (big-endian uint32), then the body: a uint32 length, that many bytes
of JSON (the dataclass's fields), then the raw bytes of any array fields, in field
order. Digit images travel as uint8 (0..255 for -1..1), a quarter of float32 and no
JSON floats. A frame that is malformed, oversized, of an unknown kind or version, or
whose fields do not have the types the dataclass declares raises `ProtocolError`:
the reader then closes that one connection.
"""

from __future__ import annotations

import dataclasses
import json
import math
import struct
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from gan_tui import events as ev

MAGIC: Final = b"GT"
VERSION: Final = 1
HEADER = struct.Struct(">2sBBI")  # magic, version, kind, body length
_JSON_LEN = struct.Struct(">I")
MAX_FRAME: Final = 16 * 2**20  # a Started with thousands of epoch records fits easily
MAX_COMMAND: Final = 4096  # a command frame is tens of bytes: more is refused at its header
_MAX_ARRAY_DIMS: Final = 4


class ProtocolError(ValueError):
    """A peer sent something this version cannot read; close that connection."""


@dataclass(frozen=True)
class Hello:
    """The first frame a viewer receives: who is serving, before the history."""

    version: int
    pid: int
    run_dir: str


@dataclass(frozen=True)
class HistoryDone:
    """Everything before this frame was history; live events follow."""

    events: int


# Kinds are part of the protocol: append, never renumber.
_KINDS: tuple[type, ...] = (
    Hello, HistoryDone,
    ev.Started, ev.StepStats, ev.EpochEnd, ev.Samples, ev.Quality, ev.CheckpointSaved,
    ev.Paused, ev.Resumed, ev.Finished, ev.Error, ev.Diverged,
    ev.Pause, ev.Resume, ev.Save, ev.Sample, ev.Stop,
    ev.Notice, ev.HandedOver,
)
KIND_OF: Final = {cls: code for code, cls in enumerate(_KINDS, start=1)}
CLASS_OF: Final = {code: cls for cls, code in KIND_OF.items()}
COMMANDS: Final = (ev.Pause, ev.Resume, ev.Save, ev.Sample, ev.Stop)

Message = Any  # an event, a command, Hello or HistoryDone


# ------------------------------------------------------------------ encoding


def encode(message: Message) -> bytes:
    """One frame for `message` (a frozen dataclass of a known kind)."""
    kind = KIND_OF.get(type(message))
    if kind is None:
        raise TypeError(f"not a protocol message: {type(message).__name__}")
    fields: dict[str, Any] = {}
    blobs: list[bytes] = []
    for f in dataclasses.fields(message):
        value = getattr(message, f.name)
        if isinstance(value, np.ndarray):
            fields[f.name] = {"shape": list(value.shape)}
            blobs.append(images_to_uint8(value).tobytes())
        else:
            fields[f.name] = value
    text = json.dumps(fields, separators=(",", ":")).encode()
    body = _JSON_LEN.pack(len(text)) + text + b"".join(blobs)
    if len(body) > MAX_FRAME:
        raise ValueError(f"{type(message).__name__} frame of {len(body):,} bytes is too large")
    return HEADER.pack(MAGIC, VERSION, kind, len(body)) + body


def images_to_uint8(images: np.ndarray) -> np.ndarray:
    """Generated digits in [-1, 1] -> uint8 0..255 (the nearest of 256 grey levels)."""
    scaled = (np.clip(np.nan_to_num(images, nan=0.0), -1.0, 1.0) + 1.0) * 127.5
    return np.rint(scaled).astype(np.uint8)


def uint8_to_images(data: np.ndarray) -> np.ndarray:
    return data.astype(np.float32) / np.float32(127.5) - np.float32(1.0)


# ------------------------------------------------------------------ decoding


def command_length(header: bytes) -> tuple[int, int]:
    """As `body_length`, for what a viewer may send: commands only, and small."""
    kind, length = body_length(header)
    if CLASS_OF[kind] not in COMMANDS:
        raise ProtocolError(f"a viewer sent {CLASS_OF[kind].__name__}, not a command")
    if length > MAX_COMMAND:
        raise ProtocolError(f"a command of {length:,} bytes")
    return kind, length


def body_length(header: bytes) -> tuple[int, int]:
    """(kind, body length) from a frame's 8-byte header; ProtocolError if it is not ours."""
    if len(header) != HEADER.size:
        raise ProtocolError("truncated frame header")
    magic, version, kind, length = HEADER.unpack(header)
    if magic != MAGIC:
        raise ProtocolError("not a gan-tui frame")
    if version != VERSION:
        raise ProtocolError(f"protocol version {version}, this gan-tui speaks {VERSION}")
    if kind not in CLASS_OF:
        raise ProtocolError(f"unknown message kind {kind}")
    if length > MAX_FRAME:
        raise ProtocolError(f"frame of {length:,} bytes is over the {MAX_FRAME:,} limit")
    return kind, length


def decode_body(kind: int, body: bytes) -> Message:
    """The message of `kind` in `body`; ProtocolError for anything malformed."""
    cls = CLASS_OF.get(kind)
    if cls is None:
        raise ProtocolError(f"unknown message kind {kind}")
    if len(body) < _JSON_LEN.size:
        raise ProtocolError("truncated frame body")
    (text_len,) = _JSON_LEN.unpack_from(body)
    end = _JSON_LEN.size + text_len
    if end > len(body):
        raise ProtocolError("truncated frame body")
    try:
        fields = json.loads(body[_JSON_LEN.size:end])
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ProtocolError(f"bad JSON in a {cls.__name__} frame") from exc
    if not isinstance(fields, dict):
        raise ProtocolError(f"a {cls.__name__} frame must hold an object")
    try:
        return _build(cls, fields, memoryview(body)[end:])
    except ProtocolError:
        raise
    except (ValueError, TypeError, OverflowError, MemoryError) as exc:  # never anything else
        raise ProtocolError(f"a {cls.__name__} frame does not decode ({exc})") from None


def decode(frame: bytes) -> Message:
    """Decode one whole frame (header and body)."""
    kind, length = body_length(frame[:HEADER.size])
    body = frame[HEADER.size:]
    if len(body) != length:
        raise ProtocolError("frame length does not match its header")
    return decode_body(kind, body)


def _build(cls: type, fields: dict[str, Any], blob: memoryview) -> Message:
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in fields:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ProtocolError(f"{cls.__name__} frame lacks {f.name}")
            continue
        check = _CHECKS.get(str(f.type))
        if check is None:  # a field type this decoder was not taught: refuse, never guess
            raise ProtocolError(f"{cls.__name__}.{f.name} cannot be decoded")
        if check is _array:
            values[f.name], blob = _array(fields[f.name], blob, f"{cls.__name__}.{f.name}")
        else:
            values[f.name] = check(fields[f.name], f"{cls.__name__}.{f.name}")
    if len(blob):
        raise ProtocolError(f"{len(blob)} stray bytes after a {cls.__name__} frame")
    return cls(**values)


def _fail(where: str, want: str, value: Any) -> ProtocolError:
    return ProtocolError(f"{where} must be {want}, got {type(value).__name__}")


def _int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(where, "an int", value)
    return value


def _float(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(where, "a number", value)
    try:
        return float(value)
    except OverflowError:  # a 400-digit integer
        raise ProtocolError(f"{where} is out of range") from None


def _str(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise _fail(where, "a string", value)
    return value


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise _fail(where, "true or false", value)
    return value


def _optional(check: Any) -> Any:
    def optional(value: Any, where: str) -> Any:
        return None if value is None else check(value, where)

    return optional


def _dict(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(where, "an object", value)
    return value


def _tuple_of(check: Any) -> Any:
    def tuple_of(value: Any, where: str) -> tuple[Any, ...]:
        if not isinstance(value, list):
            raise _fail(where, "a list", value)
        return tuple(check(item, where) for item in value)

    return tuple_of


def _array(spec: Any, blob: memoryview, where: str) -> tuple[np.ndarray, memoryview]:
    """An images array whose bytes follow the JSON; returns it and the rest of the blob."""
    shape = _dict(spec, where).get("shape")
    if (not isinstance(shape, list) or not 1 <= len(shape) <= _MAX_ARRAY_DIMS
            or not all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n <= MAX_FRAME
                       for n in shape)):
        raise ProtocolError(f"{where} has a bad shape")
    size = math.prod(shape)  # Python ints: a forged shape cannot wrap around
    if size > len(blob):
        raise ProtocolError(f"{where} is truncated")
    data = np.frombuffer(blob[:size], dtype=np.uint8).reshape(shape)
    return uint8_to_images(data), blob[size:]


# Field annotation (as written in gan_tui.events, a string under `from __future__ import
# annotations`) -> its checker. A new field type fails loudly in the round-trip test.
_CHECKS: dict[str, Any] = {
    "int": _int, "float": _float, "str": _str, "bool": _bool,
    "int | None": _optional(_int), "str | None": _optional(_str),
    "dict[str, Any]": _dict,
    "tuple[int, ...]": _tuple_of(_int),
    "tuple[int, ...] | None": _optional(_tuple_of(_int)),
    "tuple[dict[str, Any], ...]": _tuple_of(_dict),
    "np.ndarray": _array,
}
