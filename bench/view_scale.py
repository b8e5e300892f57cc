"""Item 11: the Training view of a large run, as the API server builds it: 1,000 eval records,
50 roles (a local run directory with each role's log, process and exit records), the chief's
TensorBoard event file with 1,000 training points, a blessing and a deploy.

Timed: `collect_view` (reading the model and run directories) plus `render_page`, from the
rows and XComs the API server's database query returns (the query itself is not timed). Side
by side, the floor: reading and parsing the same 1,000 record files with `json.loads`. The table
holds the view's time over the one-second budget.

    python -m bench.view_scale [--runs 5] [--records 1000] [--roles 50]
"""

from __future__ import annotations

import argparse
import json
import statistics
import struct
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import Row, Stats, print_table

BUDGET_SECS = 1.0


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _event(step: int, tag: str, value: float) -> bytes:
    """One TFRecord holding an Event with one simple scalar (as TensorBoard's format has it)."""
    name = tag.encode()
    summary_value = b"\x0a" + _varint(len(name)) + name + b"\x15" + struct.pack("<f", value)
    summary = b"\x0a" + _varint(len(summary_value)) + summary_value
    data = b"\x10" + _varint(step) + b"\x2a" + _varint(len(summary)) + summary
    return struct.pack("<Q", len(data)) + b"\0" * 4 + data + b"\0" * 4


def write_run(root: Path, records: int, roles: int) -> tuple[list[Any], dict[Any, Any]]:
    """A finished run on disk, and the task rows and XComs the database would return."""
    from tfdist.deploy import Deployment
    from tfdist.gate import Baseline, GateSpec, decide, write_blessing
    from tfdist.records import EvalRecord, eval_record_name
    from tfdist.spec import parse_spec
    from tfdist.storage import LocalStorage
    from tfdist_airflow.contracts import Deployed, Gated, Launched, TaskKind
    from tfdist_airflow.roles import redacted
    from tfdist_airflow.view.collect import TaskRow

    model_dir, storage = str(root / "model"), LocalStorage()
    steps = [10 * (index + 1) for index in range(records)]
    last = None
    for step in steps:
        last = EvalRecord(
            global_step=step,
            metrics={"accuracy": 0.5 + step / (25 * steps[-1]), "loss": 1.0 / step},
            checkpoint_path=f"{model_dir}/ckpt-{step}",
            timestamp=float(step),
            eval_steps=5,
        )
        storage.write_text(eval_record_name(f"{model_dir}/eval", step), last.model_dump_json())
    assert last is not None
    thresholds = {"accuracy": {"min": 0.5, "change": {"direction": "higher_is_better",
                  "absolute": -0.02}}, "loss": {"max": 0.5}}  # fmt: skip
    baseline = Baseline(version=1, metrics={"accuracy": 0.51, "loss": 0.3}, model_dir="/m1")
    blessing = decide(last, GateSpec.from_params(thresholds), baseline, now=0, model_dir=model_dir)
    write_blessing(storage, model_dir, blessing)
    events = b"".join(
        _event(step, tag, 1.0 / step) for step in steps for tag in ("loss", "steps_per_sec")
    )
    (Path(model_dir) / "events.out.tfevents.1.bench.0.v2").write_bytes(events)

    names = ["chief-0", *(f"worker-{i}" for i in range(roles - 3)), "ps-0", "evaluator-0"]
    run_dir = root / "run"
    run_dir.mkdir()
    started = datetime(2026, 11, 30, tzinfo=UTC).timestamp()
    for role in names:
        (run_dir / f"{role}.pid").write_text(json.dumps({"pid": 1, "created": started}))
        log = "".join(
            f"2026-11-30T00:00:00.000Z {role} INFO tfdist.train: step {s} (40.0 steps/s)\n"
            for s in steps
        )
        (run_dir / f"{role}.log").write_text(log)
        (run_dir / f"{role}.exit").write_text('{"exit_code": 0, "reason": "exited"}')
    spec = parse_spec(
        {
            "name": "digits",
            "trainer": {"entrypoint": "tfdist.examples.digits"},
            "cluster": {"chief": 1, "worker": roles - 3, "ps": 1, "evaluator": 1},
            "train_spec": {"max_steps": steps[-1]},
            "model_dir": model_dir,
        }
    )
    handle = {"backend": "local", "job_id": str(run_dir), "launch_id": "x", "roles": names}
    rows = [
        TaskRow("t.launch", TaskKind.LAUNCH, "success"),
        *(
            TaskRow("t.watch", TaskKind.WATCH, "success", map_index=i, rendered_map_index=r)
            for i, r in enumerate(names)
        ),
        TaskRow("gate", TaskKind.GATE, "success"),
        TaskRow("deploy", TaskKind.DEPLOY, "success"),
    ]
    deployment = Deployment(
        model_name="digits", version=2, path=str(root / "serving" / "2"), run_id="r",
        model_dir=model_dir, metrics=last.metrics, global_step=steps[-1], deployed_at=0,
    )  # fmt: skip
    xcoms = {
        ("t.launch", Launched.key): {"spec": redacted(spec), "handle": handle},
        ("gate", "return_value"): Gated(blessing=blessing).model_dump(mode="json"),
        ("deploy", "return_value"): Deployed(deployment=deployment).model_dump(mode="json"),
    }
    return rows, xcoms


def view_once(rows: list[Any], xcoms: dict[Any, Any]) -> int:
    from tfdist.storage import storage_for
    from tfdist_airflow.view.collect import collect_view
    from tfdist_airflow.view.page import render_page

    view = collect_view(
        dag_id="nightly", run_id="r", run_state="success", rows=rows, xcoms=xcoms,
        storage_of=storage_for,
    )  # fmt: skip
    return len(render_page(view, now=datetime.now(UTC)))


def floor_once(eval_dir: Path) -> int:
    """Only reading and parsing the eval records."""
    return len([json.loads(path.read_text()) for path in sorted(eval_dir.glob("record-*.json"))])


def measure(runs: int, records: int = 1000, roles: int = 50) -> list[Row]:
    print(f"item 11: the Training view, {records} eval records, {roles} roles", flush=True)
    with tempfile.TemporaryDirectory(prefix="tfdist-bench-view-") as tmp:
        rows, xcoms = write_run(Path(tmp), records, roles)
        view_once(rows, xcoms)  # imports and caches warm, as in a running API server
        times: dict[str, list[float]] = {"view": [], "floor": []}
        for index in range(runs):
            order = ("view", "floor") if index % 2 == 0 else ("floor", "view")
            for way in order:
                started = time.perf_counter()
                if way == "view":
                    size = view_once(rows, xcoms)
                else:
                    floor_once(Path(tmp) / "model" / "eval")
                times[way].append(time.perf_counter() - started)
    view, floor = (statistics.median(times[way]) for way in ("view", "floor"))
    detail = (
        f"view {view * 1000:.0f} ms (page {size / 1e6:.2f} MB), records json.loads floor "
        f"{floor * 1000:.0f} ms ({view / floor:.1f}x); the database query not included"
    )
    print(f"  {detail}")
    ratios = [t / BUDGET_SECS for t in times["view"]]
    return [
        Row(
            "11",
            f"Training view, {records} eval records, {roles} roles: seconds / "
            f"{BUDGET_SECS:g} s budget",
            Stats.of(ratios),
            "<= 1.0",
            statistics.median(ratios) <= 1.0,
            detail,
        )
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.view_scale", description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--roles", type=int, default=50)
    args = parser.parse_args(argv)
    print_table(measure(args.runs, args.records, args.roles))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
