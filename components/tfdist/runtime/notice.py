"""A preemption notice (SIGTERM: a spot reclaim, a node drain, an eviction) becomes a checkpoint.

Every role of the runtime installs `listen()` first thing, so SIGTERM is handled even when the
runtime is PID 1 in its container (where the kernel's default action does not apply):

- the chief saves a checkpoint at the next step boundary, then exits `PREEMPTED_EXIT_CODE`;
- a parameter server tells the chief (a `NoticeRecord` in `model_dir/tfdist/notices/`) and
  serves until the chief has saved (`SavedRecord`), within the grace period; both then exit
  preempted, and the job restarts from that checkpoint;
- a worker under parameter-server training, and the evaluator, exit preempted at once: the
  coordinator runs a lost worker's steps elsewhere, the evaluator is stateless;
- under all-reduce training TensorFlow's `PreemptionCheckpointHandler` makes every member save
  at the same step (see `tfdist.runtime.train`).

A preempted exit is not counted against the restart budget (`tfdist.lifecycle`). TensorFlow is
imported only by what reads or writes records, so `listen()` can come before it.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
from types import FrameType

from tfdist.lifecycle import PREEMPTED_EXIT_CODE
from tfdist.records import NOTICES_DIR, PREEMPTION_SAVED, NoticeRecord, SavedRecord

log = logging.getLogger("tfdist.notice")

WATCH_SECS = 0.5  # how often the chief looks for a parameter server's notice
ACK_SECS = 3.0  # a ps waits this long for the chief to answer; then it goes without a save

__all__ = ["PREEMPTED_EXIT_CODE", "Preempted", "listen", "received"]


class Preempted(BaseException):  # like KeyboardInterrupt: not an error to catch
    """Ends a role after a notice, once what it asked for is saved: the training `step` it
    reached, and whether this role got the notice itself (`own`) or a peer did."""

    def __init__(self, step: int = 0, own: bool = True):
        super().__init__(step, own)
        self.step, self.own = step, own


STARTED_AT = time.time()  # this role process started (imported first thing by the runtime)
_received = threading.Event()
_received_at: list[float] = []


def _on_sigterm(signum: int, _frame: FrameType | None) -> None:
    if not _received.is_set():
        _received_at.append(time.time())
        _received.set()


def mark_received(at: float) -> None:
    """The notice came at `at`, caught by another handler (TensorFlow's)."""
    if not _received_at:
        _received_at.append(at)
    _received.set()


def listen() -> None:
    """Record SIGTERM instead of dying of it (the process then decides how to end)."""
    signal.signal(signal.SIGTERM, _on_sigterm)


def received() -> bool:
    return _received.is_set()


def received_at() -> float | None:
    return _received_at[0] if _received_at else None


def wait(seconds: float) -> bool:
    """Sleep up to `seconds`, waking at once when the notice comes; whether it came."""
    return _received.wait(seconds)


def raise_if_received() -> None:
    if _received.is_set():
        raise Preempted


def exit_at_once() -> None:
    """For a role with nothing to save: the first SIGTERM interrupts it and it ends preempted.
    A later one only finds it ending (a stop signals twice: the supervisor forwards one, and
    the process group gets one); raised too, it would break off how the role reports its end."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        first = not _received.is_set()
        _on_sigterm(signum, frame)
        if first:
            raise Preempted

    signal.signal(signal.SIGTERM, interrupt)
    raise_if_received()


class ChiefNotices:
    """What makes the chief save now: its own SIGTERM, or a parameter server's notice of this
    launch (looked for by a background thread, so the training loop only reads a flag)."""

    def __init__(self, model_dir: str, watch: bool):
        from tfdist.runtime.storage import launch_id

        self.model_dir, self.launch = model_dir, launch_id()
        self.started = time.time()  # a notice from before is a past run's, answered or moot
        self.peers: dict[str, NoticeRecord] = {}  # role -> its notice, not yet answered
        self.answered: set[str] = set()
        self.closing = False  # saved for its own notice: it answers no more notices
        self._peer = threading.Event()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        if watch:
            threading.Thread(target=self._watch, name="tfdist-notices", daemon=True).start()

    def pending(self) -> bool:
        return _received.is_set() or self._peer.is_set()

    @property
    def own(self) -> bool:
        return _received.is_set()

    def _watch(self) -> None:
        import tensorflow as tf

        from tfdist.runtime.storage import read_json, write_json

        directory = f"{self.model_dir}/{NOTICES_DIR}"
        while not self._stop.wait(WATCH_SECS):
            try:
                names = tf.io.gfile.glob(f"{directory}/*.json")
            except tf.errors.OpError:
                continue
            for name in names:
                try:
                    notice = NoticeRecord.model_validate(read_json(name))
                except (ValueError, TypeError, tf.errors.OpError):
                    continue  # being written, or not ours
                stale = notice.launch_id != self.launch or notice.received_at < self.started
                if stale or not notice.role.startswith("ps-") or notice.role in self.answered:
                    continue  # a worker's or the evaluator's notice asks for no save
                with self._lock:
                    if notice.role not in self.peers and not self.closing:
                        log.info("%s got a preemption notice: saving a checkpoint", notice.role)
                        self.peers[notice.role] = notice
                        write_json(ack_name(self.model_dir, notice), notice.model_dump())
                        self._peer.set()

    def saved(self, step: int) -> None:
        """The checkpoint at `step` is written: tell the notified roles, and clear the flag."""
        from tfdist.runtime.storage import write_json

        with self._lock:
            roles = tuple(sorted(self.peers)) + (("chief-0",) if self.own else ())
            record = SavedRecord(
                global_step=step, launch_id=self.launch, timestamp=time.time(), for_roles=roles
            )
            write_json(f"{self.model_dir}/{PREEMPTION_SAVED}", record.model_dump())
            self.answered.update(self.peers)
            self.peers.clear()
            self._peer.clear()
            self.closing = self.own

    def close(self) -> None:
        self._stop.set()


def notice_name(model_dir: str, notice: NoticeRecord) -> str:
    return f"{model_dir}/{NOTICES_DIR}/{notice.role}-{int(notice.received_at * 1000)}.json"


def ack_name(model_dir: str, notice: NoticeRecord) -> str:
    return notice_name(model_dir, notice).removesuffix(".json") + ".ack"


def announce(model_dir: str, role: str, grace_secs: float) -> NoticeRecord:
    """A role that got its notice records it (`model_dir/tfdist/notices/<role>-<ms>.json`):
    the chief saves for a parameter server's; goodput counts them all."""
    from tfdist.runtime.storage import launch_id, write_json

    at = received_at() or time.time()
    notice = NoticeRecord(role=role, launch_id=launch_id(), received_at=at, grace_secs=grace_secs)
    write_json(notice_name(model_dir, notice), notice.model_dump())
    return notice


def wait_for_save(
    model_dir: str, notice: NoticeRecord, chief: str, poll: float = 0.1
) -> SavedRecord | None:
    """Serve until the chief (at address `chief`) has saved for this notice: within the grace
    period, less a margin to exit in; sooner if the chief is gone or does not answer (it is
    saving for its own notice, which covers this one)."""
    import tensorflow as tf

    from tfdist.runtime.storage import read_json

    started = time.monotonic()
    deadline = started + max(notice.grace_secs - 2.0, 1.0)
    while time.monotonic() < deadline:
        try:
            raw = read_json(f"{model_dir}/{PREEMPTION_SAVED}")
            saved = SavedRecord.model_validate(raw) if raw else None
        except (ValueError, tf.errors.OpError):
            saved = None
        if (
            saved is not None
            and saved.launch_id == notice.launch_id
            and notice.role in saved.for_roles
            and saved.timestamp >= notice.received_at
        ):
            return saved
        if not _listening(chief):
            return None
        if time.monotonic() - started > ACK_SECS and not _acknowledged(model_dir, notice):
            return None
        time.sleep(poll)
    return None


def _listening(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=0.5):
            return True
    except OSError:
        return False


def _acknowledged(model_dir: str, notice: NoticeRecord) -> bool:
    import tensorflow as tf

    from tfdist.runtime.storage import read_json

    try:
        raw = read_json(ack_name(model_dir, notice))
    except (ValueError, tf.errors.OpError):
        return False
    return raw is not None and NoticeRecord.model_validate(raw) == notice
