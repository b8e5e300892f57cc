"""The trigger a role's watch task defers to: drive the supervisor, follow the role.

Each poll costs two reads, whatever the size of the job: every role's status in one call
(one pod list on Kubernetes) and the role's log from where the last read stopped. Each poll is
one step of `tfdist.supervisor` (`tfdist.supervision.drive`), under the launch's supervision
record: whichever watch sees a crash first carries out what the policy says (restart a role,
restart every role, stop the others), exactly once, and every watch then reads the same
recorded outcome. The trigger fires when its role succeeded, when the job's outcome is
decided, and when watching itself failed (an unreachable backend, a bad handle): never a
silent hang.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from tfdist.backend import JobHandle, RoleState
from tfdist.rolelog import relay
from tfdist.supervision import drive
from tfdist.supervisor import Supervised
from tfdist_airflow.backends import connect


class RoleExitTrigger(BaseTrigger):
    """Polls one role and drives the supervisor; logs the role's new lines (and why it waits)
    as they appear; fires once the role succeeded or the job's outcome is decided.

    The event: `{"log_offset"}`, with `"error"` when watching failed. The task reads the
    recorded outcome itself (`WatchRoleOperator.execute_complete`).
    """

    def __init__(
        self,
        backend: dict[str, Any],
        handle: dict[str, Any],
        role: str,
        job: dict[str, Any],
        log_offset: int = 0,
        poll_interval: float = 2.0,
    ):
        super().__init__()
        self.backend = backend
        self.handle = handle
        self.role = role
        self.job = job
        self.log_offset = log_offset
        self.poll_interval = poll_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "backend": self.backend,
                "handle": self.handle,
                "role": self.role,
                "job": self.job,
                "log_offset": self.log_offset,
                "poll_interval": self.poll_interval,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        offset = self.log_offset
        try:
            handle = JobHandle.model_validate(self.handle)
            job = Supervised.model_validate(self.job)
            backend = connect(self.backend)
            shown = ""  # e.g. why a pod is still pending: shown once each time it changes
            while True:
                text, offset = await asyncio.to_thread(backend.read_log, handle, self.role, offset)
                for line in text.splitlines():  # at the role's own level and time
                    relay(self.log, self.role, line)
                driven = await asyncio.to_thread(drive, backend, handle, job)
                if driven.step.say:
                    self.log.warning("[%s] %s", self.role, driven.step.say)
                status = driven.statuses[self.role]
                if driven.step.state.outcome or status.state is RoleState.SUCCEEDED:
                    yield TriggerEvent({"log_offset": offset})
                    return
                if status.detail != shown and not status.state.finished:
                    shown = status.detail
                    if shown:
                        self.log.info("[%s] %s: %s", self.role, status.state.value, shown)
                await asyncio.sleep(self.poll_interval)
        except Exception as error:  # an unreachable backend, a bad handle: say so, do not hang
            self.log.exception("[%s] watching failed", self.role)
            yield TriggerEvent({"error": f"{type(error).__name__}: {error}", "log_offset": offset})

    async def on_kill(self) -> None:
        """A user killed the deferred watch task (marked it or its run failed or success, or
        cleared it): stop the role, as `WatchRoleOperator.on_kill` does for a running task."""
        handle = JobHandle.model_validate(self.handle)
        self.log.warning("[%s] its watch task was killed: stopping it", self.role)
        await asyncio.to_thread(connect(self.backend).stop, handle, [self.role])
