"""The shipped fake cluster (`tfdist.testing.jobset_cluster`) against the engines' own tests.

No JobSet, Job or Kueue controller can run here, so the next best judge of the fake is the
engines' own unit tests. Each row below is a case of one of them, translated (inputs and
expected outputs, not code) and named by its upstream file, test and case:

- kubernetes-sigs/jobset v0.12.0, `pkg/controllers/failure_policy_test.go`,
  `success_policy_test.go`, `jobset_controller_test.go`;
- kubernetes/kubernetes `pkg/controller/job/pod_failure_policy_test.go` (TestMatchPodFailurePolicy).

Upstream test functions map to the fake's functions of the same meaning (`findFirstFailedJob`
-> `find_first_failed_job`, ...); `TestConstructJobsFromTemplate` cases run on the whole fake
cluster. The rows for JobSet's `RestartJob` actions are run with their alpha feature gate off,
as a v0.12 cluster runs by default: the fake refuses them, as the controller does.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any, NamedTuple

import pytest

from tfdist.kubernetes.api import JOBSETS
from tfdist.testing import jobset_cluster as fake
from tfdist.testing.jobset_cluster import FakeJobSetCluster

JOBSET = "kubernetes-sigs/jobset@v0.12.0 pkg/controllers"
JOB = "kubernetes/kubernetes pkg/controller/job/pod_failure_policy_test.go"
HOUR = 3600


class Row(NamedTuple):
    source: str  # upstream file :: test :: case
    check: Callable[[], None]


def cases(rows: list[Row]) -> list[Any]:
    return [pytest.param(row.check, id=row.source) for row in rows]


# -- kubernetes pkg/controller/job: matchPodFailurePolicy ---------------------------------------
def failed_pod(
    containers: list[tuple[str | None, int | None]] = (),  # type: ignore[assignment]
    conditions: list[tuple[str, str]] = (),  # type: ignore[assignment]
    init: list[tuple[str, int]] = (),  # type: ignore[assignment]
) -> dict[str, Any]:
    """A Failed pod `default/mypod`: containers as (name, exit code; None: not terminated)."""

    def status(name: str | None, code: int | None) -> dict[str, Any]:
        found: dict[str, Any] = {
            "state": {} if code is None else {"terminated": {"exitCode": code}}
        }
        if name is not None:
            found["name"] = name
        return found

    return {
        "metadata": {"namespace": "default", "name": "mypod"},
        "status": {
            "phase": "Failed",
            "initContainerStatuses": [status(n, c) for n, c in init],
            "containerStatuses": [status(n, c) for n, c in containers],
            "conditions": [{"type": t, "status": s} for t, s in conditions],
        },
    }


def on_exit(action: str, operator: str, values: list[int]) -> dict[str, Any]:
    return {"action": action, "onExitCodes": {"operator": operator, "values": values}}


def on_condition(action: str, kind: str = "DisruptionTarget", status: str = "True") -> Any:
    return {"action": action, "onPodConditions": [{"type": kind, "status": status}]}


def match(
    rules: list[dict[str, Any]] | None,
    pod: dict[str, Any],
    message: str | None,
    counts: bool,
    action: str | None,
) -> Callable[[], None]:
    def check() -> None:
        policy = None if rules is None else {"rules": rules}
        assert fake.match_pod_failure_policy(policy, pod) == (message, counts, action)

    return check


MAIN_2 = failed_pod([("main-container", 2)])
DISRUPTED = failed_pod(conditions=[("DisruptionTarget", "True")])


def failjob_exit(code: int, index: int) -> str:
    return (
        f"Container main-container for pod default/mypod failed with exit code {code} matching "
        f"FailJob rule at index {index}"
    )


POD_FAILURE_POLICY = [
    Row(
        f"{JOB}::TestMatchPodFailurePolicy::unknown action for rule matching by exit codes - "
        "skip rule with unknown action",
        match(
            [on_exit("UnknownAction", "In", [1, 2]), on_exit("FailJob", "In", [2, 3])],
            MAIN_2,
            failjob_exit(2, 1),
            True,
            "FailJob",
        ),
    ),
    Row(
        f"{JOB}::TestMatchPodFailurePolicy::unknown action for rule matching by pod conditions - "
        "skip rule with unknown action",
        match(
            [on_condition("UnkonwnAction"), on_condition("Ignore")],
            DISRUPTED,
            None,
            False,
            "Ignore",
        ),
    ),
    Row(
        f"{JOB}::TestMatchPodFailurePolicy::unknown operator - rule with unknown action is "
        "skipped for onExitCodes",
        match(
            [on_exit("Ignore", "UnknownOperator", [1, 2]), on_exit("FailJob", "In", [2, 3])],
            MAIN_2,
            failjob_exit(2, 1),
            True,
            "FailJob",
        ),
    ),
    Row(
        f"{JOB}::TestMatchPodFailurePolicy::no policy rules",
        match(None, failed_pod([(None, 2)]), None, True, None),
    ),
    Row(
        f"{JOB}::TestMatchPodFailurePolicy::ignore rule matched for exit codes",
        match([on_exit("Ignore", "In", [1, 2, 3])], failed_pod([(None, 2)]), None, False, "Ignore"),
    ),
    Row(
        f"{JOB}::TestMatchPodFailurePolicy::ignore rule matched on negative exit codes - needed "
        "for Windows support",
        match(
            [on_exit("Ignore", "In", [-1073741676, -1073741510])],
            failed_pod([(None, -1073741510)]),
            None,
            False,
            "Ignore",
        ),
    ),
    Row(
        f"{JOB}::TestMatchPodFailurePolicy::FailJob rule matched for exit codes",
        match([on_exit("FailJob", "In", [1, 2, 3])], MAIN_2, failjob_exit(2, 0), True, "FailJob"),
    ),
    Row(
        f"{JOB}::TestMatchPodFailurePolicy::successful containers are skipped by the rules",
        match(
            [on_exit("FailJob", "NotIn", [111])],
            failed_pod(
                [("main-container", 111), ("suppport-container", 0)],
                init=[("init-container", 0)],
            ),
            None,
            True,
            None,
        ),
    ),
    Row(
        f"{JOB}::TestMatchPodFailurePolicy::FailIndex rule matched for exit codes",
        match(
            [on_exit("FailIndex", "In", [1, 2, 3])],
            failed_pod([(None, 2)]),
            None,
            True,
            "FailIndex",
        ),
    ),
    Row(
        f"{JOB}::TestMatchPodFailurePolicy::pod failure policy with NotIn operator and value 0",
        match(
            [on_exit("FailJob", "NotIn", [0])],
            failed_pod([("main-container", 1), ("suppport-container", 0)]),
            failjob_exit(1, 0),
            True,
            "FailJob",
        ),
    ),
    Row(
        f"{JOB}::TestMatchPodFailurePolicy::second jobfail rule matched for exit codes",
        match(
            [on_exit("Count", "In", [1, 2, 3]), on_exit("FailJob", "In", [4, 5, 6])],
            failed_pod([("main-container", 6)]),
            failjob_exit(6, 1),
            True,
            "FailJob",
        ),
    ),
    Row(
        f"{JOB}::TestMatchPodFailurePolicy::count rule matched for exit codes",
        match(
            [on_exit("Count", "In", [1, 2, 3])],
            failed_pod([("foo", None), ("bar", 2)]),
            None,
            True,
            "Count",
        ),
    ),
    Row(
        f"{JOB}::TestMatchPodFailurePolicy::FailIndex rule matched for pod conditions",
        match([on_condition("FailIndex")], DISRUPTED, None, True, "FailIndex"),
    ),
    Row(
        f"{JOB}::TestMatchPodFailurePolicy::ignore rule matched for pod conditions",
        match([on_condition("Ignore")], DISRUPTED, None, False, "Ignore"),
    ),
    Row(
        f"{JOB}::TestMatchPodFailurePolicy::ignore rule matches by the status=False",
        match(
            [on_condition("Ignore", status="False")],
            failed_pod(conditions=[("DisruptionTarget", "False")]),
            None,
            False,
            "Ignore",
        ),
    ),
    Row(
        f"{JOB}::TestMatchPodFailurePolicy::ignore rule matches by the status=Unknown",
        match(
            [on_condition("Ignore", status="Unknown")],
            failed_pod(conditions=[("DisruptionTarget", "Unknown")]),
            None,
            False,
            "Ignore",
        ),
    ),
    Row(
        f"{JOB}::TestMatchPodFailurePolicy::ignore rule does not match when status for pattern "
        "is False, but actual True",
        match([on_condition("Ignore", status="False")], DISRUPTED, None, True, None),
    ),
    Row(
        f"{JOB}::TestMatchPodFailurePolicy::ignore rule does not match when status for pattern "
        "is True, but actual False",
        match(
            [on_condition("Ignore")],
            failed_pod(conditions=[("DisruptionTarget", "False")]),
            None,
            True,
            None,
        ),
    ),
    Row(
        f"{JOB}::TestMatchPodFailurePolicy::default - do not match condition with status=False",
        match(
            [on_condition("Ignore")],
            failed_pod(conditions=[("DisruptionTarget", "False")]),
            None,
            True,
            None,
        ),
    ),
    Row(
        f"{JOB}::TestMatchPodFailurePolicy::job fail rule matched for pod conditions",
        match(
            [on_condition("FailJob")],
            DISRUPTED,
            "Pod default/mypod has condition DisruptionTarget matching FailJob rule at index 0",
            True,
            "FailJob",
        ),
    ),
    Row(
        f"{JOB}::TestMatchPodFailurePolicy::count rule matched for pod conditions",
        match([on_condition("Count")], DISRUPTED, None, True, "Count"),
    ),
    Row(
        f"{JOB}::TestMatchPodFailurePolicy::no rule matched",
        match(
            [
                on_exit("Count", "NotIn", [8]),
                on_exit("Ignore", "In", [1, 2, 3]),
                on_exit("FailJob", "NotIn", [5, 6, 7]),
                on_condition("Count", "ResourceLimitExceeded"),
                on_condition("Ignore"),
            ],
            failed_pod([(None, 32)]),
            None,
            True,
            "Count",
        ),
    ),
    Row(
        f"{JOB}::TestMatchPodFailurePolicy::expected matching rule returned",
        match(
            [
                {**on_condition("FailJob", "MaxFailedIndexesExceeded"), "name": "0"},
                {**on_condition("Ignore"), "name": "HostMaintenanceRule"},
            ],
            DISRUPTED,
            None,
            False,
            "Ignore",
        ),
    ),
]


@pytest.mark.parametrize("check", cases(POD_FAILURE_POLICY))
def test_the_job_controllers_pod_failure_policy(check: Callable[[], None]) -> None:
    check()


# -- JobSet failure_policy_test.go ------------------------------------------------------------
FAILURE = f"{JOBSET}/failure_policy_test.go"
NOW = 1_800_000_000.0


def stamp(ago: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(NOW - ago, UTC).isoformat().replace("+00:00", "Z")


def failed_job(
    name: str,
    ago: float = 0,
    reason: str = "",
    message: str = "",
    rjob: str = "test-replicated-job-1",
) -> dict[str, Any]:
    condition = {
        "type": "Failed",
        "status": "True",
        "reason": reason,
        "message": message,
        "lastTransitionTime": stamp(ago),
    }
    return {
        "metadata": {"name": name, "labels": {fake.REPLICATED_JOB: rjob}},
        "status": {"conditions": [condition]},
    }


def first_failed(jobs: list[dict[str, Any]], expected: str | None) -> Callable[[], None]:
    def check() -> None:
        found = fake.find_first_failed_job(jobs)
        assert (found["metadata"]["name"] if found else None) == expected

    return check


FIND_FIRST_FAILED_JOB = [
    Row(f"{FAILURE}::TestFindFirstFailedJob::No failed jobs", first_failed([], None)),
    Row(
        f"{FAILURE}::TestFindFirstFailedJob::Single failed job",
        first_failed([failed_job("job1", HOUR)], "job1"),
    ),
    Row(
        f"{FAILURE}::TestFindFirstFailedJob::Multiple failed jobs, earliest first",
        first_failed([failed_job("job1", 3 * HOUR), failed_job("job2", 5 * HOUR)], "job2"),
    ),
    Row(
        f"{FAILURE}::TestFindFirstFailedJob::Jobs without failed condition",
        first_failed([{"metadata": {"name": "job1"}}, {"metadata": {"name": "job2"}}], None),
    ),
]

BACKOFF, DEADLINE, FAILED_INDEXES = "BackoffLimitExceeded", "DeadlineExceeded", "FailedIndexes"
RJOB1, RJOB2 = "test-replicated-job-1", "test-replicated-job-2"


def applicable(
    rule: dict[str, Any], rjob: str, reason: str, message: str, expected: bool
) -> Callable[[], None]:
    def check() -> None:
        job = failed_job("test-job", reason=reason, message=message, rjob=rjob)
        assert fake.rule_applies(rule, job) is expected

    return check


def rule(
    reasons: list[str] = (),  # type: ignore[assignment]
    targets: list[str] = (),  # type: ignore[assignment]
    patterns: list[str] = (),  # type: ignore[assignment]
) -> dict[str, Any]:
    return {
        "onJobFailureReasons": list(reasons),
        "targetReplicatedJobs": list(targets),
        "onJobFailureMessagePatterns": list(patterns),
    }


IS_APPLICABLE = "TestFailurePolicyRuleIsApplicable::a job has failed and the failure policy rule"
RULE_IS_APPLICABLE = [
    Row(
        f"{FAILURE}::{IS_APPLICABLE} matches all possible parent replicated jobs and matches all "
        "possible job failure reasons",
        applicable(rule(), RJOB1, BACKOFF, "", True),
    ),
    Row(
        f"{FAILURE}::{IS_APPLICABLE} matches all possible parent replicated jobs and matches the "
        "job failure reason",
        applicable(rule([BACKOFF]), RJOB1, BACKOFF, "", True),
    ),
    Row(
        f"{FAILURE}::{IS_APPLICABLE} matches all possible parent replicated jobs and does not "
        "match the job failure reason",
        applicable(rule([BACKOFF]), RJOB1, DEADLINE, "", False),
    ),
    Row(
        f"{FAILURE}::{IS_APPLICABLE} matches the parent replicatedJob and matches all possible "
        "job failure reasons",
        applicable(rule([], [RJOB1]), RJOB1, BACKOFF, "", True),
    ),
    Row(
        f"{FAILURE}::{IS_APPLICABLE} matches the parent replicatedJob and matches the job "
        "failure reason",
        applicable(rule([BACKOFF], [RJOB1]), RJOB1, BACKOFF, "", True),
    ),
    Row(
        f"{FAILURE}::{IS_APPLICABLE} matches the parent replicatedJob and does not match the job "
        "failure reason",
        applicable(rule([BACKOFF], [RJOB1]), RJOB1, DEADLINE, "", False),
    ),
    Row(
        f"{FAILURE}::{IS_APPLICABLE} does not match the parent replicatedJob and matches all "
        "possible job failure reasons",
        applicable(rule([], [RJOB1]), RJOB2, BACKOFF, "", False),
    ),
    Row(
        f"{FAILURE}::{IS_APPLICABLE} does not match the parent replicatedJob and matches the job "
        "failure reason",
        applicable(rule([BACKOFF], [RJOB1]), RJOB2, BACKOFF, "", False),
    ),
    Row(
        f"{FAILURE}::{IS_APPLICABLE} does not match the parent replicatedJob and does not match "
        "the job failure reason",
        applicable(rule([BACKOFF], [RJOB1]), RJOB2, DEADLINE, "", False),
    ),
    Row(
        f"{FAILURE}::{IS_APPLICABLE} matches the job failure message pattern",
        applicable(
            rule(patterns=["^job failed because.*"]), RJOB1, "", "job failed because of a bug", True
        ),
    ),
    Row(
        f"{FAILURE}::{IS_APPLICABLE} does not match the job failure message pattern",
        applicable(
            rule(patterns=["^job failed because.*"]), RJOB1, "", "another error message", False
        ),
    ),
    Row(
        f"{FAILURE}::{IS_APPLICABLE} matches both the job failure reason and message pattern",
        applicable(
            rule([BACKOFF], patterns=[".*bug.*"]),
            RJOB1,
            BACKOFF,
            "job failed because of a bug",
            True,
        ),
    ),
    Row(
        f"{FAILURE}::{IS_APPLICABLE} matches the job failure reason but not the message pattern",
        applicable(
            rule([BACKOFF], patterns=[".*bug.*"]),
            RJOB1,
            BACKOFF,
            "job failed due to something else",
            False,
        ),
    ),
]

JOB1 = failed_job("job1", 6 * HOUR, BACKOFF, rjob="test-replicatedJob")
JOB1_EARLIER = failed_job("job1DupEarlierFailure", 12 * HOUR, BACKOFF, rjob="test-replicatedJob")
JOB2 = failed_job("job2", 3 * HOUR, DEADLINE, rjob="test-replicatedJob")
JOB3 = failed_job("job3", HOUR, FAILED_INDEXES, rjob="test-replicatedJob")
RULE1 = {"action": "RestartJobSet", "onJobFailureReasons": [BACKOFF]}
RULE2 = {"action": "RestartJobSet", "onJobFailureReasons": [DEADLINE]}
RULE3 = {"action": "RestartJobSet", "onJobFailureReasons": [FAILED_INDEXES]}
UNMATCHED = {"action": "RestartJobSet", "targetReplicatedJobs": ["fakeReplicatedJobName"]}


def first_rule_and_job(
    rules: list[dict[str, Any]],
    jobs: list[dict[str, Any]],
    expected_rule: dict[str, Any] | None,
    expected_job: dict[str, Any] | None,
) -> Callable[[], None]:
    def check() -> None:
        assert fake.first_failed_rule_and_job(rules, jobs) == (expected_rule, expected_job)

    return check


FIRST_RULE = "TestFindFirstFailedPolicyRuleAndJob"
FIND_FIRST_RULE_AND_JOB = [
    Row(
        f"{FAILURE}::{FIRST_RULE}::There are 0 failed jobs and there are 0 failure policy rules, "
        "therefore nil is returned for both the rule and job.",
        first_rule_and_job([], [], None, None),
    ),
    Row(
        f"{FAILURE}::{FIRST_RULE}::There is 1 failed job and there are 0 failure policy rules, "
        "therefore nil is returned for both the rule and job.",
        first_rule_and_job([], [JOB1], None, None),
    ),
    Row(
        f"{FAILURE}::{FIRST_RULE}::There is 1 failed job, there is 1 failure policy rule, and the "
        "failure policy rule does not match the job, therefore nil is returned for both the rule "
        "and job.",
        first_rule_and_job([RULE2], [JOB1], None, None),
    ),
    Row(
        f"{FAILURE}::{FIRST_RULE}::There is 1 failed job, there are 3 failure policy rules, and "
        "the failed job matches the first failure policy rule, therefore the job and first failure "
        "policy rule are returned.",
        first_rule_and_job([RULE1, RULE2, RULE3], [JOB1], RULE1, JOB1),
    ),
    Row(
        f"{FAILURE}::{FIRST_RULE}::There is 1 failed job, there are 3 failure policy rules, the "
        "failed job does not match the first failure policy rule, and the failed job matches the "
        "second failure policy rule, therefore the job and second failure policy rule are "
        "returned.",
        first_rule_and_job([RULE1, RULE2, RULE3], [JOB2], RULE2, JOB2),
    ),
    Row(
        f"{FAILURE}::{FIRST_RULE}::There is 1 failed job, there are 3 failure policy rules, the "
        "failed job does not match the first nor second failure policy rules, and the failed job "
        "matches the third failure policy rule, therefore the job and the the third failure "
        "policy rule are returned.",
        first_rule_and_job([RULE1, RULE2, RULE3], [JOB3], RULE3, JOB3),
    ),
    Row(
        f"{FAILURE}::{FIRST_RULE}::There are 2 failed jobs and there are 0 failure policy rules, "
        "therefore nil is returned for both the rule and job.",
        first_rule_and_job([], [JOB1, JOB2], None, None),
    ),
    Row(
        f"{FAILURE}::{FIRST_RULE}::There are 2 failed jobs, the second job failed before the first "
        "job, there is 1 failure policy rule, and the failure policy rule does not match any of "
        "the jobs, therefore nil is returned for both the rule and job.",
        first_rule_and_job([RULE2], [JOB1, JOB1_EARLIER], None, None),
    ),
    Row(
        f"{FAILURE}::{FIRST_RULE}::There are 2 failed jobs, the second job failed before the first "
        "job, there is 1 failure policy rule, and the failure policy rule matches both jobs, "
        "therefore the second job and the failure policy rule are returned.",
        first_rule_and_job([RULE1], [JOB1, JOB1_EARLIER], RULE1, JOB1_EARLIER),
    ),
    Row(
        f"{FAILURE}::{FIRST_RULE}::There are 2 failed jobs, the second job failed before the first "
        "job, there are 2 failure policy rules, the first failure policy does not match any of the "
        "jobs, and the second failure policy rule matches both jobs, therefore the second job and "
        "the second failure policy rule are returned.",
        first_rule_and_job([UNMATCHED, RULE1], [JOB1, JOB1_EARLIER], RULE1, JOB1_EARLIER),
    ),
]


def applied(
    max_restarts: int,
    restarts: int,
    counted: int,
    action: str,
    want: tuple[int, int, str | None, str, str],
    rule_name: str | None = None,
) -> Callable[[], None]:
    """applyFailurePolicyRuleAction on a JobSet `test-js` with these counts; `want`: restarts,
    restartsCountTowardsMax, terminal state, and the condition set (type, reason)."""

    def check() -> None:
        js: dict[str, Any] = {
            "metadata": {"name": "test-js"},
            "spec": {"failurePolicy": {"maxRestarts": max_restarts}},
            "status": {"restarts": restarts, "restartsCountTowardsMax": counted},
        }
        rule = {"name": rule_name, "action": action} if rule_name else None
        fake.apply_failure_policy_rule_action(js, failed_job("failed-job"), rule, action, stamp(0))
        status = js["status"]
        conditions = {c["type"]: c for c in status["conditions"] if c["status"] == "True"}
        kind = want[3]
        assert (
            status["restarts"],
            status["restartsCountTowardsMax"],
            status.get("terminalState"),
            kind,
            conditions[kind]["reason"],
        ) == want

    return check


def refused_without_gate(action: str) -> Callable[[], None]:
    def check() -> None:
        js = {"metadata": {"name": "test-js"}, "spec": {"failurePolicy": {"maxRestarts": 5}}}
        with pytest.raises(NotImplementedError, match="alpha feature gate RestartJob"):
            fake.apply_failure_policy_rule_action(js, failed_job("failed-job"), None, action, "")

    return check


APPLY = "TestApplyFailurePolicyRuleAction"
APPLY_ACTION = [
    Row(
        f"{FAILURE}::{APPLY}::FailJobSet action",
        applied(0, 0, 0, "FailJobSet", (0, 0, "Failed", "Failed", "FailJobSetFailurePolicyAction")),
    ),
    Row(
        f"{FAILURE}::{APPLY}::RestartJobSet when restarts < maxRestarts increments restarts count "
        "and counts towards max",
        applied(5, 1, 1, "RestartJobSet", (2, 2, None, "RestartingJobSet", "DefaultFailurePolicy")),
    ),
    Row(
        f"{FAILURE}::{APPLY}::RestartJobSet when restarts < maxRestarts with matching rule sets "
        "FailurePolicy_{RuleName} reason",
        applied(
            5,
            1,
            1,
            "RestartJobSet",
            (2, 2, None, "RestartingJobSet", "FailurePolicy_Rule1"),
            rule_name="Rule1",
        ),
    ),
    Row(
        f"{FAILURE}::{APPLY}::RestartJobSet action when restarts >= maxRestarts fails the jobset",
        applied(2, 2, 2, "RestartJobSet", (2, 2, "Failed", "Failed", "ReachedMaxRestarts")),
    ),
    Row(
        f"{FAILURE}::{APPLY}::RestartJobSetAndIgnoreMaxRestarts action does not count toward max "
        "restarts",
        applied(
            1,
            1,
            1,
            "RestartJobSetAndIgnoreMaxRestarts",
            (2, 1, None, "RestartingJobSet", "DefaultFailurePolicy"),
        ),
    ),
    Row(
        f"{FAILURE}::{APPLY}::RestartJob action when combined restarts < maxRestarts increments "
        "jobRestart count and counts towards max (gate off: refused)",
        refused_without_gate("RestartJob"),
    ),
    Row(
        f"{FAILURE}::{APPLY}::RestartJobAndIgnoreMaxRestarts action does not count toward max "
        "restarts (gate off: refused)",
        refused_without_gate("RestartJobAndIgnoreMaxRestarts"),
    ),
]


@pytest.mark.parametrize(
    "check",
    cases(FIND_FIRST_FAILED_JOB + RULE_IS_APPLICABLE + FIND_FIRST_RULE_AND_JOB + APPLY_ACTION),
)
def test_jobsets_failure_policy(check: Callable[[], None]) -> None:
    check()


# -- JobSet success_policy_test.go --------------------------------------------------------------
SUCCESS = f"{JOBSET}/success_policy_test.go"


def jobset(
    targets: list[str] = (),  # type: ignore[assignment]
    operator: str = "All",
    replicas: dict[str, int] | None = None,
    groups: dict[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "metadata": {"name": "test-jobset", "namespace": "default", "uid": "u1"},
        "spec": {
            "successPolicy": {"operator": operator, "targetReplicatedJobs": list(targets)},
            "replicatedJobs": [
                {"name": name, "replicas": count, **({"groupName": groups[name]} if groups else {})}
                for name, count in (replicas or {}).items()
            ],
        },
    }


def child(rjob: str) -> dict[str, Any]:
    return {"metadata": {"name": "test-job", "labels": {fake.REPLICATED_JOB: rjob}}}


def equals(value: Callable[[], Any], expected: Any) -> Callable[[], None]:
    def check() -> None:
        assert value() == expected

    return check


R1, R2, R3, R4 = (f"test-replicated-job-{i}" for i in (1, 2, 3, 4))
SUCCESS_POLICY = [
    Row(
        f"{SUCCESS}::TestJobMatchesSuccessPolicy::jobset's TargetReplicatedJobs is empty",
        equals(lambda: fake.job_matches_success_policy(jobset(), child(R1)), True),
    ),
    Row(
        f"{SUCCESS}::TestJobMatchesSuccessPolicy::job matches one of the TargetReplicatedJobs",
        equals(lambda: fake.job_matches_success_policy(jobset([R1, R2]), child(R1)), True),
    ),
    Row(
        f"{SUCCESS}::TestJobMatchesSuccessPolicy::job does not match any of the "
        "TargetReplicatedJobs",
        equals(lambda: fake.job_matches_success_policy(jobset([R1, R2]), child(R3)), False),
    ),
    Row(
        f"{SUCCESS}::TestReplicatedJobMatchesSuccessPolicy::jobset's TargetReplicatedJobs is empty",
        equals(lambda: fake.replicated_job_matches_success_policy(jobset(), {"name": R1}), True),
    ),
    Row(
        f"{SUCCESS}::TestReplicatedJobMatchesSuccessPolicy::matching case",
        equals(
            lambda: fake.replicated_job_matches_success_policy(jobset([R1, R2]), {"name": R1}), True
        ),
    ),
    Row(
        f"{SUCCESS}::TestReplicatedJobMatchesSuccessPolicy::non-matching case",
        equals(
            lambda: fake.replicated_job_matches_success_policy(jobset([R1, R2]), {"name": R3}),
            False,
        ),
    ),
    Row(
        f"{SUCCESS}::TestNumJobsMatchingSuccessPolicy::one job matches the success policy",
        equals(
            lambda: fake.num_jobs_matching_success_policy(jobset([R1, R2]), [child(R1), child(R3)]),
            1,
        ),
    ),
    Row(
        f"{SUCCESS}::TestNumJobsMatchingSuccessPolicy::all jobs matches the success policy",
        equals(
            lambda: fake.num_jobs_matching_success_policy(jobset([R1, R2]), [child(R1), child(R2)]),
            2,
        ),
    ),
    Row(
        f"{SUCCESS}::TestNumJobsMatchingSuccessPolicy::no jobs match the success policy",
        equals(
            lambda: fake.num_jobs_matching_success_policy(jobset([R1, R2]), [child(R3), child(R4)]),
            0,
        ),
    ),
    Row(
        f"{SUCCESS}::TestNumJobsMatchingSuccessPolicy::empty target replicated jobs, all job "
        "matches the success policy",
        equals(lambda: fake.num_jobs_matching_success_policy(jobset(), [child(R1), child(R2)]), 2),
    ),
    Row(
        f"{SUCCESS}::TestNumJobsExpectedToSucceed::any job completion fulfills success policy",
        equals(lambda: fake.num_jobs_expected_to_succeed(jobset(operator="Any")), 1),
    ),
    Row(
        f"{SUCCESS}::TestNumJobsExpectedToSucceed::all replicated jobs match success policy",
        equals(
            lambda: fake.num_jobs_expected_to_succeed(jobset([R1, R2], replicas={R1: 1, R2: 2})), 3
        ),
    ),
    Row(
        f"{SUCCESS}::TestNumJobsExpectedToSucceed::some replicated jobs don't match success policy",
        equals(
            lambda: fake.num_jobs_expected_to_succeed(
                jobset([R1, R3], replicas={R1: 1, R2: 2, R3: 3})
            ),
            4,
        ),
    ),
]


@pytest.mark.parametrize("check", cases(SUCCESS_POLICY))
def test_jobsets_success_policy(check: Callable[[], None]) -> None:
    check()


# -- JobSet jobset_controller_test.go -----------------------------------------------------------
CONTROLLER = f"{JOBSET}/jobset_controller_test.go"


def finished(kind: str, expected: tuple[bool, str]) -> Callable[[], None]:
    job = {"status": {"conditions": [{"type": kind, "status": "True"}]}}
    return equals(lambda: fake.job_finished(job), expected)


GROUPS = {"rjob1": "groupA", "rjob2": "groupB", "rjob3": "groupA"}
CONTROLLER_FUNCTIONS = [
    Row(f"{CONTROLLER}::TestIsJobFinished::succeeded", finished("Complete", (True, "Complete"))),
    Row(f"{CONTROLLER}::TestIsJobFinished::failed", finished("Failed", (True, "Failed"))),
    Row(f"{CONTROLLER}::TestIsJobFinished::active", finished("", (False, ""))),
    Row(f"{CONTROLLER}::TestIsJobFinished::suspended", finished("Suspended", (False, ""))),
    Row(f"{CONTROLLER}::TestIsJobFinished::failure target", finished("FailureTarget", (False, ""))),
    Row(
        f"{CONTROLLER}::TestGlobalJobIndex::single replicated job",
        equals(lambda: fake.global_job_index(jobset(replicas={"rjob": 3}), "rjob", 1), "1"),
    ),
    Row(
        f"{CONTROLLER}::TestGlobalJobIndex::multiple replicated jobs",
        equals(
            lambda: fake.global_job_index(
                jobset(replicas={"rjob1": 2, "rjob2": 4, "rjob3": 1}), "rjob2", 3
            ),
            "5",
        ),
    ),
    Row(
        f"{CONTROLLER}::TestGlobalJobIndex::replicated job not found",
        equals(lambda: fake.global_job_index(jobset(replicas={"rjob1": 2}), "invalid", 0), ""),
    ),
    Row(
        f"{CONTROLLER}::TestGlobalReplicas::empty jobset",
        equals(lambda: fake.global_replicas(jobset()), "0"),
    ),
    Row(
        f"{CONTROLLER}::TestGlobalReplicas::single replicated job",
        equals(lambda: fake.global_replicas(jobset(replicas={"rjob1": 3})), "3"),
    ),
    Row(
        f"{CONTROLLER}::TestGlobalReplicas::multiple replicated jobs",
        equals(lambda: fake.global_replicas(jobset(replicas={"rjob1": 2, "rjob2": 5})), "7"),
    ),
    Row(
        f"{CONTROLLER}::TestGroupJobIndex::single replicated job in group",
        equals(
            lambda: fake.group_job_index(
                jobset(replicas={"rjob1": 3}, groups={"rjob1": "groupA"}), "groupA", "rjob1", 1
            ),
            "1",
        ),
    ),
    Row(
        f"{CONTROLLER}::TestGroupJobIndex::multiple replicated jobs in group",
        equals(
            lambda: fake.group_job_index(
                jobset(replicas={"rjob1": 1, "rjob2": 2, "rjob3": 3}, groups=GROUPS),
                "groupA",
                "rjob3",
                1,
            ),
            "2",
        ),
    ),
    Row(
        f"{CONTROLLER}::TestGroupJobIndex::replicated job not found in group",
        equals(
            lambda: fake.group_job_index(
                jobset(replicas={"rjob1": 2, "rjob2": 4}, groups=GROUPS), "groupA", "rjob2", 0
            ),
            "",
        ),
    ),
    Row(
        f"{CONTROLLER}::TestGroupJobIndex::replicated job doesn't exist",
        equals(
            lambda: fake.group_job_index(
                jobset(replicas={"rjob1": 2, "rjob2": 4}, groups=GROUPS), "groupA", "rjob3", 0
            ),
            "",
        ),
    ),
    Row(
        f"{CONTROLLER}::TestGroupJobIndex::group doesn't exit",
        equals(
            lambda: fake.group_job_index(
                jobset(replicas={"rjob1": 2, "rjob2": 4}, groups=GROUPS), "groupC", "rjob1", 0
            ),
            "",
        ),
    ),
    Row(
        f"{CONTROLLER}::TestGroupReplicas::empty jobset",
        equals(lambda: fake.group_replicas(jobset(), "groupA"), "0"),
    ),
    Row(
        f"{CONTROLLER}::TestGroupReplicas::multiple replicated jobs in group",
        equals(
            lambda: fake.group_replicas(
                jobset(replicas={"rjob1": 1, "rjob2": 2, "rjob3": 3}, groups=GROUPS), "groupA"
            ),
            "4",
        ),
    ),
]


@pytest.mark.parametrize("check", cases(CONTROLLER_FUNCTIONS))
def test_jobsets_controller_functions(check: Callable[[], None]) -> None:
    check()


# TestConstructJobsFromTemplate, on the whole fake cluster: a JobSet `test-jobset` in
# `default`, one replicated job `replicated-job` of 2 replicas, its template carrying labels
# and annotations of its own on the Job and the pod.
CONSTRUCT = f"{CONTROLLER}::TestConstructJobsFromTemplate"


def constructed(**spec: Any) -> dict[str, Any]:
    template = {
        "metadata": {
            "labels": {"job-label-key1": "v1"},
            "annotations": {"job-annotation-key1": "a1"},
        },
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {
                    "labels": {"pod-label-key1": "p1"},
                    "annotations": {"pod-annotation-key1": "pa1"},
                },
                "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]},
            },
        },
    }
    return {
        "apiVersion": "jobset.x-k8s.io/v1alpha2",
        "kind": "JobSet",
        "metadata": {"name": "test-jobset"},
        "spec": {
            "replicatedJobs": [{"name": "replicated-job", "replicas": 2, "template": template}],
            **spec,
        },
    }


def run(manifest: dict[str, Any]) -> FakeJobSetCluster:
    api = FakeJobSetCluster(clock=lambda: NOW)
    api.create_object(JOBSETS, "default", manifest)
    return api


def all_jobs_created_with_labels_and_annotations() -> None:
    api = run(constructed())
    uid = api.jobset("test-jobset")["metadata"]["uid"]
    names = sorted(name for _, name in api.jobs)
    assert names == ["test-jobset-replicated-job-0", "test-jobset-replicated-job-1"]
    for index, name in enumerate(names):
        job = api.jobs[("default", name)]
        expected = {
            "jobset.sigs.k8s.io/jobset-name": "test-jobset",
            "jobset.sigs.k8s.io/jobset-uid": uid,
            "jobset.sigs.k8s.io/replicatedjob-name": "replicated-job",
            "jobset.sigs.k8s.io/group-name": "default",
            "jobset.sigs.k8s.io/replicatedjob-replicas": "2",
            "jobset.sigs.k8s.io/job-index": str(index),
            "jobset.sigs.k8s.io/restart-attempt": "0",
            "jobset.sigs.k8s.io/job-key": hashlib.sha1(f"default/{name}".encode()).hexdigest(),
        }
        pod = job["spec"]["template"]["metadata"]
        for found, own in (
            (job["metadata"]["labels"], {"job-label-key1": "v1"}),
            (job["metadata"]["annotations"], {"job-annotation-key1": "a1"}),
            (pod["labels"], {"pod-label-key1": "p1"}),
            (pod["annotations"], {"pod-annotation-key1": "pa1"}),
        ):
            assert expected.items() <= found.items() and own.items() <= found.items()
        assert job["spec"]["suspend"] is False


def blocked_until_previous_jobs_are_gone() -> None:
    api = run(constructed(failurePolicy={"maxRestarts": 1, "restartStrategy": "BlockingRecreate"}))
    api.linger = 3  # pods take three reads to go, as a terminating pod does
    api.start(api.current_pod("test-jobset", "replicated-job", 0))
    api.exit(api.current_pod("test-jobset", "replicated-job", 0), 137)
    assert api.jobset("test-jobset")["status"]["restarts"] == 1
    attempts = {job["metadata"]["labels"][fake.RESTART_ATTEMPT] for job in api.jobs.values()}
    assert attempts == {"0"}  # no Job of attempt 1 while those of attempt 0 remain
    for _ in range(5):
        api.list_pods("default", {})
    attempts = {job["metadata"]["labels"][fake.RESTART_ATTEMPT] for job in api.jobs.values()}
    assert attempts == {"1"}


def suspended_then_resumed() -> None:
    api = run(constructed(suspend=True))
    assert {job["spec"]["suspend"] for job in api.jobs.values()} == {True}
    assert api.pods == {}
    api.jobset("test-jobset")["spec"]["suspend"] = False
    api.reconcile()
    assert {job["spec"]["suspend"] for job in api.jobs.values()} == {False}
    assert len(api.pods) == 2


def pod_dns_hostnames() -> None:
    api = run(constructed(network={"enableDNSHostnames": True}))
    for index in (0, 1):
        pod = api.pod(api.current_pod("test-jobset", "replicated-job", index))
        assert pod["spec"]["subdomain"] == "test-jobset"
        assert pod["spec"]["hostname"] == f"test-jobset-replicated-job-{index}-0"


CONSTRUCT_JOBS = [
    Row(
        f"{CONSTRUCT}::all jobs/pods created with labels and annotations",
        all_jobs_created_with_labels_and_annotations,
    ),
    Row(
        f"{CONSTRUCT}::job creation blocked until all previous jobs no longer exist",
        blocked_until_previous_jobs_are_gone,
    ),
    Row(f"{CONSTRUCT}::suspend job set + resume job set", suspended_then_resumed),
    Row(f"{CONSTRUCT}::pod dns hostnames enabled", pod_dns_hostnames),
]


@pytest.mark.parametrize("check", cases(CONSTRUCT_JOBS))
def test_jobsets_child_jobs(check: Callable[[], None]) -> None:
    check()


def test_every_row_names_its_upstream_case_once() -> None:
    rows = (
        POD_FAILURE_POLICY
        + FIND_FIRST_FAILED_JOB
        + RULE_IS_APPLICABLE
        + FIND_FIRST_RULE_AND_JOB
        + APPLY_ACTION
        + SUCCESS_POLICY
        + CONTROLLER_FUNCTIONS
        + CONSTRUCT_JOBS
    )
    sources = [row.source for row in rows]
    assert len(set(sources)) == len(sources)
    assert all(source.count("::") == 2 for source in sources)


# -- what tfdist emits needs no alpha feature gate ------------------------------------------------
# pkg/features/features.go (v0.12.0): InPlaceRestart, RestartJob and ElasticJobSet are alpha, off
# by default; a cluster as installed refuses (or ignores) what needs them.
ALPHA_ONLY = {
    ("failurePolicy", "restartStrategy"): {"InPlaceRestart"},
    ("failurePolicy", "rules", "action"): {"RestartJob", "RestartJobAndIgnoreMaxRestarts"},
}


@pytest.mark.parametrize(
    "cluster",
    [{"worker": 3, "ps": 2, "evaluator": 1}, {"worker": 2}, {"worker": 2, "evaluator": 1}],
    ids=["parameter-servers", "all-reduce", "all-reduce-evaluator"],
)
def test_no_field_tfdist_emits_needs_an_alpha_feature_gate(cluster: dict[str, int]) -> None:
    from tfdist.kubernetes.jobset import plan_jobset
    from tfdist.kubernetes.manifests import Target
    from tfdist.spec import parse_spec

    spec = parse_spec(
        {
            "name": "digits",
            "trainer": {"entrypoint": "tfdist.examples.digits"},
            "cluster": cluster,
            "train_spec": {"max_steps": 10},
            "model_dir": "gs://bucket/m",
        }
    )
    emitted = plan_jobset(spec, Target())["spec"]
    policy = emitted["failurePolicy"]
    assert policy["restartStrategy"] not in ALPHA_ONLY[("failurePolicy", "restartStrategy")]
    actions = {rule["action"] for rule in policy["rules"]}
    assert actions and not actions & ALPHA_ONLY[("failurePolicy", "rules", "action")]
    for rjob in emitted["replicatedJobs"]:  # ElasticJobSet: tfdist never changes replicas
        for rule in rjob["template"]["spec"]["podFailurePolicy"]["rules"]:
            assert rule["action"] in {"FailJob", "Ignore"}  # FailIndex needs backoffLimitPerIndex
