"""The trigger a role's watch task defers to: stream the role's log until the role ends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from tfdist.backend import JobHandle, RoleState
from tfdist.rolelog import relayed
from tfdist_airflow.backends import connect


class RoleExitTrigger(BaseTrigger):
    """Polls one role; logs its new lines (and why it waits) as they appear; fires once it ended."""

    def __init__(
        self,
        backend: dict[str, Any],
        handle: dict[str, Any],
        role: str,
        log_offset: int = 0,
        poll_interval: float = 2.0,
        fatal_peers: list[str] | None = None,
    ):
        super().__init__()
        self.backend = backend
        self.handle = handle
        self.role = role
        self.log_offset = log_offset
        self.poll_interval = poll_interval
        self.fatal_peers = fatal_peers or []

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "backend": self.backend,
                "handle": self.handle,
                "role": self.role,
                "log_offset": self.log_offset,
                "poll_interval": self.poll_interval,
                "fatal_peers": self.fatal_peers,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        handle = JobHandle.model_validate(self.handle)
        backend = connect(self.backend)
        offset = self.log_offset
        shown = ""  # e.g. why a pod is still pending: shown once each time it changes
        while True:
            text, offset = await asyncio.to_thread(backend.read_log, handle, self.role, offset)
            for line in text.splitlines():  # one time a line: Airflow's
                self.log.info("[%s] %s", self.role, relayed(self.role, line))
            statuses = await asyncio.to_thread(backend.statuses, handle)
            status = statuses[self.role]
            if status.state.finished:
                yield TriggerEvent({"status": status.model_dump(mode="json"), "log_offset": offset})
                return
            failed_peer = next(
                (p for p in self.fatal_peers if statuses[p].state is RoleState.FAILED), None
            )
            if failed_peer:
                self.log.warning(
                    "[%s] stopping it: %s failed, the job cannot finish", self.role, failed_peer
                )
                await asyncio.to_thread(backend.stop, handle, [self.role])
                yield TriggerEvent({"log_offset": offset, "cause": f"{failed_peer} failed"})
                return
            if status.detail != shown:
                shown = status.detail
                if shown:
                    self.log.info("[%s] %s: %s", self.role, status.state.value, shown)
            await asyncio.sleep(self.poll_interval)

    async def on_kill(self) -> None:
        """A user killed the deferred watch task (marked it or its run failed or success, or
        cleared it): stop the role, as `WatchRoleOperator.on_kill` does for a running task."""
        handle = JobHandle.model_validate(self.handle)
        self.log.warning("[%s] its watch task was killed: stopping it", self.role)
        await asyncio.to_thread(connect(self.backend).stop, handle, [self.role])
