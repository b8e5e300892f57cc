"""Scalars from TensorBoard event files, read without TensorFlow (the API server has none).

An event file is a sequence of TFRecords (`length: uint64 LE`, `crc: uint32`, `data`,
`crc: uint32`), each an `Event` protocol buffer: `wall_time` (1, double), `step` (2, int64),
`summary` (5). A `Summary` repeats `value` (1): `tag` (1), `simple_value` (2, float) or
`tensor` (8), a `TensorProto` with `dtype` (1), `tensor_content` (4), `float_val` (5),
`double_val` (6). Only the wire format is decoded, only these fields; a record cut short (the
writer is still writing) ends the file. Checksums are not verified.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

DT_FLOAT, DT_DOUBLE = 1, 2
Scalar = tuple[str, int, float]  # tag, step, value


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, at
        shift += 7


def _fields(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) of one message: ints for varints and fixed-size values (as raw
    little-endian integers), bytes for length-delimited ones."""
    at = 0
    while at < len(data):
        key, at = _varint(data, at)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, at = _varint(data, at)
            yield number, value
        elif wire == 1:
            yield number, int.from_bytes(data[at : at + 8], "little")
            at += 8
        elif wire == 2:
            size, at = _varint(data, at)
            yield number, data[at : at + size]
            at += size
        elif wire == 5:
            yield number, int.from_bytes(data[at : at + 4], "little")
            at += 4
        else:
            raise ValueError(f"unsupported protocol buffer wire type {wire}")


def _tensor_value(data: bytes) -> float | None:
    dtype, values = DT_FLOAT, []
    for number, value in _fields(data):
        if number == 1 and isinstance(value, int):
            dtype = value
        elif number == 4 and isinstance(value, bytes):
            fmt = "<d" if dtype == DT_DOUBLE else "<f" if dtype == DT_FLOAT else None
            if fmt and len(value) == struct.calcsize(fmt):
                values.append(struct.unpack(fmt, value)[0])
        elif number in (5, 6):
            fmt, size = ("<f", 4) if number == 5 else ("<d", 8)
            if isinstance(value, bytes):  # packed
                values.extend(
                    v for (v,) in struct.iter_unpack(fmt, value[: len(value) // size * size])
                )
            else:
                values.append(struct.unpack(fmt, value.to_bytes(size, "little"))[0])
    return float(values[0]) if len(values) == 1 else None


def _summary_values(data: bytes) -> Iterator[tuple[str, float]]:
    for number, value in _fields(data):
        if number != 1 or not isinstance(value, bytes):
            continue
        tag, scalar = None, None
        for field, item in _fields(value):
            if field == 1 and isinstance(item, bytes):
                tag = item.decode(errors="replace")
            elif field == 2 and isinstance(item, int):
                scalar = struct.unpack("<f", item.to_bytes(4, "little"))[0]
            elif field == 8 and isinstance(item, bytes):
                scalar = _tensor_value(item)
        if tag is not None and scalar is not None:
            yield tag, scalar


def records(data: bytes) -> Iterator[bytes]:
    """The records of a TFRecord file, up to the first one cut short."""
    at = 0
    while at + 12 <= len(data):
        (length,) = struct.unpack_from("<Q", data, at)
        end = at + 12 + length + 4
        if end > len(data):
            return
        yield data[at + 12 : at + 12 + length]
        at = end


def scalars(data: bytes) -> Iterator[Scalar]:
    """Every scalar summary in an event file, in file order."""
    for record in records(data):
        step, summary = 0, None
        for number, value in _fields(record):
            if number == 2 and isinstance(value, int):
                step = value
            elif number == 5 and isinstance(value, bytes):
                summary = value
        if summary is not None:
            for tag, scalar in _summary_values(summary):
                yield tag, step, scalar


def is_event_file(path: str) -> bool:
    return "events.out.tfevents." in path.rsplit("/", 1)[-1]
