"""Preemption notices to real jobs under `tfdist run` and under Airflow: SIGTERM to one role's
TensorFlow process, then SIGKILL once the grace period is over (as a kubelet does on a reclaimed
spot node).

What must hold: the notice is a checkpoint. The chief saves at the step it had reached, the
notified role ends as preempted (not counted: these jobs allow no counted restart at all), and
the job resumes from that checkpoint, losing none of the steps trained before the notice; a
parameter-server worker is restarted alone and its steps run elsewhere meanwhile.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import psutil
import pytest
from airflow_home import AirflowHome
from jobtools import (
    assert_no_process_left,
    attempts,
    checkpoint_steps,
    digits_job,
    latest_run_dir,
    role_log,
    run_dirs,
    tfdist_command,
    wait_for,
)

from tfdist.launch.local import STANDBY_ENV

pytestmark = pytest.mark.integration

DAGS = Path(__file__).parent / "dags"

GRACE_SECS = 10
MAX_STEPS = 300
EVERY = 150  # the periodic checkpoints: 150 and 300; every notice comes between them
STEP = re.compile(r"step (\d+)/\d+ loss")
RESUMED = re.compile(r"training from step (\d+) to")
SAVED_FOR_NOTICE = re.compile(r"preemption notice: saved the checkpoint for step (\d+)")


def spot_job(name: str, tmp_path: Path, data: str, cluster: dict[str, int]) -> dict[str, Any]:
    spec = digits_job(name, tmp_path / "model", data, cluster, max_steps=MAX_STEPS)
    spec["train_spec"].update(save_checkpoints_steps=EVERY, log_step_count_steps=10)
    spec["restart_policy"] = {"grace_period_secs": GRACE_SECS}
    return spec


def start(
    spec: dict[str, Any], tmp_path: Path, standby: bool = False
) -> tuple[subprocess.Popen[bytes], Path]:
    """`tfdist run --restarts 0`: a counted restart would fail the job; `standby`: with the
    local launcher's warm standby."""
    out = tmp_path / f"{spec['name']}.out"
    with out.open("wb") as sink:
        process = subprocess.Popen(
            tfdist_command(spec, tmp_path, "--restarts", "0"),
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={**os.environ, STANDBY_ENV: "1" if standby else "0"},
        )
    wait_for(lambda: run_dirs(tmp_path, spec["name"]), 60, "the launch")
    return process, out


def steps_logged(log: str) -> list[int]:
    return [int(step) for step in STEP.findall(log)]


def notify(run_dir: Path, role: str) -> bool:
    """SIGTERM to the role's own process, SIGKILL after the grace period; whether it ended
    within the grace period on its own."""
    supervisor = psutil.Process(json.loads((run_dir / f"{role}.pid").read_text())["pid"])
    (process,) = supervisor.children()
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=GRACE_SECS)
        return True
    except psutil.TimeoutExpired:
        process.kill()
        return False


def notice_mid_interval(run_dir: Path, role: str) -> int:
    """Once the chief has logged step 30 (between the checkpoints at 0 and 150), notify
    `role`; the last step the chief logged before the notice."""

    def trained() -> bool:
        return any(step >= 30 for step in steps_logged(role_log(run_dir, "chief-0")))

    wait_for(trained, 180, "the chief at step 30", interval=0.05)
    before = max(steps_logged(role_log(run_dir, "chief-0")))
    assert before < EVERY, "the notice must come between two periodic checkpoints"
    assert notify(run_dir, role), f"{role} was still running {GRACE_SECS} s after SIGTERM"
    return before


def preemptions(tmp_path: Path, output: str) -> list[dict[str, Any]]:
    """The run's goodput (`model_dir/tfdist/goodput.json`, also printed): its preemptions."""
    assert "tfdist: goodput " in output
    goodput = json.loads((tmp_path / "model" / "tfdist" / "goodput.json").read_text())
    assert goodput["steps"] == MAX_STEPS
    found: list[dict[str, Any]] = goodput["preemptions"]
    return found


def finish(process: subprocess.Popen[bytes], out: Path) -> str:
    try:
        process.wait(timeout=240)
    finally:
        process.kill()
    output = out.read_text()
    assert process.returncode == 0, output[-4000:]
    return output


