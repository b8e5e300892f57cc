"""Pure parts of the Airflow binding: per-run model directories and scopes, and the restart
policy as a role's watch task applies it."""

from __future__ import annotations

import re
from collections.abc import Mapping

from tfdist.backend import RoleState, RoleStatus
from tfdist.lifecycle import Action, Ending, RoleEnd, RoleId, Verdict, decide
from tfdist.spec import Frozen, JobSpec, RestartPolicy

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def run_name(run_id: str) -> str:
    """A path- and label-safe name for an Airflow run id (manual runs have no logical date)."""
    name = _UNSAFE.sub("-", run_id).strip("-.")
    if not name:
        raise ValueError(f"run id {run_id!r} has no usable characters")
    return name


def run_model_dir(base: str, dag_id: str, run_id: str) -> str:
    """`<base>/<dag_id>/<run>`: a rerun of the same run resumes; other runs never share it."""
    return f"{base.rstrip('/')}/{run_name(dag_id)}/{run_name(run_id)}"


def run_scope(dag_id: str, run_id: str, group_id: str) -> str:
    """Where one train-and-evaluate step of one run keeps its launches, relative to a root."""
    return f"{run_name(dag_id)}/{run_name(run_id)}/{run_name(group_id)}"


NO_JOB_RESTART = (
    "restarting every role is not done inside an Airflow run: each role's watch task would "
    "have to agree on one relaunch of the whole gang. Clear the train-and-evaluate group to "
    "start every role again from the last checkpoint"
)


class WatchPolicy(Frozen):
    """The restart policy as one role's watch task applies it (see `tfdist.lifecycle`).

    A watch restarts its own role when the policy restarts it alone; it does not restart the
    whole job (`NO_JOB_RESTART` says why) and fails instead, naming the verdict.
    """

    uses_parameter_servers: bool
    restart_policy: RestartPolicy

    @classmethod
    def of(cls, spec: JobSpec) -> WatchPolicy:
        return cls(
            uses_parameter_servers=spec.cluster.uses_parameter_servers,
            restart_policy=spec.restart_policy,
        )

    def verdict(self, role: str, end: RoleEnd, role_restarts: int = 0) -> Verdict:
        verdict = decide(
            RoleId.parse(role),
            end,
            uses_parameter_servers=self.uses_parameter_servers,
            policy=self.restart_policy,
            role_restarts=role_restarts,
        )
        if verdict.action is Action.RESTART_JOB:
            return verdict.model_copy(
                update={"reason": f"{role} ended: {end.describe()}; {NO_JOB_RESTART}"}
            )
        return verdict

    def own_verdict(
        self, role: str, status: RoleStatus, role_restarts: int, *, final: bool = False
    ) -> Verdict | None:
        """What `role`'s end means; None while it has not ended. `final`: the backend applies
        the policy itself (a JobSet), so a role it reports failed has failed for good."""
        end = status.end
        if end is None:
            return None
        if final and end.ending is not Ending.SUCCEEDED:
            why = f"{role} failed for good: {status.detail or end.describe()}"
            return Verdict(action=Action.FAIL_JOB, reason=why)
        return self.verdict(role, end, role_restarts)

    def ended_by_peer(
        self, role: str, statuses: Mapping[str, RoleStatus], *, final: bool = False
    ) -> str | None:
        """Why `role` must stop because of a peer: the first peer whose end fails the job or
        needs every role restarted (a ps or evaluator would otherwise wait for a chief that is
        gone); None if no peer's end does."""
        for peer, status in statuses.items():
            if peer == role:
                continue
            verdict = self.own_verdict(peer, status, 0, final=final)
            if verdict is None:
                continue
            if verdict.action in (Action.FAIL_JOB, Action.RESTART_JOB):
                return verdict.reason
        return None


def unfinished_step(statuses: Mapping[str, RoleStatus]) -> str | None:
    """Why a train-and-evaluate step did not finish, judged by how its roles stand when its
    teardown runs; None when every role succeeded.

    `statuses` are read before the teardown stops anything: a role still running then is
    one the teardown stops (the run was marked failed, or a peer failed).
    """
    running = [name for name, s in statuses.items() if not s.state.finished]
    failed = [
        f"{name} ({_exit(s)})" if _exit(s) else name
        for name, s in statuses.items()
        if s.state is RoleState.FAILED
    ]
    parts = []
    if failed:
        parts.append(f"{', '.join(failed)} failed")
    if running:
        parts.append(f"{', '.join(running)} still running, stopped now")
    return "; ".join(parts) or None


def _exit(status: RoleStatus) -> str:
    code = f"exit code {status.exit_code}" if status.exit_code is not None else ""
    return ", ".join(filter(None, [code, "" if status.detail == "exited" else status.detail]))
