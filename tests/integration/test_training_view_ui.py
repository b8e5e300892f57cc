"""The Training view on a real nightly run: its endpoints, its extra links, and a real browser.

One `airflow dags test` run of the nightly DAG (SQLite) after a version 1 of the model was
deployed, so the gate compares with a baseline and the run deploys version 2. The endpoints are
requested through Airflow's API server app with FastAPI's test client in a fresh interpreter
(`view_client.py`). The browser tests drive headless Chromium (the distribution's `chromium`
and `chromium-driver` packages) against `airflow standalone` on the same home, which then
trains two more runs at once: one stopped by a user after its first eval point (seen while it
trains, then stopped), one held to thresholds no 200-step model passes (not blessed, then
compared with the blessed run). Each state is saved as a screenshot (`make ui-screenshot`
writes them to docs/).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import pytest
from airflow_home import AirflowHome
from jobtools import exit_records, processes_of, wait_for

from tfdist.backend import JobHandle
from tfdist.deploy import DEPLOYMENT_JSON, SAVED_MODEL_PB, Deployment
from tfdist.gate import GateSpec, decide, write_blessing
from tfdist.launch.local import LocalLauncher
from tfdist.records import EvalRecord, eval_record_name
from tfdist.storage import storage_for
from tfdist_airflow.view.model import Progress
from tfdist_airflow.view.read import read_step
from tfdist_airflow.view.urls import files_view_url, run_tab_url, training_view_url

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

pytestmark = pytest.mark.integration

DAG_ID = "nightly_retrain"
ROLES = ["chief-0", "worker-0", "worker-1", "ps-0", "evaluator-0"]
TOP_TASKS = ("prepare_data", "train_and_evaluate", "gate", "export", "deploy")
TENSORBOARD = "http://tensorboard.test/?logdir={model_dir}"
BASELINE = {"accuracy": 0.94, "loss": 0.2}
CHROMIUM = os.environ.get("TFDIST_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("TFDIST_CHROMEDRIVER", "/usr/bin/chromedriver")
APT = "apt-get install -y chromium chromium-driver"


def deploy_version_1(serving_base: Path) -> None:
    """What an earlier nightly run left: version 1 of the digits model, complete."""
    version = serving_base / "digits" / "1"
    version.mkdir(parents=True)
    deployment = Deployment(
        model_name="digits",
        version=1,
        path=str(version),
        run_id="an-earlier-run",
        model_dir=str(serving_base.parent / "models" / "earlier"),
        metrics=BASELINE,
        global_step=200,
        deployed_at=time.time() - 86400,
    )
    (version / DEPLOYMENT_JSON).write_text(deployment.model_dump_json())
    (version / SAVED_MODEL_PB).write_bytes(b"")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[AirflowHome, str]:
    home = AirflowHome(tmp_path_factory.mktemp("training-view"))
    home.env["AIRFLOW__TFDIST__TENSORBOARD_URL"] = TENSORBOARD
    # Under heavy load Airflow's scheduler can take the exit of a watch task's deferring worker
    # for the end of its resumed try, and fail it (a role that ended within seconds of the
    # deferral): the watch task's retry then reports the role. Retry in seconds, not minutes.
    home.env["AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY"] = "5"
    # Every run here is started by hand. Once unpaused, the @daily DAG would also get its
    # scheduled run when the test spans midnight UTC, training beside the others and listed
    # among the runs to compare with; manual runs still start with this off.
    home.env["AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE"] = "False"
    home.migrate()
    deploy_version_1(home.base_dir / "serving")
    result = home.dags_test(DAG_ID, {"max_steps": 200})
    assert result.returncode == 0, result.stderr[-3000:]
    (run_id, state), *_ = home.runs(DAG_ID)
    assert state == "success"
    return home, run_id


def test_endpoints_refuse_strangers_and_show_the_run(
    finished_run: tuple[AirflowHome, str],
) -> None:
    home, run_id = finished_run
    env = {**home.env, "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False"}
    client = str(Path(__file__).with_name("view_client.py"))
    result = subprocess.run(
        [sys.executable, client, DAG_ID, run_id],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["statuses"] == {
        "anonymous": 303,  # a page: to the login page, and back after it
        "anonymous_files": 303,
        "anonymous_json": 401,
        "bad_token": 403,
        "no_role": 403,
        "unknown_run": 404,
        "admin_json": 200,
        "cookie_page": 200,
        "cookie_files": 200,
        "cookie_history": 200,
    }
    assert report["heavy"] == []  # the API server never loaded TensorFlow
    login = urlsplit(report["login"])  # the login page, then back to the page opened
    assert login.path == "/auth/login"
    assert unquote(parse_qs(login.query)["next"][0]) == unquote(report["page_url"])
    files = report["files"]  # the model directory's files, by kind
    for kind in ("checkpoint", "eval record", "TensorBoard events", "export", "blessing"):
        assert f"<td>{kind}</td>" in files, kind
    assert "<code>blessing/BLESSED</code>" in files
    history = report["history"]  # versions 2 (this run's, with its margins) and 1
    assert [int(v) for v in re.findall(r'data-version="(\d+)"', history)] == [2, 1]
    assert '<tr class="version this-run" data-version="2">' in history
    assert "accuracy change &gt;= -0.02 vs version 1: +" in history
    html_link = f"../../history/{DAG_ID}/{quote(run_id, safe='')}"
    assert f'<a id="history-link" href="{html_link}">' in report["html"]

    (step,) = report["view"]["steps"]
    roles = {role["role"]: role for role in step["roles"]}
    assert list(roles) == ROLES
    assert {role["state"] for role in roles.values()} == {"success"}
    assert {role["status"]["text"] for role in roles.values()} == {"done"}
    assert all(role["start"] < role["end"] for role in roles.values())
    assert roles["chief-0"]["last_step"] == 200 and roles["chief-0"]["steps_per_sec"] > 0
    assert roles["evaluator-0"]["last_step"] == 200
    accuracy, loss = step["series"]
    assert (accuracy["metric"], loss["metric"]) == ("accuracy", "loss")
    assert accuracy["points"][-1][0] == 200
    lines = {line["kind"]: line["value"] for line in accuracy["lines"]}
    assert lines == pytest.approx({"min": 0.9, "change": 0.92, "baseline": 0.94})
    lines = {line["kind"]: line["value"] for line in loss["lines"]}
    assert lines == pytest.approx({"max": 0.5, "baseline": 0.2})
    assert step["decision"]["blessed"] and step["decision"]["baseline_version"] == 1
    assert step["deployed"]["version"] == 2
    assert step["deployed"]["path"] == str(home.base_dir / "serving" / "digits" / "2")
    assert step["sentence"] == "trained to step 200 of 200; blessed; deployed digits version 2"
    margins = [(m["metric"], m["rule"]) for m in step["decision"]["margins"]]
    assert margins == [
        ("accuracy", "min 0.9"),
        ("accuracy", "change >= -0.02 vs version 1"),
        ("loss", "max 0.5"),
    ]
    # The chief's own TensorBoard event file, read without TensorFlow
    training = {series["metric"]: series["points"] for series in step["training"]}
    assert list(training) == ["training loss", "learning rate", "steps/s"]
    assert training["training loss"][-1][0] == 200
    assert all(value > 0 for _, value in training["steps/s"])

    html = report["html"]
    assert html.count('class="role-row"') == 5
    assert "BLESSED</strong> at step 200" in html and "digits version 2</strong>" in html

    links = {task: answer["extra_links"] for task, answer in report["links"].items()}
    model_link = files_view_url(DAG_ID, run_id)
    tensorboard = TENSORBOARD.format(model_dir=quote(step["model_dir"], safe=""))
    watch = links["train_and_evaluate.watch"]
    assert (watch["Model directory"], watch["TensorBoard"]) == (model_link, tensorboard)
    assert not watch["Pod logs"]  # local roles have no pod
    assert links["gate"] == {"Model directory": model_link, "TensorBoard": tensorboard}
    deployed_link = training_view_url(DAG_ID, run_id)
    assert links["deploy"]["Deployed version"] == deployed_link


def test_the_view_reads_a_model_directory_on_gcs(bucket: str) -> None:
    """Eval records, the blessing and a role's progress record written to the GCS emulator (as
    roles on Kubernetes write them), read back as the view does."""
    model_dir = f"gs://{bucket}/models/nightly/run-1"
    storage = storage_for(model_dir)
    records = [
        EvalRecord(
            global_step=step,
            metrics={"accuracy": accuracy},
            checkpoint_path=f"{model_dir}/ckpt-{step}",
            timestamp=float(step),
            eval_steps=5,
        )
        for step, accuracy in ((100, 0.9), (200, 0.95))
    ]
    for record in records:
        storage.write_text(eval_record_name(f"{model_dir}/eval", record.global_step),
                           record.model_dump_json())  # fmt: skip
    storage.write_text(f"{model_dir}/eval/events.out.tfevents.1", "not a record")
    gate = GateSpec.from_params({"accuracy": {"min": 0.9}})
    write_blessing(storage, model_dir, decide(records[-1], gate, None, now=0.0))

    progress = {"role": "chief-0", "unit": "steps", "count": 200, "rate": 40.0,
                "global_step": 200, "max_steps": 200, "timestamp": 0.0,
                "launch_id": "l1", "reported_by": "chief-0"}  # fmt: skip
    storage.write_text(f"{model_dir}/tfdist/progress/chief-0.json", json.dumps(progress))
    handle = {"backend": "jobset", "launch_id": "l1", "roles": ["chief-0", "ps-0"]}

    found = read_step(storage_for, model_dir, "eval", handle)
    assert found.records == records
    assert found.blessing is not None and found.blessing.blessed
    assert found.progress == {"chief-0": Progress(last_step=200, steps_per_sec=40.0)}
    assert found.problems == []

    missing = read_step(storage_for, f"gs://{bucket}-missing/m", "eval", {})
    (problem,) = missing.problems
    assert problem.startswith(f"cannot read gs://{bucket}-missing/m: ")
    assert f"{bucket}-missing" in problem.split(": ", 1)[1]


def _browser_missing() -> str | None:
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        return f"no headless Chromium at {CHROMIUM} / {CHROMEDRIVER}; install it with `{APT}`"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed; it is in the dev extra (`make venv`)"
    return None


@pytest.fixture(scope="module")
def chromium() -> None:
    """Skips the browser tests (before the UI starts for them) where no Chromium can run."""
    missing = _browser_missing()
    if missing:
        pytest.skip(missing)


@pytest.fixture(scope="module")
def ui(finished_run: tuple[AirflowHome, str]) -> Iterator[str]:
    """`airflow standalone` on the finished run's home: the UI, and a scheduler for more runs.
    Afterwards every launch of the home is stopped (a no-op for roles that ended), once no
    watch task is left to restart its roles: a failing test may leave a run training."""
    home, _ = finished_run
    try:
        with home.standalone() as url:
            yield url
    finally:
        launcher = LocalLauncher(home.root / "runs")
        for path in (home.root / "runs").glob("**/handle.json"):
            launcher.stop(JobHandle.model_validate_json(path.read_text()))


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the screenshots go: next to `$TFDIST_SCREENSHOT` (docs/ for `make ui-screenshot`)."""
    named = os.environ.get("TFDIST_SCREENSHOT")
    folder = Path(named).parent if named else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@contextmanager
