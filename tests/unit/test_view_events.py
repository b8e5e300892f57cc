"""TensorBoard event files read without TensorFlow, by value: records encoded here by hand in the
wire format TensorFlow writes (a real chief's file is read in
tests/integration/test_training_view_ui.py)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from tfdist.storage import storage_for
from tfdist_airflow.view.events import records, scalars
from tfdist_airflow.view.model import training_series
from tfdist_airflow.view.read import Found, read_training


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def field(number: int, wire: int, payload: bytes | int) -> bytes:
    key = varint(number << 3 | wire)
    if wire == 0 and isinstance(payload, int):
        return key + varint(payload)
    assert isinstance(payload, bytes)
    return key + (varint(len(payload)) + payload if wire == 2 else payload)


def simple(tag: str, value: float) -> bytes:
    return field(1, 2, field(1, 2, tag.encode()) + field(2, 5, struct.pack("<f", value)))


def tensor(tag: str, value: float, *, packed: bool = False) -> bytes:
    """As `tf.summary.scalar` writes: a 0-d tensor, as float_val or as tensor_content."""
    if packed:
        proto = field(1, 0, 2) + field(2, 2, b"") + field(4, 2, struct.pack("<d", value))
    else:
        proto = field(1, 0, 1) + field(2, 2, b"") + field(5, 2, struct.pack("<f", value))
    metadata = field(9, 2, field(1, 2, field(1, 2, b"scalars")))
    return field(1, 2, field(1, 2, tag.encode()) + metadata + field(8, 2, proto))


def event(step: int, *values: bytes) -> bytes:
    return field(1, 1, struct.pack("<d", 1.7e9)) + field(2, 0, step) + field(5, 2, b"".join(values))


def record(data: bytes) -> bytes:
    return struct.pack("<Q", len(data)) + b"\0" * 4 + data + b"\0" * 4  # checksums not read


def event_file(*events: bytes) -> bytes:
    version = field(1, 1, struct.pack("<d", 1.7e9)) + field(3, 2, b"brain.Event:2")
    return b"".join(record(data) for data in (version, *events))


def test_scalars_of_every_encoding() -> None:
    data = event_file(
        event(50, tensor("loss", 0.5), tensor("learning_rate", 0.001, packed=True)),
        event(100, simple("steps_per_sec", 42.0), tensor("loss", 0.25)),
    )
    assert list(scalars(data)) == [
        ("loss", 50, 0.5),
        ("learning_rate", 50, 0.001),
        ("steps_per_sec", 100, 42.0),
        ("loss", 100, 0.25),
    ]


def test_a_record_being_written_ends_the_file() -> None:
    whole = event_file(event(50, tensor("loss", 0.5)))
    more = record(event(100, tensor("loss", 0.25)))
    for cut in (1, 11, len(more) - 1):
        assert [r[-4:] for r in records(whole + more[:cut])] == [r[-4:] for r in records(whole)]
        assert list(scalars(whole + more[:cut])) == [("loss", 50, 0.5)]


def test_training_series_keep_the_latest_value_of_a_step() -> None:
    found = [("loss", 100, 0.4), ("loss", 50, 0.5), ("learning_rate", 50, 0.1), ("loss", 100, 0.3)]
    found += [("accuracy", 100, 0.9)]  # not a training scalar
    loss, rate = training_series(found)
    assert (loss.metric, loss.points) == ("training loss", ((50, 0.5), (100, 0.3)))
    assert (rate.metric, rate.points) == ("learning rate", ((50, 0.1),))


def test_only_the_chiefs_files_in_the_model_directory(tmp_path: Path) -> None:
    (tmp_path / "events.out.tfevents.1.chief.0.v2").write_bytes(
        event_file(event(10, tensor("loss", 0.5)))
    )
    (tmp_path / "eval").mkdir()  # the evaluator's own
    (tmp_path / "eval" / "events.out.tfevents.2.eval.0.v2").write_bytes(
        event_file(event(10, tensor("accuracy", 0.9)))
    )
    (tmp_path / "events.out.tfevents.3.broken.v2").write_bytes(record(b"\x0f"))  # wire type 7
    found = Found()
    read_training(storage_for(str(tmp_path)), str(tmp_path), found)
    assert found.training == [("loss", 10, 0.5)]
    (problem,) = found.problems
    assert problem.startswith(f"{tmp_path}/events.out.tfevents.3.broken.v2: not a TensorBoard")


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 2**40])
def test_varints_round_trip(value: int) -> None:
    (decoded,) = scalars(event_file(event(value, tensor("loss", 1.0))))
    assert decoded[1] == value
