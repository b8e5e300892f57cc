"""Item 9: the cost of watching a 65-role job: Kubernetes API requests per role per poll.

65 roles (chief, 48 workers, 15 ps, evaluator), each with its own watch doing what the watch
trigger does every poll: read its role's new log lines, then every role's status. No cluster
can run here: the requests are counted on the shipped in-memory clusters through a wrapper
that counts every `KubeApi` call (the fakes' own controllers are not counted).

Side by side, for the same job and polls:

- JobSet backend, every watch in one triggerer (as deferrable watch tasks run): they share one
  `Snapshots`; the polls are spread over the poll interval as the triggers' own timers are;
- JobSet backend, every watch in its own process (nothing shared), the baseline;
- JobSet backend, one triggerer, also for 5 and 17 roles (chief, workers, ps, evaluator), to
  show the cost per role does not grow with the job.

Phases: queued in Kueue, running, and the polls right after a whole-job restart.

    python -m bench.watch_requests [--polls 10]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from bench.common import Row, Stats, print_table

POLL_SECS = 2.0
TARGET = 2.0  # requests per role per poll
CALLS = frozenset(
    {
        "create_pod",
        "get_pod",
        "delete_pod",
        "list_pods",
        "read_pod_log",
        "pending_workloads",
        "create_object",
        "get_object",
        "list_objects",
        "delete_object",
    }
)


class Counting:
    """A `KubeApi` that counts the requests made through it."""

    def __init__(self, api: Any):
        self.api = api
        self.requests = 0

    def __getattr__(self, name: str) -> Any:
        found = getattr(self.api, name)
        if name not in CALLS:
            return found

        def call(*args: Any, **kwargs: Any) -> Any:
            self.requests += 1
            return found(*args, **kwargs)

        return call


SIZES = {5: (2, 1), 17: (12, 3), 65: (48, 15)}  # roles -> (workers, ps), with chief, evaluator


def spec(roles: int = 65) -> Any:
    from tfdist.spec import parse_spec

    workers, ps = SIZES[roles]
    return parse_spec(
        {
            "name": "wide",
            "trainer": {"entrypoint": "tfdist.examples.digits"},
            "cluster": {"worker": workers, "ps": ps, "evaluator": 1},
            "train_spec": {"max_steps": 1000},
            "model_dir": "gs://bucket/models/wide",
        }
    )


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def per_poll(watchers: list[Callable[[], None]], clock: Clock, counting: Counting) -> float:
    """Requests per watcher for one poll of each, spread over the poll interval."""
    before = counting.requests
    for watch in watchers:
        watch()
        clock.now += POLL_SECS / len(watchers)
    return (counting.requests - before) / len(watchers)


def jobset_phases(shared: bool, polls: int, roles: int = 65) -> dict[str, list[float]]:
    from tfdist.kubernetes.jobset import (
        JobSetOptions,
    )
    from tfdist.kubernetes.jobset_launcher import JobSetLauncher, Snapshots
    from tfdist.kubernetes.kueue import Kueue
    from tfdist.kubernetes.manifests import Target
    from tfdist.testing.jobset_cluster import FakeJobSetCluster

    cluster, clock = FakeJobSetCluster(), Clock()
    api = Counting(cluster)
    options = JobSetOptions(kueue=Kueue(queue_name="gpu-queue"))
    target = Target(namespace="ml")
    common = Snapshots(max_age_secs=1.0, clock=clock)
    first = JobSetLauncher(api, target, options, snapshots=common, clock=clock)  # type: ignore[arg-type]
    handle = first.launch(first.plan(spec(roles), "bench/run/train_and_evaluate"))
    name = handle.job_id.split("/")[1]
    offsets = dict.fromkeys(handle.roles, 0)

    def watcher(role: str) -> Callable[[], None]:
        snapshots = common if shared else Snapshots(max_age_secs=1.0, clock=clock)
        backend = JobSetLauncher(api, target, options, snapshots=snapshots, clock=clock)  # type: ignore[arg-type]

        def poll() -> None:
            _, offsets[role] = backend.read_log(handle, role, offsets[role])
            backend.statuses(handle)

        return poll

    watchers = [watcher(role) for role in handle.roles]
    found: dict[str, list[float]] = {"queued": [], "running": [], "after a job restart": []}
    for _ in range(polls):
        found["queued"].append(per_poll(watchers, clock, api))
    cluster.admit(name)
    for role in handle.roles:
        kind, _, index = role.rpartition("-")
        pod = cluster.current_pod(name, kind, int(index))
        cluster.start(pod)
        cluster.write_log(pod, "step 1\n")
    for _ in range(polls):
        found["running"].append(per_poll(watchers, clock, api))
    cluster.oom(cluster.current_pod(name, "chief", 0))
    for _ in range(polls):
        found["after a job restart"].append(per_poll(watchers, clock, api))
    return found


def measure(polls: int = 10) -> list[Row]:
    shared = jobset_phases(shared=True, polls=polls)
    alone = jobset_phases(shared=False, polls=polls)
    rows = []
    for phase, values in shared.items():
        worst = max(values)
        rows.append(
            Row(
                "9",
                f"API requests per role per poll, 65 roles, JobSet, {phase}",
                Stats.of(values),
                f"<= {TARGET:g}",
                worst <= TARGET,
                f"one triggerer; each watch in its own process: {max(alone[phase]):.2f}",
            )
        )
    for roles in (5, 17):
        values = jobset_phases(shared=True, polls=polls, roles=roles)["running"]
        rows.append(
            Row(
                "9",
                f"API requests per role per poll, {roles} roles, JobSet, running",
                Stats.of(values),
                f"<= {TARGET:g}",
                max(values) <= TARGET,
                "one triggerer: one shared read of the JobSet and its pods, one log read per watch",
            )
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.watch_requests", description=__doc__)
    parser.add_argument("--polls", type=int, default=10)
    args = parser.parse_args(argv)
    rows = measure(args.polls)
    print_table(rows)
    return 0 if all(row.passed for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
