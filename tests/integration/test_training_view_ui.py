"""The Training view on a real nightly run: its endpoints, its extra links, and a real browser.

One `airflow dags test` run of the nightly DAG (SQLite) after a version 1 of the model was
deployed, so the gate compares with a baseline and the run deploys version 2. The endpoints are
requested through Airflow's API server app with FastAPI's test client in a fresh interpreter
(`view_client.py`); the browser test drives headless Chromium (the distribution's `chromium`
and `chromium-driver` packages) against `airflow api-server` and saves a screenshot
(`make ui-screenshot` writes docs/training-view.png).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

import pytest
from airflow_home import AIRFLOW, AirflowHome, _free_port, serving

from tfdist.deploy import DEPLOYMENT_JSON, SAVED_MODEL_PB, Deployment
from tfdist.gate import GateSpec, decide, write_blessing
from tfdist.records import EvalRecord, eval_record_name
from tfdist.storage import storage_for
from tfdist_airflow.view.model import Progress
from tfdist_airflow.view.read import read_step
from tfdist_airflow.view.urls import files_view_url, run_tab_url, training_view_url

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


@contextmanager
def api_server(home: AirflowHome) -> Iterator[str]:
    """`airflow api-server` (the UI and the plugin) of the home, on a free loopback port."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**home.env, "AIRFLOW__API__BASE_URL": url}
    command = [AIRFLOW, "api-server", "--host", "127.0.0.1", "--port", str(port)]
    with serving(command, env, home.root / "api-server.log", port) as served:
        yield served


def _browser_missing() -> str | None:
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        return f"no headless Chromium at {CHROMIUM} / {CHROMEDRIVER}; install it with `{APT}`"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed; it is in the dev extra (`make venv`)"
    return None


def test_training_tab_in_a_real_browser(
    finished_run: tuple[AirflowHome, str], tmp_path: Path
) -> None:
    missing = _browser_missing()
    if missing:
        pytest.skip(missing)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    home, run_id = finished_run
    screenshot = Path(os.environ.get("TFDIST_SCREENSHOT") or tmp_path / "training-view.png")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument("--window-size=1440,1240")
    with api_server(home) as url:
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        try:
            # The UI logs in by itself (simple auth manager, everyone admin), then opens the tab.
            driver.get(f"{url}/dags/{DAG_ID}/runs/{quote(run_id, safe='')}/plugin/training")
            wait = WebDriverWait(driver, 90)
            frame = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "iframe[title=Training]"))
            driver.switch_to.frame(frame)
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
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            assert driver.save_screenshot(str(screenshot))
            # From the Training tab to the model's history, in the tab's frame
            frame = driver.find_element(By.CSS_SELECTOR, "iframe[title=Training]")
            driver.switch_to.frame(frame)
            driver.find_element(By.ID, "history-link").click()
            versions = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "tr.version"))
            assert [row.get_attribute("data-version") for row in versions] == ["2", "1"]
            driver.switch_to.default_content()
            # ... and its own tab
            driver.get(f"{url}/{run_tab_url(DAG_ID, run_id, 'model-history')}")
            frame = wait.until(
                lambda d: d.find_element(By.CSS_SELECTOR, "iframe[title='Model history']")
            )
            driver.switch_to.frame(frame)
            wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "tr.version")) == 2)
            driver.switch_to.default_content()
            assert driver.save_screenshot(str(screenshot.with_name("model-history.png")))
            # The Model files tab, as the Model directory link opens it: within Airflow's UI
            driver.get(f"{url}/{files_view_url(DAG_ID, run_id)}")
            frame = wait.until(
                lambda d: d.find_element(By.CSS_SELECTOR, "iframe[title='Model files']")
            )
            driver.switch_to.frame(frame)
            listed = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "tr.file"))
            assert "blessing/BLESSED" in [row.text.split()[0] for row in listed]
            driver.switch_to.default_content()
            assert driver.save_screenshot(str(screenshot.with_name("model-files.png")))
        finally:
            driver.quit()
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for name in ("model-files.png", "model-history.png"):
        assert screenshot.with_name(name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
