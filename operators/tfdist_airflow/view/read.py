"""Reads what a run wrote for the Training view: eval records, the blessing, the roles'
progress records and logs.

No Airflow here: paths come from the launch task's XCom, storage from `tfdist.storage` (local
disk or gs://). Whatever cannot be read becomes a problem line on the page, not an error page.
In a local run directory only the roles' logs, process and exit records are opened, never
their launch records (which hold the trainer's environment).
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tfdist.gate import Blessing, read_blessing
from tfdist.launch.local import RESTART_MARKER
from tfdist.records import PROGRESS_DIR, Admission, EvalRecord, RoleProgress, read_admission
from tfdist.storage import Storage, join
from tfdist.supervision import read_record
from tfdist.supervisor import SupervisionState
from tfdist_airflow.view.events import Scalar, is_event_file, scalars
from tfdist_airflow.view.model import Progress, parse_progress
from tfdist_airflow.view.states import RoleExit

LOG_TAIL_BYTES = 64 * 1024
ROLE_NAME = re.compile(r"[a-z]+-[0-9]+")
StorageOf = Callable[[str], Storage]


@dataclass
class Found:
    """What was read for one step, and what could not be."""

    records: list[EvalRecord] = field(default_factory=list)
    blessing: Blessing | None = None
    progress: dict[str, Progress] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    supervision: SupervisionState | None = None
    training: list[Scalar] = field(default_factory=list)  # the chief's TensorBoard scalars
    admission: Admission | None = None  # the launch's wait in a queue (Kueue)


def _is_record(path: str) -> bool:
    name = path.rsplit("/", 1)[-1]
    return name.startswith("record-") and name.endswith(".json")


def read_records(storage: Storage, eval_dir: str, found: Found) -> None:
    for path in filter(_is_record, storage.list(eval_dir)):
        text = storage.read_text(path)
        if text is None:
            continue  # removed between listing and reading
        try:
            found.records.append(EvalRecord.model_validate_json(text))
        except ValidationError as error:
            found.problems.append(f"{path}: not an eval record ({error.error_count()} errors)")


def read_training(storage: Storage, model_dir: str, found: Found) -> None:
    """The scalars of the TensorBoard event files directly in `model_dir` (the chief's; the
    evaluator's are in its eval directory), oldest file first."""
    prefix = model_dir.rstrip("/") + "/"
    for path in storage.list(model_dir):
        if not is_event_file(path) or "/" in path.removeprefix(prefix):
            continue
        data = storage.read_bytes(path)
        if data is None:
            continue
        try:
            found.training.extend(scalars(data))
        except (ValueError, IndexError, struct.error) as error:
            found.problems.append(f"{path}: not a TensorBoard event file ({error})")


def log_tail(path: Path, size: int = LOG_TAIL_BYTES) -> str:
    """The last `size` bytes of a file, "" when it does not exist."""
    try:
        with path.open("rb") as file:
            file.seek(0, 2)
            file.seek(max(file.tell() - size, 0))
            return file.read().decode(errors="replace")
    except FileNotFoundError:
        return ""


def _started(run_dir: Path, role: str) -> datetime | None:
    """When the role's current supervisor process was created (its `.pid` record)."""
    try:
        created = json.loads((run_dir / f"{role}.pid").read_text())["created"]
        return datetime.fromtimestamp(float(created), UTC)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _exit(run_dir: Path, role: str) -> RoleExit | None:
    """The role's exit record, None while it has none (or it is being written)."""
    try:
        return RoleExit.model_validate_json((run_dir / f"{role}.exit").read_bytes())
    except (OSError, ValidationError):
        return None


def _ended(run_dir: Path, role: str) -> datetime | None:
    """When the role's exit record was written."""
    try:
        return datetime.fromtimestamp((run_dir / f"{role}.exit").stat().st_mtime, UTC)
    except OSError:
        return None


def count_in_file(path: Path, text: str, chunk: int = 1 << 20) -> int:
    """How often `text` occurs in a file (0 when there is none), read a chunk at a time."""
    needle, count, carry = text.encode(), 0, b""
    try:
        with path.open("rb") as file:
            while block := file.read(chunk):
                data = carry + block
                count += data.count(needle)
                carry = data[-(len(needle) - 1) :] if len(needle) > 1 else b""
    except FileNotFoundError:
        return 0
    return count


def role_progress(run_dir: Path, role: str) -> Progress:
    log = run_dir / f"{role}.log"
    logged = parse_progress(log_tail(log))
    started = _started(run_dir, role)
    ended = _ended(run_dir, role)
    exit_record = _exit(run_dir, role)
    if started and ended and ended < started:
        ended = exit_record = None  # the exit record of a try before a relaunch
    restarts = count_in_file(log, RESTART_MARKER.format(role=role))
    kept = {"started": started, "ended": ended, "restarts": restarts, "exit": exit_record}
    return logged.model_copy(update=kept)


def read_supervision(handle: Mapping[str, Any]) -> SupervisionState | None:
    """The launch's supervision record in a local run directory (restart counts, outcome)."""
    if handle.get("backend") != "local" or not handle.get("job_id"):
        return None
    try:
        return read_record(Path(str(handle["job_id"])))
    except (OSError, ValidationError):
        return None


def read_progress(handle: Mapping[str, Any], roles: Iterable[str]) -> dict[str, Progress]:
    """Each role's times, last step and rate from a local run directory (its `.pid` and
    `.exit` records and its log).

    Kubernetes roles log to their pods; the view does not call the cluster, so they have none.
    """
    if handle.get("backend") != "local" or not handle.get("job_id"):
        return {}
    run_dir = Path(str(handle["job_id"]))
    return {role: role_progress(run_dir, role) for role in roles if ROLE_NAME.fullmatch(role)}


def read_reported(storage: Storage, model_dir: str, launch_id: str | None) -> dict[str, Progress]:
    """The `RoleProgress` records training roles write to `<model_dir>/tfdist/progress/`, those
    of an earlier launch left out."""
    reported = {}
    for path in storage.list(join(model_dir, PROGRESS_DIR)):
        text = storage.read_text(path) if path.endswith(".json") else None
        try:
            record = RoleProgress.model_validate_json(text) if text else None
        except ValidationError:
            continue  # being rewritten on a store without atomic renames
        if record is None or (launch_id and record.launch_id != launch_id):
            continue
        reported[record.role] = Progress(
            last_step=record.global_step, steps_per_sec=record.rate, rate_unit=record.unit
        )
    return reported


def read_step(
    storage_of: StorageOf, model_dir: str, eval_dir_name: str, handle: Mapping[str, Any]
) -> Found:
    """Eval records, blessing, role progress and the wait in a queue of one step; failures
    become problems.

    A role's progress record in the model directory wins over the step and rate in its log.
    """
    found = Found()
    reported: dict[str, Progress] = {}
    try:
        storage = storage_of(model_dir)
        read_records(storage, join(model_dir, eval_dir_name), found)
        found.blessing = read_blessing(storage, model_dir)
        read_training(storage, model_dir, found)
        reported = read_reported(storage, model_dir, handle.get("launch_id"))
        if handle.get("launch_id"):
            found.admission = read_admission(storage, model_dir, str(handle["launch_id"]))
    except (OSError, ValueError, ImportError) as error:
        found.problems.append(f"cannot read {model_dir}: {error}")
    except Exception as error:  # a cloud client's own errors (auth, network)
        found.problems.append(f"cannot read {model_dir}: {type(error).__name__}: {error}")
    logged = read_progress(handle, [str(role) for role in handle.get("roles", ())])
    for role in logged.keys() | reported.keys():
        own = logged.get(role, Progress())
        record = reported.get(role)
        kept = {
            "started": own.started,
            "ended": own.ended,
            "restarts": own.restarts,
            "exit": own.exit,
        }
        found.progress[role] = own if record is None else record.model_copy(update=kept)
    found.supervision = read_supervision(handle)
    return found