@pytest.mark.timeout(330)
@pytest.mark.parametrize("role", ["chief-0", "ps-0"])
def test_a_notice_to_the_chief_or_a_ps_is_a_checkpoint_the_job_resumes_from(
    tmp_path: Path, digits_data: str, role: str
) -> None:
    spec = spot_job("spot", tmp_path, digits_data, {"worker": 2, "ps": 1})
    process, out = start(spec, tmp_path)
    run_dir = latest_run_dir(tmp_path, "spot")
    before = notice_mid_interval(run_dir, role)
    output = finish(process, out)

    # Both end preempted, the chief once it has saved; whichever is seen first is named.
    assert re.search(
        r"tfdist: (chief-0|ps-0) was preempted: ended after a preemption notice \(SIGTERM\); "
        r"restarting every role \(not counted\)",
        output,
    )
    first, second = attempts(role_log(run_dir, "chief-0"), "chief-0")
    (saved,) = (int(step) for step in SAVED_FOR_NOTICE.findall(first))
    assert before <= saved < EVERY  # nothing trained before the notice is lost
    assert int(RESUMED.findall(second)[0]) == saved
    assert f"(step {saved})" in second  # restored ckpt-<saved>
    assert saved in checkpoint_steps(tmp_path / "model")
    (cost,) = preemptions(tmp_path, output)  # the runner's own stops are not counted
    assert (cost["role"], cost["resumed_from"], cost["steps_lost"]) == (role, saved, 0)
    if role == "ps-0":  # it served until the chief had saved
        assert f"preemption notice: the chief saved step {saved}" in role_log(run_dir, role)
    assert max(checkpoint_steps(tmp_path / "model")) == MAX_STEPS
    assert_no_process_left(run_dir)


@pytest.mark.timeout(330)
def test_a_notified_parameter_server_worker_leaves_and_rejoins_alone(
    tmp_path: Path, digits_data: str
) -> None:
    """The coordinator runs the worker's steps on the other worker; the chief goes on. The
    worker's warm standby (already past `import tensorflow`) is what starts again."""
    spec = spot_job("spotw", tmp_path, digits_data, {"worker": 2, "ps": 1})
    process, out = start(spec, tmp_path, standby=True)
    run_dir = latest_run_dir(tmp_path, "spotw")
    wait_for((run_dir / "worker-0.standby").exists, 60, "worker-0's standby")
    standby = json.loads((run_dir / "worker-0.standby").read_text())
    notice_mid_interval(run_dir, "worker-0")
    output = finish(process, out)

    assert (
        "tfdist: worker-0 was preempted: ended after a preemption notice (SIGTERM); "
        "restarting worker-0 alone (not counted)" in output
    )
    assert len(attempts(role_log(run_dir, "chief-0"), "chief-0")) == 1  # never restarted
    _, again = attempts(role_log(run_dir, "worker-0"), "worker-0")
    assert re.search(r"ran \d+ steps here", again), "the restarted worker-0 ran no step"
    assert json.loads((run_dir / "worker-0.pid").read_text()) == standby
    assert not list(run_dir.glob("*.standby*"))  # every standby left was stopped
    (cost,) = preemptions(tmp_path, output)
    assert (cost["role"], cost["steps_lost"]) == ("worker-0", 0)
    assert max(checkpoint_steps(tmp_path / "model")) == MAX_STEPS
    assert_no_process_left(run_dir)


@pytest.mark.timeout(330)
def test_under_all_reduce_a_notice_to_a_worker_makes_every_member_save_the_same_step(
    tmp_path: Path, digits_data: str
) -> None:
    """TensorFlow's PreemptionCheckpointHandler: the chief and the worker save together."""
    spec = spot_job("spotar", tmp_path, digits_data, {"worker": 1})
    process, out = start(spec, tmp_path)
    run_dir = latest_run_dir(tmp_path, "spotar")
    before = notice_mid_interval(run_dir, "worker-0")
    output = finish(process, out)

    assert (
        "was preempted: ended after a preemption notice (SIGTERM); restarting every role "
        "(not counted)" in output
    )
    first, second = attempts(role_log(run_dir, "chief-0"), "chief-0")
    (saved,) = (int(step) for step in SAVED_FOR_NOTICE.findall(first))
    worker_first = attempts(role_log(run_dir, "worker-0"), "worker-0")[0]
    assert [int(s) for s in SAVED_FOR_NOTICE.findall(worker_first)] == [saved]
    assert before <= saved < EVERY
    assert int(RESUMED.findall(second)[0]) == saved
    (cost,) = preemptions(tmp_path, output)
    assert (cost["role"], cost["resumed_from"], cost["steps_lost"]) == ("worker-0", saved, 0)
    assert max(checkpoint_steps(tmp_path / "model")) == MAX_STEPS
    assert_no_process_left(run_dir)


