"""Read an ONNX file's ``metadata_props`` without onnx or onnxruntime: the card lives there.

An ONNX file is one protobuf ``ModelProto``. Its metadata is field 14 (repeated
``StringStringEntryProto``: key = field 1, value = field 2). This reader walks the top-level
fields and seeks past every other one (the graph and its weights are never read into memory), so a
card can be read on any install, before any backend is chosen.

Example::

    >>> from edge_sdk.model.face_model import DEMO_MODEL
    >>> "edge_sdk.card" in read_onnx_metadata(DEMO_MODEL)
    True
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import BinaryIO

from edge_sdk.errors import ArtifactError

_METADATA_PROPS = 14  # ModelProto.metadata_props
_KEY, _VALUE = 1, 2  # StringStringEntryProto.key / .value
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5  # protobuf wire types


class _Malformed(Exception):
    pass


def _varint(read: BinaryIO) -> int | None:
    """The next base-128 varint, or None at a clean end of input."""
    value = shift = 0
    while True:
        byte = read.read(1)
        if not byte:
            if shift:
                raise _Malformed("file ends inside a varint")
            return None
        value |= (byte[0] & 0x7F) << shift
        if not byte[0] & 0x80:
            return value
        shift += 7
        if shift > 63:
            raise _Malformed("varint longer than 10 bytes")


def _fields(stream: BinaryIO, end: int) -> list[tuple[int, int, int, int]]:
    """(field number, wire type, value or payload length, payload offset) of each field up to byte ``end``.

    Length-delimited payloads are skipped, not read: the caller reads the few it wants.
    """
    found = []
    while stream.tell() < end:
        tag = _varint(stream)
        if tag is None:
            break
        number, wire = tag >> 3, tag & 7
        if wire not in (_VARINT, _I64, _LEN, _I32):
            raise _Malformed(f"wire type {wire} of field {number}")
        value = {_I64: 8, _I32: 4}.get(wire) or _varint(stream)
        if value is None:
            raise _Malformed("file ends inside a field")
        offset = stream.tell()
        if wire != _VARINT:
            stream.seek(value, 1)
        found.append((number, wire, value, offset))
    if stream.tell() > end:
        raise _Malformed("a field runs past the end of the file")
    return found


def _entry(data: bytes) -> tuple[str, str]:
    """key and value of one serialized StringStringEntryProto."""
    texts = {_KEY: "", _VALUE: ""}
    for number, wire, length, offset in _fields(io.BytesIO(data), len(data)):
        if wire == _LEN and number in texts:
            texts[number] = data[offset : offset + length].decode("utf-8")
    return texts[_KEY], texts[_VALUE]


def read_onnx_metadata(path: str | Path) -> dict[str, str]:
    """The ``metadata_props`` of the ONNX file at ``path`` as a dict (ArtifactError if it is not ONNX)."""
    path = Path(path)
    size = path.stat().st_size
    metadata: dict[str, str] = {}
    try:
        with open(path, "rb") as stream:
            for number, wire, length, offset in _fields(stream, size):
                if number == _METADATA_PROPS and wire == _LEN:
                    stream.seek(offset)
                    key, value = _entry(stream.read(length))
                    metadata[key] = value
    except (_Malformed, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path}: not a readable ONNX model ({exc})") from None
    return metadata
