"""Item 6: how planning scales: `tfdist.plan.plan` (every role's `TF_CONFIG`) and the
JobSet builder for 10, 100 and 1000 roles (chief + N-1 all-reduce workers).

Every role's `TF_CONFIG` lists the whole cluster, so its size is linear in the roles and the
total quadratic. Side by side, the floor: the same `TF_CONFIG` strings written by hand with
`json.dumps`. Each size is timed `--runs` times, interleaved; the table holds the 1000-role
time over the one-second budget.

    python -m bench.plan_scale [--runs 5] [--roles 10 100 1000]
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

from bench.common import Row, Stats, print_table

BUDGET_SECS = 1.0


def _timed(call: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = call()
    return time.perf_counter() - started, result


def by_hand(cluster: dict[str, list[str]]) -> list[str]:
    """Every role's `TF_CONFIG`, as a script would write it."""
    return [
        json.dumps({"cluster": cluster, "task": {"type": kind, "index": index}}, sort_keys=True)
        for kind, addresses in cluster.items()
        for index in range(len(addresses))
    ]


def ways(roles: int) -> dict[str, Callable[[], Any]]:
    from tfdist.kubernetes.jobset import jobset_addresses, jobset_name, plan_jobset
    from tfdist.kubernetes.manifests import Target
    from tfdist.kubernetes.names import RunRef
    from tfdist.plan import plan
    from tfdist.spec import parse_spec

    spec = parse_spec(
        {
            "name": "digits",
            "trainer": {"entrypoint": "tfdist.examples.digits"},
            "cluster": {"chief": 1, "worker": roles - 1},
            "train_spec": {"max_steps": 1000},
            "model_dir": "gs://bucket/models/digits",
        }
    )
    ref, target = RunRef(), Target(namespace="tfdist")
    addresses = jobset_addresses(spec, jobset_name(spec.name, ref), target.namespace)
    cluster = {kind: names for kind, names in addresses.items() if names}
    return {
        "by hand": lambda: by_hand(cluster),
        "plan": lambda: plan(spec, addresses),
        "plan+jobset": lambda: plan_jobset(spec, target, ref=ref),
    }


def measure(runs: int, sizes: list[int]) -> list[Row]:
    print(f"item 6: planning {sizes} roles, {runs} runs each", flush=True)
    times: dict[tuple[int, str], list[float]] = {}
    size: dict[int, int] = {}
    for roles in sizes:
        calls = ways(roles)
        for index in range(runs):
            for name in list(calls) if index % 2 == 0 else list(calls)[::-1]:
                seconds, result = _timed(calls[name])
                times.setdefault((roles, name), []).append(seconds)
                if name == "plan":
                    size[roles] = sum(len(role.env["TF_CONFIG"]) for role in result.roles)
    lines = []
    for roles in sizes:
        shown = ", ".join(
            f"{name} {statistics.median(times[(roles, name)]) * 1000:.1f} ms"
            for name in ("by hand", "plan", "plan+jobset")
        )
        lines.append(f"{roles} roles: {shown}, TF_CONFIG total {size[roles] / 1e6:.2f} MB")
        print(f"  {lines[-1]}")
    big = max(sizes)
    median = {roles: statistics.median(times[(roles, "plan")]) for roles in sizes}
    growth = ", ".join(
        f"{a}->{b} roles: time x{median[b] / median[a]:.0f}, bytes x{size[b] / size[a]:.0f}"
        for a, b in itertools.pairwise(sizes)
    )
    note = f"{'; '.join(lines)}; growth of plan: {growth} (bytes quadratic)"
    rows = []
    for name in ("plan", "plan+jobset"):
        ratios = [t / BUDGET_SECS for t in times[(big, name)]]
        floor = statistics.median(times[(big, name)]) / statistics.median(times[(big, "by hand")])
        rows.append(
            Row(
                "6",
                f"{name}, {big} roles: seconds / {BUDGET_SECS:g} s budget",
                Stats.of(ratios),
                "<= 1.0",
                statistics.median(ratios) <= 1.0,
                f"{floor:.1f}x the hand-written json.dumps floor"
                + (f"; {note}" if name == "plan" else ""),
            )
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.plan_scale", description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--roles", type=int, nargs="+", default=[10, 100, 1000])
    args = parser.parse_args(argv)
    print_table(measure(args.runs, args.roles))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