@pytest.mark.timeout(600)
def test_through_airflow_a_notice_to_the_chief_costs_no_retry_and_no_training(
    tmp_path: Path, digits_data: str
) -> None:
    """`airflow standalone` (LocalExecutor, SQLite) runs `tfdist_spot` (dags/spot.py: chief,
    worker and ps of the digits trainer, the same checkpoints and grace period as above). The
    chief is reclaimed while it trains: its watch task follows the job's restart (no failure,
    no Airflow retry), training resumes from the step saved at the notice, and the teardown's
    goodput XCom records the preemption."""
    dag_id, run_id = "tfdist_spot", "reclaimed"
    home = AirflowHome(tmp_path)
    home.env["AIRFLOW__CORE__DAGS_FOLDER"] = str(DAGS)
    home.env["TFDIST_DIGITS_DATA"] = digits_data
    home.migrate()
    with home.standalone():
        # The API answers before the DAG processor has parsed the file: unpause once it has.
        def unpaused() -> bool:
            return home.airflow("dags", "unpause", dag_id).returncode == 0

        wait_for(unpaused, 240, f"{dag_id} to be parsed", interval=2)
        triggered = home.airflow("dags", "trigger", dag_id, "--run-id", run_id)
        assert triggered.returncode == 0, triggered.stderr[-2000:]
        wait_for(lambda: list((tmp_path / "runs").rglob("spot-*/chief-0.log")), 240, "the launch")
        (log,) = (tmp_path / "runs").rglob("spot-*/chief-0.log")
        run_dir = log.parent
        before = notice_mid_interval(run_dir, "chief-0")
        state = home.wait_for_run(dag_id, run_id, timeout=420)
    tasks = home.tasks(dag_id, run_id)
    assert state == "success", tasks
    assert {(row.rendered_map_index or row.task_id, row.state) for row in tasks} == {
        ("train_and_evaluate.launch", "success"),
        ("chief-0", "success"),
        ("worker-0", "success"),
        ("ps-0", "success"),
        ("train_and_evaluate.stop", "success"),
    }
    assert {row.try_number for row in tasks} == {1}  # no Airflow retry, the chief's watch too

    first, second = attempts(role_log(run_dir, "chief-0"), "chief-0")
    (saved,) = (int(step) for step in SAVED_FOR_NOTICE.findall(first))
    assert before <= saved < EVERY  # nothing trained before the notice is lost
    assert int(RESUMED.findall(second)[0]) == saved
    from tfdist_airflow.runs import run_model_dir

    model_dir = Path(run_model_dir(str(home.base_dir / "models"), dag_id, run_id))
    assert max(checkpoint_steps(model_dir)) == MAX_STEPS
    goodput = teardown_goodput(home, dag_id, run_id)
    assert goodput == json.loads((model_dir / "tfdist" / "goodput.json").read_text())
    assert (goodput["steps"], goodput["attempts"], goodput["recompute_secs"]) == (MAX_STEPS, 2, 0)
    (cost,) = goodput["preemptions"]
    assert (cost["role"], cost["resumed_from"], cost["steps_lost"]) == ("chief-0", saved, 0)
    # The step at the notice's time, at the attempt's average rate: at most what it saved.
    assert 0 < cost["steps_before"] <= saved
    assert_no_process_left(run_dir)


def teardown_goodput(home: AirflowHome, dag_id: str, run_id: str) -> dict[str, Any]:
    """What the run's teardown task returned (`Goodput`)."""
    with sqlite3.connect(home.home / "airflow.db") as db:
        (value,) = db.execute(
            "SELECT value FROM xcom WHERE dag_id = ? AND run_id = ? AND key = 'return_value' "
            "AND task_id = 'train_and_evaluate.stop'",
            (dag_id, run_id),
        ).fetchone()
    found: dict[str, Any] = json.loads(value)
    return found
