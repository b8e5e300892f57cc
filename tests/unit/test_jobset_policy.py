"""The compiled JobSet policy does what `lifecycle.decide` says, case by case.

No JobSet controller can run here: the JobSet goes to the shipped `FakeJobSetCluster`, whose
JobSet and Job controllers follow the documented semantics (rules in order, first match wins;
pod failure policy; backoffLimit; maxRestarts). For every role of a parameter-server and an
all-reduce job, every way a run can end, and restart budgets fresh or spent, the outcome on the
fake cluster must be the lifecycle's verdict: succeeded, this role restarted (counted or
not), every role restarted (counted or not), or the job failed.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest

from tfdist.kubernetes.api import JOBSETS
from tfdist.kubernetes.jobset import jobset_name, plan_jobset
from tfdist.kubernetes.jobset_policy import failure_policy
from tfdist.kubernetes.manifests import Target
from tfdist.kubernetes.names import RunRef
from tfdist.lifecycle import Action, RoleEnd, RoleId, Scope, decide, restart_scope
from tfdist.spec import JobSpec, Role, parse_spec
from tfdist.testing.jobset_cluster import FakeJobSetCluster

REF = RunRef(launch="policy")
PS = parse_spec(
    {
        "name": "ps",
        "trainer": {"entrypoint": "tfdist.examples.digits"},
        "cluster": {"worker": 2, "ps": 1, "evaluator": 1},
        "train_spec": {"max_steps": 10},
        "restart_policy": {"max_role_restarts": 2, "max_job_restarts": 1},
        "model_dir": "gs://bucket/m",
    }
)
ALL_REDUCE = PS.with_overrides({"name": "ar", "cluster": {"worker": 2, "evaluator": 1}})


@dataclass(frozen=True)
class End:
    """How to end a pod on the fake cluster, and the same end as the lifecycle sees it."""

    name: str
    code: int
    oom: bool = False
    preempted: bool = False

    def role_end(self) -> RoleEnd:
        return RoleEnd.from_exit(self.code, oom_killed=self.oom, preempted=self.preempted)

    def apply(self, api: FakeJobSetCluster, pod: str) -> None:
        api.start(pod)
        if self.preempted:
            api.preempt(pod)
        elif self.oom:
            api.oom(pod)
        else:
            api.exit(pod, self.code)


ENDS = [
    End("succeeded", 0),
    End("program-error", 3),
    End("exit-127", 127),
    End("sigkill", 137),
    End("oom", 137, oom=True),
    End("preempted", 143, preempted=True),
]
ROLES = [(PS, role) for role in ("chief-0", "worker-1", "ps-0", "evaluator-0")] + [
    (ALL_REDUCE, role) for role in ("chief-0", "worker-1", "evaluator-0")
]


def launch(spec: JobSpec) -> tuple[FakeJobSetCluster, str]:
    api = FakeJobSetCluster()
    api.create_object(JOBSETS, "ml", plan_jobset(spec, Target(namespace="ml"), ref=REF))
    return api, jobset_name(spec.name, REF)


def crash(api: FakeJobSetCluster, jobset: str, role: RoleId) -> None:
    End("sigkill", 137).apply(api, api.current_pod(jobset, role.kind.value, role.index))


def outcome(
    api: FakeJobSetCluster, jobset: str, role: RoleId, before: dict[str, int]
) -> tuple[Action, bool]:
    """What the cluster did: (action, counted), read from the JobSet and Job status."""
    js = api.jobset(jobset)
    if any(
        c["type"] == "Failed" and c["status"] == "True" for c in js["status"].get("conditions", [])
    ):
        return Action.FAIL_JOB, False
    restarts, counted = js["status"]["restarts"], js["status"]["restartsCountTowardsMax"]
    if restarts > before["restarts"]:
        return Action.RESTART_JOB, counted > before["counted"]
    job = api.jobs[("ml", f"{jobset}-{role.kind.value}-{role.index}")]
    if any(
        c["type"] == "Complete" and c["status"] == "True"
        for c in job["status"].get("conditions", [])
    ):
        return Action.SUCCEEDED, False
    pods = [
        p
        for p in api.pods.values()
        if p["metadata"]["labels"]["batch.kubernetes.io/job-name"] == job["metadata"]["name"]
    ]
    if len(pods) > before["pods"]:
        return Action.RESTART_ROLE, job["status"]["failed"] > before["failed"]
    raise AssertionError(f"the cluster did nothing after {role} ended: {js['status']}")


@pytest.mark.parametrize(("spec", "name"), ROLES, ids=[f"{s.name}-{r}" for s, r in ROLES])
@pytest.mark.parametrize("end", ENDS, ids=[e.name for e in ENDS])
@pytest.mark.parametrize("spent", [False, True], ids=["budget-left", "budget-spent"])
def test_the_cluster_does_what_the_lifecycle_decides(
    spec: JobSpec, name: str, end: End, spent: bool
) -> None:
    role = RoleId.parse(name)
    scope = restart_scope(role.kind, spec.cluster.uses_parameter_servers)
    policy = spec.restart_policy
    api, jobset = launch(spec)
    used = 0
    if spent:  # use up the budget first with counted crashes of this role
        used = policy.max_role_restarts if scope is Scope.ROLE else policy.max_job_restarts
        for _ in range(used):
            crash(api, jobset, role)
    verdict = decide(
        role,
        end.role_end(),
        uses_parameter_servers=spec.cluster.uses_parameter_servers,
        policy=policy,
        role_restarts=used if scope is Scope.ROLE else 0,
        job_restarts=used if scope is Scope.JOB else 0,
    )
    js = api.jobset(jobset)
    job = api.jobs[("ml", f"{jobset}-{role.kind.value}-{role.index}")]
    before = {
        "restarts": js["status"]["restarts"],
        "counted": js["status"]["restartsCountTowardsMax"],
        "failed": job["status"]["failed"],
        "pods": sum(
            1
            for p in api.pods.values()
            if p["metadata"]["labels"]["batch.kubernetes.io/job-name"] == job["metadata"]["name"]
        ),
    }
    end.apply(api, api.current_pod(jobset, role.kind.value, role.index))
    assert outcome(api, jobset, role, before) == (verdict.action, verdict.counted), verdict.reason


def test_the_table_covers_every_verdict() -> None:
    """The cases above reach every action of the lifecycle, counted and free."""
    seen = set()
    for (spec, name), end, used in itertools.product(ROLES, ENDS, (0, 9)):
        verdict = decide(
            RoleId.parse(name),
            end.role_end(),
            uses_parameter_servers=spec.cluster.uses_parameter_servers,
            policy=spec.restart_policy,
            role_restarts=used,
            job_restarts=used,
        )
        seen.add((verdict.action, verdict.counted))
    assert seen == {
        (Action.SUCCEEDED, False),
        (Action.FAIL_JOB, False),
        (Action.RESTART_ROLE, True),
        (Action.RESTART_ROLE, False),
        (Action.RESTART_JOB, True),
        (Action.RESTART_JOB, False),
    }


def test_rules_name_the_role_scopes_and_budgets() -> None:
    rules = failure_policy(PS)
    assert rules["maxRestarts"] == 1
    assert [(r["name"], r["action"], r.get("targetReplicatedJobs")) for r in rules["rules"]] == [
        ("preempted", "RestartJobSetAndIgnoreMaxRestarts", ["chief", "ps"]),
        ("programError", "FailJobSet", None),
        ("roleRestartsUsed", "FailJobSet", ["worker", "evaluator"]),
        ("crashed", "RestartJobSet", ["chief", "ps"]),
    ]
    all_reduce = failure_policy(ALL_REDUCE)["rules"]
    assert all_reduce[-1]["targetReplicatedJobs"] == ["chief", "worker"]
    chief_only = failure_policy(PS.with_overrides({"cluster": {"chief": 1}}))["rules"]
    assert "roleRestartsUsed" not in [r["name"] for r in chief_only]  # no empty target list
    assert Role.CHIEF.value in chief_only[0]["targetReplicatedJobs"]


def test_the_runtime_exit_after_a_notice_is_no_program_error() -> None:
    """Exit 75 (`PREEMPTED_EXIT_CODE`): an all-reduce member ends so when a peer got the notice;
    without a `DisruptionTarget` of its own that is a counted crash, never FailJob."""
    from tfdist.kubernetes.jobset_policy import PROGRAM_EXIT_CODES
    from tfdist.lifecycle import PREEMPTED_EXIT_CODE

    assert PREEMPTED_EXIT_CODE not in PROGRAM_EXIT_CODES
    assert set(PROGRAM_EXIT_CODES) == set(range(1, 128)) - {PREEMPTED_EXIT_CODE}
