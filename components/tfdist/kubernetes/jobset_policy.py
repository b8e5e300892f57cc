"""The role-lifecycle policy (`tfdist.lifecycle`) compiled into a JobSet and its child Jobs.

The cluster's own controllers then apply it, also while Airflow is down:

- every child Job runs one pod (one replica) with `restartPolicy: Never`, so the Job
  controller sees each end of the program, and a `podFailurePolicy` whose first rule matches
  preemption (the `DisruptionTarget` pod condition) and whose second matches the program's own
  exit codes 1-127 (`FailJob`); other ends (a signal, OOM: exit >= 128) are counted against the
  Job's `backoffLimit`.
- a role that can restart alone (`Scope.ROLE`: the evaluator, a parameter-server-strategy
  worker) is restarted by its own Job: `backoffLimit` is `max_role_restarts` and preemption is
  `Ignore`d (a new pod, not counted). Once the budget is spent the Job fails
  (`BackoffLimitExceeded`) and so does the JobSet.
- a role whose end stops the job (`Scope.JOB`: chief, ps, all-reduce worker) fails its Job at
  once (`backoffLimit: 0`; preemption `FailJob`), and the JobSet's `failurePolicy` decides:
  rules are evaluated in order and the first match wins (JobSet docs, tasks/failure_policy.md):
  1. `preempted` (Job failed by its pod failure policy on `DisruptionTarget`):
     `RestartJobSetAndIgnoreMaxRestarts`;
  2. `programError` (any other pod-failure-policy failure: exit 1-127): `FailJobSet`;
  3. `roleRestartsUsed` (a role-scope Job failed: its budget is spent): `FailJobSet`;
  4. `crashed` (a job-scope Job failed otherwise): `RestartJobSet`, at most `maxRestarts` =
     `max_job_restarts` times, then the controller fails the JobSet (`ReachedMaxRestarts`).

JobSet's own `RestartJob` action is not used: in v0.12 it is an alpha feature gate, off by
default (the webhook rejects it), and its restarts count against the same `maxRestarts` as
whole-set restarts, so it could not keep a budget per role.

`successPolicy` waits for the chief and the evaluator (All of them): when a JobSet finishes the
controller deletes its running Jobs, so finishing on the chief alone would kill the evaluator
before it evaluates the final checkpoint. Parameter servers and workers still running then end
with the set.
"""

from __future__ import annotations

from typing import Any

from tfdist.lifecycle import PREEMPTED_EXIT_CODE, Scope, restart_scope
from tfdist.spec import JobSpec, Role

DISRUPTION_TARGET = "DisruptionTarget"
# The program failed on its own (see lifecycle); not the runtime's exit after a notice.
PROGRAM_EXIT_CODES = tuple(code for code in range(1, 128) if code != PREEMPTED_EXIT_CODE)
# The Job controller's message for a FailJob rule matched on a pod condition (Kubernetes
# pkg/controller/job/pod_failure_policy.go: "Pod <ns>/<name> has condition <type> matching
# FailJob rule at index <i>"); the JobSet rule below tells preemption from a program error by it.
PREEMPTION_MESSAGE = f"has condition {DISRUPTION_TARGET}"

# Job failure reasons (batch/v1 JobFailed condition) that JobSet rules match.
POD_FAILURE_POLICY = "PodFailurePolicy"
BACKOFF_LIMIT_EXCEEDED = "BackoffLimitExceeded"

# Rule names: `^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$` (JobSet webhook).
PREEMPTED = "preempted"
PROGRAM_ERROR = "programError"
ROLE_RESTARTS_USED = "roleRestartsUsed"
CRASHED = "crashed"


def replicated_roles(spec: JobSpec) -> list[Role]:
    """The role kinds the job runs, chief first: one replicated job each."""
    return [role for role in Role if spec.cluster.count(role)]


def scope(spec: JobSpec, role: Role) -> Scope:
    return restart_scope(role, spec.cluster.uses_parameter_servers)


def pod_failure_policy(role_scope: Scope, container: str) -> dict[str, Any]:
    """The child Job's `podFailurePolicy`: rules in order, the first match wins."""
    return {
        "rules": [
            {
                "action": "Ignore" if role_scope is Scope.ROLE else "FailJob",
                "onPodConditions": [{"type": DISRUPTION_TARGET, "status": "True"}],
            },
            {
                "action": "FailJob",
                "onExitCodes": {
                    "containerName": container,
                    "operator": "In",
                    "values": list(PROGRAM_EXIT_CODES),
                },
            },
        ]
    }


def backoff_limit(spec: JobSpec, role: Role) -> int:
    """Counted restarts of the role's pod inside its own Job (a role-scope budget), else 0."""
    if scope(spec, role) is Scope.ROLE:
        return spec.restart_policy.max_role_restarts
    return 0


def failure_policy(spec: JobSpec) -> dict[str, Any]:
    """The JobSet's `failurePolicy` (see the module docstring for why each rule)."""
    roles = replicated_roles(spec)
    alone = [role.value for role in roles if scope(spec, role) is Scope.ROLE]
    whole = [role.value for role in roles if scope(spec, role) is Scope.JOB]
    rules: list[dict[str, Any]] = [
        {
            "name": PREEMPTED,
            "action": "RestartJobSetAndIgnoreMaxRestarts",
            "onJobFailureReasons": [POD_FAILURE_POLICY],
            "onJobFailureMessagePatterns": [PREEMPTION_MESSAGE],
            "targetReplicatedJobs": whole,
        },
        {
            "name": PROGRAM_ERROR,
            "action": "FailJobSet",
            "onJobFailureReasons": [POD_FAILURE_POLICY],
        },
    ]
    if alone:  # an empty target list would match every replicated job
        rules.append(
            {"name": ROLE_RESTARTS_USED, "action": "FailJobSet", "targetReplicatedJobs": alone}
        )
    rules.append({"name": CRASHED, "action": "RestartJobSet", "targetReplicatedJobs": [*whole]})
    return {
        "maxRestarts": spec.restart_policy.max_job_restarts,
        # every old pod is gone before the new ones start from the last checkpoint
        "restartStrategy": "BlockingRecreate",
        "rules": rules,
    }


def success_policy(spec: JobSpec) -> dict[str, Any]:
    """Done when the chief and the evaluator (if any) have succeeded."""
    targets = [Role.CHIEF.value]
    if spec.cluster.evaluator:
        targets.append(Role.EVALUATOR.value)
    return {"operator": "All", "targetReplicatedJobs": targets}
