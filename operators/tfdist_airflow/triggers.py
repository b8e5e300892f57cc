"""The trigger a role's watch task defers to: drive the supervisor, follow the role.

Each poll costs two reads, whatever the size of the job: every role's status in one call
(one pod list on Kubernetes) and the role's log from where the last read stopped. Each poll is
one step of `tfdist.supervisor` (`tfdist.supervision.drive`), under the launch's supervision
record: whichever watch sees a crash first carries out what the policy says (restart a role,
restart every role, stop the others), exactly once, and every watch then reads the same
recorded outcome. The trigger fires when its role succeeded, when the job's outcome is
decided, and when watching itself failed (an unreachable backend, a bad handle): never a
silent hang. The watch of the launch's first role also keeps the launch's wait in a queue
(Kueue) in its model directory, for the Training view.
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
from tfdist_airflow.admission import QueueNotes
from tfdist_airflow.backends import connect
from tfdist_airflow.runs import UNKNOWN, kill_stops_role


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
        model_dir: str | None = None,
    ):
        super().__init__()
        self.backend = backend
        self.handle = handle
        self.role = role
        self.job = job
        self.log_offset = log_offset
        self.poll_interval = poll_interval
        self.model_dir = model_dir

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
                "model_dir": self.model_dir,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        offset = self.log_offset
        try:
            handle = JobHandle.model_validate(self.handle)
            job = Supervised.model_validate(self.job)
            backend = connect(self.backend)
            shown = ""  # e.g. why a pod is still pending: shown once each time it changes
            queue = QueueNotes(self.model_dir if self.role == handle.roles[0] else None)
            while True:
                text, offset = await asyncio.to_thread(backend.read_log, handle, self.role, offset)
                for line in text.splitlines():  # at the role's own level and time
                    relay(self.log, self.role, line)
                driven = await asyncio.to_thread(drive, backend, handle, job)
                if driven.step.say:
                    self.log.warning("[%s] %s", self.role, driven.step.say)
                status = driven.statuses[self.role]
                if status.admission is not None:  # a launch that waited in a queue
                    noted = await asyncio.to_thread(queue.note, handle.launch_id, status.admission)
                    if noted:  # what kept it from being written
                        self.log.warning("[%s] %s", self.role, noted)
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
        """Airflow cancelled this trigger "by user action". That is a user marking the watch
        task (or its run) failed or success: stop the role, as `WatchRoleOperator.on_kill`
        does for a running task. It is also a user clearing the task, whose next try follows
        the role again, and the trigger moving to another triggerer: then the role goes on.
        The task's state tells them apart (`kill_stops_role`)."""
        state = await self._task_state()
        if not kill_stops_role(state):
            self.log.info("[%s] its watch task is %s: the role goes on", self.role, state)
            return
        handle = JobHandle.model_validate(self.handle)
        self.log.warning("[%s] its watch task was marked %s: stopping it", self.role, state)
        await asyncio.to_thread(connect(self.backend).stop, handle, [self.role])

    async def _task_state(self) -> str | None:
        """The watch task's state now, as the API server has it; "unknown" if unreadable."""
        from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

        ti = getattr(self, "task_instance", None)
        if ti is None:
            return UNKNOWN
        try:
            states = await asyncio.to_thread(
                RuntimeTaskInstance.get_task_states,
                dag_id=ti.dag_id,
                task_ids=[ti.task_id],
                run_ids=[ti.run_id],
                map_index=ti.map_index,
            )
        except Exception:
            self.log.exception("[%s] cannot read its watch task's state", self.role)
            return UNKNOWN
        key = ti.task_id if ti.map_index < 0 else f"{ti.task_id}_{ti.map_index}"
        state = states.get(ti.run_id, {}).get(key)
        return None if state is None else str(state)
