"""The trigger a role's watch task defers to: follow the role until the policy decides.

Each poll costs two reads, whatever the size of the job: every role's status in one call
(one pod list on Kubernetes) and the role's log from where the last read stopped. A crash the
policy restarts alone (an evaluator, a parameter-server worker) is restarted here and followed
on, without waiting on Airflow's retry delay. The trigger fires when the role succeeded, when
the policy ends the job (this role's end, or a peer's, which stops this role too), and when
watching itself failed (an unreachable backend, a bad handle): never a silent hang.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from tfdist.backend import Backend, JobHandle, RoleStatus
from tfdist.lifecycle import Action
from tfdist.rolelog import relayed
from tfdist_airflow.backends import connect
from tfdist_airflow.runs import WatchPolicy


class RoleExitTrigger(BaseTrigger):
    """Polls one role; logs its new lines (and why it waits) as they appear; restarts it when
    the policy restarts it alone; fires once the role's or the job's outcome is decided.

    The event: `{"log_offset", "role_restarts"}` and one of `"status"` (the role ended and the
    policy says succeeded or fail the job; the task reads it again), `"cause"` (a peer's end ended
    the job; this role was stopped), `"error"` (watching failed).
    """

    def __init__(
        self,
        backend: dict[str, Any],
        handle: dict[str, Any],
        role: str,
        policy: dict[str, Any],
        log_offset: int = 0,
        poll_interval: float = 2.0,
        role_restarts: int = 0,
    ):
        super().__init__()
        self.backend = backend
        self.handle = handle
        self.role = role
        self.policy = policy
        self.log_offset = log_offset
        self.poll_interval = poll_interval
        self.role_restarts = role_restarts

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "backend": self.backend,
                "handle": self.handle,
                "role": self.role,
                "policy": self.policy,
                "log_offset": self.log_offset,
                "poll_interval": self.poll_interval,
                "role_restarts": self.role_restarts,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        offset = self.log_offset
        try:
            handle = JobHandle.model_validate(self.handle)
            policy = WatchPolicy.model_validate(self.policy)
            backend = connect(self.backend)
            shown = ""  # e.g. why a pod is still pending: shown once each time it changes
            while True:
                text, offset = await asyncio.to_thread(backend.read_log, handle, self.role, offset)
                for line in text.splitlines():  # one time a line: Airflow's
                    self.log.info("[%s] %s", self.role, relayed(self.role, line))
                statuses = await asyncio.to_thread(backend.statuses, handle)
                event = await self._decide(backend, handle, policy, statuses, offset)
                if event is not None:
                    yield TriggerEvent(event)
                    return
                status = statuses[self.role]
                if status.detail != shown and not status.state.finished:
                    shown = status.detail
                    if shown:
                        self.log.info("[%s] %s: %s", self.role, status.state.value, shown)
                await asyncio.sleep(self.poll_interval)
        except Exception as error:  # an unreachable backend, a bad handle: say so, do not hang
            self.log.exception("[%s] watching failed", self.role)
            yield TriggerEvent(
                {
                    "error": f"{type(error).__name__}: {error}",
                    "log_offset": offset,
                    "role_restarts": self.role_restarts,
                }
            )

    async def _decide(
        self,
        backend: Backend,
        handle: JobHandle,
        policy: WatchPolicy,
        statuses: dict[str, RoleStatus],
        offset: int,
    ) -> dict[str, Any] | None:
        """The event to fire now, if any; restarts the role when the policy says so."""
        done = {"log_offset": offset, "role_restarts": self.role_restarts}
        final = backend.applies_policy
        verdict = policy.own_verdict(
            self.role, statuses[self.role], self.role_restarts, final=final
        )
        if verdict is not None and verdict.action is Action.RESTART_ROLE:
            self.log.warning("[%s] %s", self.role, verdict.reason)
            await asyncio.to_thread(backend.relaunch, handle, self.role)
            self.role_restarts += verdict.counted
            return None
        if verdict is not None:
            return {**done, "status": statuses[self.role].model_dump(mode="json")}
        cause = policy.ended_by_peer(self.role, statuses, final=final)
        if cause is not None:
            self.log.warning("[%s] stopping it: %s", self.role, cause)
            await asyncio.to_thread(backend.stop, handle, [self.role])
            return {**done, "cause": cause}
        return None

    async def on_kill(self) -> None:
        """A user killed the deferred watch task (marked it or its run failed or success, or
        cleared it): stop the role, as `WatchRoleOperator.on_kill` does for a running task."""
        handle = JobHandle.model_validate(self.handle)
        self.log.warning("[%s] its watch task was killed: stopping it", self.role)
        await asyncio.to_thread(connect(self.backend).stop, handle, [self.role])
