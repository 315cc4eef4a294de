"""Read an ONNX file's ``metadata_props`` without onnx or onnxruntime: the card lives there.

An ONNX file is one protobuf ``ModelProto``. Its metadata is field 14 (repeated
``StringStringEntryProto``: key = field 1, value = field 2). This reader walks the top-level
fields and seeks past every other one (the graph and its weights are never read into memory), so a
card can be read on any install, before any backend is chosen.

:func:`weights_sha256` hashes everything else (graph, weights, opsets: the file without its
``metadata_props``), so a card embedded in the file can record the hash of the model it describes.

Example::

    >>> from edge_sdk.model.face_model import DEMO_MODEL
    >>> "edge_sdk.card" in read_onnx_metadata(DEMO_MODEL)
    True
"""

from __future__ import annotations

import hashlib
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
    metadata: dict[str, str] = {}
    try:
        size = path.stat().st_size
        with open(path, "rb") as stream:
            for number, wire, length, offset in _fields(stream, size):
                if number == _METADATA_PROPS and wire == _LEN:
                    stream.seek(offset)
                    key, value = _entry(stream.read(length))
                    metadata[key] = value
    except (_Malformed, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path}: not a readable ONNX model ({exc})") from None
    except OSError as exc:  # no read permission, a directory, an I/O error
        raise ArtifactError(f"{path}: cannot read the model file ({exc.strerror or exc})") from None
    return metadata


def _field_spans(stream: BinaryIO, size: int) -> list[tuple[int, int, int]]:
    """(field number, first byte, end) of every top-level field, in file order (they tile the file)."""
    spans, start = [], 0
    for number, wire, value, offset in _fields(stream, size):
        end = offset if wire == _VARINT else offset + value
        spans.append((number, start, end))
        start = end
    return spans


def _sha256_without_metadata(stream: BinaryIO, size: int, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    for number, start, end in _field_spans(stream, size):
        if number == _METADATA_PROPS:
            continue
        stream.seek(start)
        while start < end:
            block = stream.read(min(chunk, end - start))
            if not block:
                raise _Malformed("file ends inside a field")
            digest.update(block)
            start += len(block)
    return digest.hexdigest()


def weights_sha256(model: str | Path | bytes) -> str:
    """Hex sha256 of an ONNX model (a file, or its serialized bytes) without its ``metadata_props``: the
    bytes of every other top-level field in order. Writing or replacing a card does not change it; any
    changed weight or node does (ArtifactError if it is not ONNX)."""
    where = "serialized model" if isinstance(model, bytes) else str(model)
    try:
        if isinstance(model, bytes):
            return _sha256_without_metadata(io.BytesIO(model), len(model))
        path = Path(model)
        with open(path, "rb") as stream:
            return _sha256_without_metadata(stream, path.stat().st_size)
    except _Malformed as exc:
        raise ArtifactError(f"{where}: not a readable ONNX model ({exc})") from None
    except OSError as exc:
        raise ArtifactError(f"{where}: cannot read the model file ({exc.strerror or exc})") from None