def browser(height: int = 1240) -> Iterator[WebDriver]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument(f"--window-size=1440,{height}")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def open_tab(driver: WebDriver, url: str, run_id: str, tab: str, title: str) -> None:
    """The run's tab in the UI (which logs in by itself: every user is an admin here), with the
    driver in the tab's frame."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.switch_to.default_content()
    driver.get(f"{url}/{run_tab_url(DAG_ID, run_id, tab)}")
    frame = WebDriverWait(driver, 90).until(
        lambda d: d.find_element(By.CSS_SELECTOR, f"iframe[title='{title}']")
    )
    driver.switch_to.frame(frame)


def save(driver: WebDriver, path: Path) -> None:
    driver.switch_to.default_content()
    assert driver.save_screenshot(str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_training_tab_in_a_real_browser(
    chromium: None, ui: str, finished_run: tuple[AirflowHome, str], screenshots: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    _, run_id = finished_run
    url = ui
    screenshot = Path(os.environ.get("TFDIST_SCREENSHOT") or screenshots / "training-view.png")
    with browser() as driver:
        open_tab(driver, url, run_id, "training", "Training")
        wait = WebDriverWait(driver, 90)
        rows = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "tr.role-row"))
        assert [row.get_attribute("data-role") for row in rows] == ROLES
        charts = driver.find_elements(By.CSS_SELECTOR, "svg.metric")
        assert [chart.get_attribute("data-metric") for chart in charts] == [
            "training loss",
            "learning rate",
            "steps/s",
            "accuracy",
            "loss",
        ]
        outcome = driver.find_element(By.ID, "outcome").text
        assert outcome == "Trained to step 200 of 200; blessed; deployed digits version 2"
        kinds = {
            line.get_attribute("class")
            for line in driver.find_elements(By.CSS_SELECTOR, "line.gate-line")
        }
        assert kinds == {
            "gate-line min",
            "gate-line change",
            "gate-line baseline",
            "gate-line max",
        }
        assert driver.find_element(By.ID, "decision").text.startswith("BLESSED at step 200")
        assert "digits version 2" in driver.find_element(By.ID, "deployed").text
        driver.switch_to.default_content()
        # The run's cells of the grid, so that the screenshot shows the task states too.
        cells = f'a[id^="grid-{run_id}-"]'
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, cells)) == len(TOP_TASKS))
        save(driver, screenshot)
        # From the Training tab to the model's history, in the tab's frame
        frame = driver.find_element(By.CSS_SELECTOR, "iframe[title=Training]")
        driver.switch_to.frame(frame)
        driver.find_element(By.ID, "history-link").click()
        versions = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "tr.version"))
        assert [row.get_attribute("data-version") for row in versions] == ["2", "1"]
        # ... and its own tab
        open_tab(driver, url, run_id, "model-history", "Model history")
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "tr.version")) == 2)
        save(driver, screenshot.with_name("model-history.png"))
        # The Model files tab, as the Model directory link opens it: within Airflow's UI
        open_tab(driver, url, run_id, "model-files", "Model files")
        listed = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "tr.file"))
        assert "blessing/BLESSED" in [row.text.split()[0] for row in listed]
        save(driver, screenshot.with_name("model-files.png"))


# -- more runs through the scheduler: one while it trains, then stopped; one not blessed ------

STOPPED_STEPS = 20000  # far more than it trains before the stop
STRICT = {"max_steps": 200, "min_accuracy": 0.999, "max_loss": 0.01}  # no 200-step model passes
USER = "Anonymous"  # whom the simple auth manager makes every user when all are admins


def api(url: str, method: str, path: str, body: object | None = None) -> Any:
    """A request to the API server; on an overloaded machine a write may wait minutes for
    SQLite's lock (marking a run failed writes each of its task instances). One that gave up
    waiting ("database is locked", which the API server answers with a bare 500, its
    transaction rolled back) is sent again, at most twice, unless it creates something (POST).
    Any other error fails at once."""
    data = None if body is None else json.dumps(body).encode()
    for attempt in range(3):
        request = urllib.request.Request(
            f"{url}{path}", data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=240) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            text = error.read().decode(errors="replace")
            if error.code != 500 or method == "POST" or attempt == 2:
                raise AssertionError(f"{method} {path}: {error.code} {text[-2000:]}") from None
    raise AssertionError("unreachable")


def step_of(url: str, run_id: str) -> dict[str, Any]:
    """The run's one train-and-evaluate step, as the view's JSON has it."""
    view = api(url, "GET", f"/tfdist/api/training/{DAG_ID}/{quote(run_id, safe='')}")
    steps: list[dict[str, Any]] = view["steps"]
    return steps[0] if steps else {}


def launch_dir(home: AirflowHome, run_id: str) -> Path:
    """The run directory of the run's one launch (its roles' records and logs)."""
    from tfdist_airflow.runs import run_name

    (handle,) = (home.root / "runs" / DAG_ID / run_name(run_id)).glob("**/handle.json")
    return handle.parent


def words(step: dict[str, Any]) -> list[str]:
    return [role["status"]["word"] for role in step.get("roles", [])]


@pytest.fixture(scope="module")
def two_more_runs(ui: str) -> tuple[str, str]:
    """Two runs started at once: a long one (to watch, then stop) and a strict one."""

    def unpaused() -> bool:
        try:
            api(ui, "PATCH", f"/api/v2/dags/{DAG_ID}", {"is_paused": False})
        except urllib.error.HTTPError:
            return False  # not parsed by this scheduler's DAG processor yet
        return True

    wait_for(unpaused, 120, f"{DAG_ID} to be parsed", 2)
    runs = f"/api/v2/dags/{DAG_ID}/dagRuns"
    long_run = api(ui, "POST", runs, {"logical_date": None, "conf": {"max_steps": STOPPED_STEPS}})
    strict = api(ui, "POST", runs, {"logical_date": None, "conf": STRICT})
    return long_run["dag_run_id"], strict["dag_run_id"]


@pytest.mark.timeout(900)
def test_a_run_while_it_trains_then_stopped_by_a_user(
    chromium: None,
    ui: str,
    finished_run: tuple[AirflowHome, str],
    two_more_runs: tuple[str, str],
    screenshots: Path,
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    home, _ = finished_run
    run_id, _ = two_more_runs

    def training_past_its_first_eval() -> bool:
        step = step_of(ui, run_id)
        evaluated = [series for series in step.get("series", []) if series["points"]]
        return words(step) == ["running"] * len(ROLES) and len(evaluated) == 2

    wait_for(training_past_its_first_eval, 480, "every role running, a first eval point", 2)
    step = step_of(ui, run_id)
    # Airflow's word for them: each watch task runs, or waits deferred for its role
    assert {role["state"] for role in step["roles"]} <= {"running", "deferred"}
    assert step["decision"] is None and step["sentence"].startswith("training, step ")
    # The gate's bar, drawn from the first eval point: the DAG's thresholds, the deployed v2
    bars = {
        series["metric"]: {line["kind"] for line in series["lines"]} for series in step["series"]
    }
    assert bars == {"accuracy": {"min", "change", "baseline"}, "loss": {"max", "baseline"}}
    with browser(height=1800) as driver:
        open_tab(driver, ui, run_id, "training", "Training")
        wait = WebDriverWait(driver, 90)
        rows = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "tr.role-row"))
        statuses = driver.find_elements(By.CSS_SELECTOR, "tr.role-row .status")
        assert [s.get_attribute("data-word") for s in statuses] == ["running"] * len(rows)
        assert driver.find_element(By.ID, "outcome").text.startswith("Training, step ")
        assert driver.find_element(By.ID, "decision").text.startswith("No gate decision yet")
        lines = driver.find_elements(By.CSS_SELECTOR, "svg.metric line.gate-line")
        assert {line.get_attribute("class") for line in lines} == {
            "gate-line min", "gate-line change", "gate-line baseline", "gate-line max",
        }  # fmt: skip
        save(driver, screenshots / "training-view-running.png")

        api(ui, "PATCH", f"/api/v2/dags/{DAG_ID}/dagRuns/{quote(run_id, safe='')}",
            {"state": "failed"})  # fmt: skip
        # Each role reads "stopped" once its watch task is failed; its last step is final once
        # its process has ended (the chief checkpoints on the way out).
        run_dir = launch_dir(home, run_id)
        wait_for(
            lambda: not processes_of(run_dir) and len(exit_records(run_dir)) == len(ROLES),
            120,
            "every role process to end",
            1,
        )
        # each stopped on request: by SIGTERM, or by SIGKILL once the stop's grace ran out
        reasons = {record["reason"] for record in exit_records(run_dir).values()}
        assert reasons <= {"stopped", "killed"}, reasons
        assert set(words(step_of(ui, run_id))) == {"stopped"}
        # the run is over once its teardown (the group's stop task) has run
        assert home.wait_for_run(DAG_ID, run_id, timeout=180) == "failed"
        step = step_of(ui, run_id)
        stopped = re.fullmatch(
            rf"stopped by {USER} at step (\d+) of {STOPPED_STEPS} \(\d\d:\d\d:\d\d UTC\); "
            "nothing deployed",
            step["sentence"],
        )
        assert stopped, step["sentence"]
        assert 100 <= int(stopped[1]) < STOPPED_STEPS
        open_tab(driver, ui, run_id, "training", "Training")
        outcome = wait.until(lambda d: d.find_element(By.ID, "outcome"))
        assert outcome.text == step["sentence"][:1].upper() + step["sentence"][1:]
        statuses = driver.find_elements(By.CSS_SELECTOR, "tr.role-row .status")
        assert all(s.text.startswith(f"stopped by {USER} at ") for s in statuses)
        assert "ended before the gate decided" in driver.find_element(By.ID, "decision").text
        save(driver, screenshots / "training-view-stopped.png")


@pytest.mark.timeout(900)
def test_a_run_not_blessed_and_its_curves_beside_the_deployed_runs(
    chromium: None,
    ui: str,
    finished_run: tuple[AirflowHome, str],
    two_more_runs: tuple[str, str],
    screenshots: Path,
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    home, blessed_run = finished_run
    stopped_run, run_id = two_more_runs
    assert home.wait_for_run(DAG_ID, run_id, timeout=600) == "success"
    step = step_of(ui, run_id)
    assert step["decision"]["blessed"] is False and step["deployed"] is None
    margins = [(m["metric"], m["rule"]) for m in step["decision"]["margins"]]
    assert margins == [
        ("accuracy", "min 0.999"),
        ("accuracy", "change >= -0.02 vs version 2"),
        ("loss", "max 0.01"),
    ]
    assert step["sentence"].startswith("trained to step 200 of 200; not blessed (")
    assert step["sentence"].endswith("); nothing deployed")
    with browser(height=1800) as driver:
        open_tab(driver, ui, run_id, "training", "Training")
        wait = WebDriverWait(driver, 90)
        decision = wait.until(lambda d: d.find_element(By.ID, "decision"))
        assert decision.text.startswith("NOT BLESSED at step 200")
        failed = driver.find_elements(By.CSS_SELECTOR, "tr.margin td.fail")
        assert len(failed) == 2  # min accuracy and max loss; the change rule passes or not
        assert driver.find_element(By.ID, "outcome").text.startswith(
            "Trained to step 200 of 200; not blessed ("
        )
        save(driver, screenshots / "training-view-not-blessed.png")
        # The runs to compare with: the DAG's others
        frame = driver.find_element(By.CSS_SELECTOR, "iframe[title=Training]")
        driver.switch_to.frame(frame)
        driver.find_element(By.ID, "compare-link").click()
        choices = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "tr.choice"))
        assert {row.get_attribute("data-run") for row in choices} == {blessed_run, stopped_run}
        # From the model's history: the deployed version 2 (the blessed run's), beside this run
        open_tab(driver, ui, run_id, "model-history", "Model history")
        links = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "a.compare"))
        assert len(links) == 1  # version 2; version 1's run is of no run of this DAG
        links[0].click()
        charts = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "svg.comparison"))
        assert [chart.get_attribute("data-metric") for chart in charts] == [
            "training loss", "learning rate", "steps/s", "accuracy", "loss",
        ]  # fmt: skip
        for chart in charts:
            curves = chart.find_elements(By.CSS_SELECTOR, "polyline.curve")
            assert [c.get_attribute("data-run") for c in curves] == [run_id, blessed_run]
            legend = chart.find_elements(By.CSS_SELECTOR, "g.legend text")
            assert [item.text for item in legend] == [f"{run_id} (this run)", blessed_run]
        save(driver, screenshots / "training-view-compare.png")
