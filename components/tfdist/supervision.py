"""Driving the supervisor: one step against a backend, and where a launch's state is kept.

`drive` is the whole loop body of every runner (`tfdist run`, the Airflow watch triggers):
hold the launch's supervision record, observe every role, take one `tfdist.supervisor` step,
carry out its commands, keep the new state. Holding the record while observing and acting
makes each decision exactly once: a watcher that waited for the record observes the roles the
previous holder restarted, not the crash it already handled.

Records live with the launch: `record_in_file` (the local backend: a JSON file in the run
directory, held with `flock`, so every process on the machine shares it) and `record_in_memory`
(the in-memory backend, and backends whose engine keeps the counts itself).
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tfdist.backend import Backend, JobHandle, RoleStatus, SupervisionRecord
from tfdist.supervisor import Step, Supervised, SupervisionState, resume, supervise

__all__ = ["Driven", "drive", "read_record", "record_in_file", "record_in_memory", "take_over"]

STATE_FILE = "supervision.json"


@dataclass(frozen=True)
class Driven:
    """One driven step: the supervisor's step and the statuses it was taken on."""

    step: Step
    statuses: dict[str, RoleStatus]


def drive(backend: Backend, handle: JobHandle, job: Supervised, now: float | None = None) -> Driven:
    """Take one supervisor step on the launch and carry out its commands."""
    with backend.supervision(handle) as record:
        statuses = backend.statuses(handle)
        step = supervise(job, record.state, statuses, time.time() if now is None else now)
        for command in step.commands:
            backend.apply(handle, command)
        record.state = step.state
    return Driven(step=step, statuses=statuses)


def take_over(backend: Backend, handle: JobHandle) -> Step:
    """Resume a launch whose runner went away (`tfdist.supervisor.resume`), under its record."""
    with backend.supervision(handle) as record:
        step = resume(record.state)
        for command in step.commands:
            backend.apply(handle, command)
        record.state = step.state
    return step


@contextmanager
def record_in_file(directory: Path) -> Iterator[SupervisionRecord]:
    """`<directory>/supervision.json`, held with an exclusive `flock` on
    `supervision.lock` (which excludes other processes and other threads alike); replaced
    atomically when changed."""
    path = directory / STATE_FILE
    with (directory / "supervision.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        state = (
            SupervisionState.model_validate_json(path.read_text())
            if path.exists()
            else SupervisionState()
        )
        record = SupervisionRecord(state)
        yield record
        if record.state != state:
            temporary = path.with_suffix(".tmp")
            temporary.write_text(record.state.model_dump_json())
            os.replace(temporary, path)


_MEMORY: dict[str, SupervisionState] = {}
_MEMORY_LOCKS: dict[str, threading.Lock] = {}
_GUARD = threading.Lock()


@contextmanager
def record_in_memory(key: str) -> Iterator[SupervisionRecord]:
    """A record in this process's memory under `key` (a launch id), held with a lock."""
    with _GUARD:
        lock = _MEMORY_LOCKS.setdefault(key, threading.Lock())
    with lock:
        record = SupervisionRecord(_MEMORY.get(key, SupervisionState()))
        yield record
        _MEMORY[key] = record.state


def read_record(directory: Path) -> SupervisionState | None:
    """The state kept in a run directory, without holding it (for reports); None if none."""
    path = directory / STATE_FILE
    if not path.exists():
        return None
    return SupervisionState.model_validate_json(path.read_text())
