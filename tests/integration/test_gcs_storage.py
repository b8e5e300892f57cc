"""gs:// on the orchestration side, against a real GCS emulator (fake-gcs-server) this suite starts.

Covers the `Storage` contract on `GcsStorage`, the preflight, the gate and deploy on gs://
paths. Cloud Storage's IAM is the one thing the emulator lacks: the 403 cases go through
`IamDenyingProxy`, which forwards to the emulator and refuses the requests a rule names.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from gcs_emulator import EMULATOR_ENV, GcsEmulator, IamDenyingProxy

from tfdist.deploy import DEPLOYMENT_JSON, SAVED_MODEL_PB, Claim, DeployStatus, deploy
from tfdist.gate import (
    BLESSED,
    NOT_BLESSED,
    GateSpec,
    decide,
    read_blessing,
    read_final_eval,
    write_blessing,
)
from tfdist.preflight import PROBE_PREFIX, PreflightError, check_writable, credential_identity
from tfdist.records import EvalRecord, eval_record_name
from tfdist.storage import GcsStorage, LocalStorage, storage_for

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
NOW = 1_700_000_000.0
DAY = 86_400.0


@pytest.fixture
def storage(gcs: GcsEmulator) -> GcsStorage:
    found = storage_for("gs://any-bucket/path")
    assert isinstance(found, GcsStorage)
    return found


@pytest.fixture
def requests_seen(storage: GcsStorage) -> Iterator[list[str]]:
    """`METHOD url` of every request the shared client makes during the test."""
    seen: list[str] = []

    def record(response: Any, *args: Any, **kwargs: Any) -> None:
        seen.append(f"{response.request.method} {response.request.url}")

    hooks = storage.client._http.hooks["response"]
    hooks.append(record)
    yield seen
    hooks.remove(record)


# -- the Storage contract ------------------------------------------------------------------------


def test_storage_for_gs_path_is_a_gcs_storage_with_one_shared_client(gcs: GcsEmulator) -> None:
    first, second = storage_for("gs://a/x"), storage_for("gs://b/y")
    assert isinstance(first, GcsStorage) and isinstance(second, GcsStorage)
    assert first.client is second.client
    with pytest.raises(ValueError, match="no bucket name"):
        storage_for("gs:///models")


def test_write_read_exists_delete(storage: GcsStorage, bucket: str) -> None:
    path = f"gs://{bucket}/run/blessing/blessing.json"
    assert storage.read_text(path) is None
    assert not storage.exists(path)

    storage.write_text(path, '{"blessed": true} ü')
    storage.write_text(path, '{"blessed": false} ü')  # replaces

    assert storage.read_text(path) == '{"blessed": false} ü'
    assert storage.read_bytes(path) == '{"blessed": false} ü'.encode()
    assert storage.exists(path)
    storage.delete(path)
    storage.delete(path)  # missing: nothing happens
    assert not storage.exists(path)
    assert storage.read_text(path) is None
    assert storage.read_bytes(path) is None


def test_list_is_recursive_sorted_and_a_prefix_is_a_directory(
    storage: GcsStorage, gcs: GcsEmulator, bucket: str
) -> None:
    for name in ["model1/b.txt", "model1/a/c.txt", "model10/d.txt", "model1x", "other/e.txt"]:
        storage.write_text(f"gs://{bucket}/{name}", name)
    gcs.client().bucket(bucket).blob("model1/empty-folder/").upload_from_string(b"")

    expected = [f"gs://{bucket}/model1/a/c.txt", f"gs://{bucket}/model1/b.txt"]
    assert storage.list(f"gs://{bucket}/model1") == expected
    assert storage.list(f"gs://{bucket}/model1/") == expected
    assert storage.list(f"gs://{bucket}/model") == []
    assert storage.list(f"gs://{bucket}/missing") == []
    assert len(storage.list(f"gs://{bucket}")) == 5


def test_copy_is_server_side(
    storage: GcsStorage, gcs: GcsEmulator, bucket: str, requests_seen: list[str]
) -> None:
    other = gcs.new_bucket()
    data = bytes(range(256)) * 4000
    gcs.client().bucket(bucket).blob("export/variables/variables.data").upload_from_string(data)
    requests_seen.clear()

    storage.copy(f"gs://{bucket}/export/variables/variables.data", f"gs://{other}/v/1/data")
    storage.copy(f"gs://{bucket}/export/variables/variables.data", f"gs://{bucket}/v/1/data")

    assert gcs.objects(other) == {"v/1/data": data}
    assert gcs.objects(bucket, "v/") == {"1/data": data}
    object_requests = [r for r in requests_seen if "/o/" in r]  # not bucket metadata
    assert len(object_requests) == 2
    assert all("/rewriteTo/" in request for request in object_requests), object_requests
    with pytest.raises(FileNotFoundError, match="no such source object"):
        storage.copy(f"gs://{bucket}/missing", f"gs://{bucket}/v/2/data")


def test_create_exclusive_only_once(storage: GcsStorage, gcs: GcsEmulator, bucket: str) -> None:
    path = f"gs://{bucket}/serving/digits/.claims/1"
    assert storage.create_exclusive(path, "first")
    assert not storage.create_exclusive(path, "second")
    assert storage.read_text(path) == "first"


def test_racing_create_exclusive_has_one_winner(storage: GcsStorage, bucket: str) -> None:
    path = f"gs://{bucket}/serving/digits/.claims/1"
    barrier = threading.Barrier(8)
    wins: list[str] = []

    def claim(name: str) -> None:
        barrier.wait()
        if storage.create_exclusive(path, name):
            wins.append(name)

    threads = [threading.Thread(target=claim, args=(f"run-{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(wins) == 1
    assert storage.read_text(path) == wins[0]


def test_a_missing_bucket_is_named(storage: GcsStorage, gcs: GcsEmulator) -> None:
    with pytest.raises(FileNotFoundError, match="bucket no-such-bucket-x does not exist"):
        storage.write_text("gs://no-such-bucket-x/a.json", "{}")
    with pytest.raises(FileNotFoundError, match="bucket no-such-bucket-x does not exist"):
        storage.list("gs://no-such-bucket-x/models")
    with pytest.raises(FileNotFoundError, match="bucket no-such-bucket-x does not exist"):
        storage.create_exclusive("gs://no-such-bucket-x/.claims/1", "x")
    assert storage.read_text("gs://no-such-bucket-x/a.json") is None


def test_google_is_imported_only_for_gs_paths() -> None:
    code = (
        "import sys\n"
        "import tfdist.storage, tfdist.preflight, tfdist.gate, tfdist.deploy\n"
        "print(sorted(m for m in sys.modules if m == 'google' or m.startswith('google.')))\n"
        "sys.modules['google.cloud.storage'] = None  # as if the gcs extra were missing\n"
        "try:\n"
        "    tfdist.storage.storage_for('gs://bucket/serving')\n"
        "except ImportError as error:\n"
        "    print(error)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    loaded, message = result.stdout.strip().splitlines()
    assert loaded == "[]"
    assert "pip install 'tfdist[gcs]'" in message


# -- preflight -----------------------------------------------------------------------------------


def test_preflight_passes_for_an_existing_bucket_and_leaves_nothing(
    storage: GcsStorage, gcs: GcsEmulator, bucket: str
) -> None:
    check_writable(f"gs://{bucket}/models/nightly/run-1")
    check_writable(f"gs://{bucket}")
    assert gcs.objects(bucket) == {}


def test_preflight_fails_fast_for_a_missing_bucket(gcs: GcsEmulator) -> None:
    started = time.monotonic()
    with pytest.raises(PreflightError) as error:
        check_writable("gs://tfdist-no-such-bucket/models/nightly/run-1")
    assert time.monotonic() - started < 5
    assert str(error.value) == (
        "bucket tfdist-no-such-bucket does not exist; create it or fix model_dir "
        "(gs://tfdist-no-such-bucket/models/nightly/run-1)"
    )


def test_preflight_names_the_credential_and_the_missing_permission(
    gcs: GcsEmulator, bucket: str
) -> None:
    with IamDenyingProxy(gcs.url, deny=lambda method, path: method == "POST") as proxy:
        client = gcs.client(endpoint=proxy.url)
        with pytest.raises(PreflightError) as error:
            check_writable(f"gs://{bucket}/models", GcsStorage(client))
    message = str(error.value)
    assert message.startswith(
        f"anonymous credentials may not create objects in gs://{bucket} (model_dir "
        f"gs://{bucket}/models): missing permission storage.objects.create; grant it "
        "roles/storage.objectAdmin on the bucket"
    )
    assert proxy.denied and gcs.objects(bucket) == {}


def test_preflight_reports_a_probe_it_could_not_delete(gcs: GcsEmulator, bucket: str) -> None:
    deny_delete = IamDenyingProxy(gcs.url, deny=lambda method, path: method == "DELETE")
    with deny_delete as proxy:
        client = gcs.client(endpoint=proxy.url)
        with pytest.raises(PreflightError, match=r"missing permission storage\.objects\.delete"):
            check_writable(f"gs://{bucket}/models", GcsStorage(client))
    left = list(gcs.objects(bucket, "models/"))
    assert len(left) == 1 and left[0].startswith(PROBE_PREFIX)


def test_preflight_without_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(EMULATOR_ENV, raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing-key.json"))
    with pytest.raises(PreflightError, match="no Application Default Credentials found"):
        check_writable("gs://ml-models/tfdist/models")


def test_credential_identity() -> None:
    from google.auth import compute_engine
    from google.auth.credentials import AnonymousCredentials

    email = "airflow-worker@project.iam.gserviceaccount.com"
    workload = compute_engine.Credentials(service_account_email=email)
    assert credential_identity(SimpleNamespace(_credentials=workload)) == f"service account {email}"
    anonymous = SimpleNamespace(_credentials=AnonymousCredentials())
    assert credential_identity(anonymous) == "anonymous credentials"


def test_preflight_local_paths(tmp_path: Path) -> None:
    model_dir = tmp_path / "models" / "nightly" / "run-1"
    check_writable(str(model_dir))
    assert not (tmp_path / "models").exists()  # what the probe needed is removed again
    model_dir.mkdir(parents=True)
    check_writable(str(model_dir))
    assert list(model_dir.iterdir()) == []

    (tmp_path / "a-file").write_text("")
    with pytest.raises(PreflightError, match=r"cannot create model_dir .*/a-file/run-1 as user"):
        check_writable(str(tmp_path / "a-file" / "run-1"))
    with pytest.raises(PreflightError, match="unsupported scheme 's3'"):
        check_writable("s3://bucket/models")


def test_tfdist_run_stops_before_launching_for_a_missing_bucket(
    gcs: GcsEmulator, tmp_path: Path
) -> None:
    run_root = tmp_path / "runs"
    spec = REPO / "components" / "tfdist" / "examples" / "digits.yaml"
    model_dir = "model_dir=gs://tfdist-missing-bucket/models/digits"
    command = [sys.executable, "-m", "tfdist.cli", "run", str(spec), "--set", model_dir]
    result = subprocess.run(
        [*command, "--run-root", str(run_root)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(
        "tfdist: bucket tfdist-missing-bucket does not exist; create it or fix model_dir"
    )
    assert not run_root.exists()


# -- gate and deploy on gs:// --------------------------------------------------------------------


def test_gate_reads_eval_records_and_writes_the_blessing(
    storage: GcsStorage, gcs: GcsEmulator, bucket: str
) -> None:
    model_dir = f"gs://{bucket}/models/nightly/run-1"
    for step, accuracy in [(200, 0.80), (400, 0.95)]:
        record = EvalRecord(
            global_step=step,
            metrics={"accuracy": accuracy, "loss": 0.2},
            checkpoint_path=f"{model_dir}/ckpt-{step}",
            timestamp=NOW,
            eval_steps=20,
        )
        name = eval_record_name(f"{model_dir}/eval", step).removeprefix(f"gs://{bucket}/")
        gcs.client().bucket(bucket).blob(name).upload_from_string(record.model_dump_json())

    final = read_final_eval(storage, model_dir, max_steps=400)
    assert final.global_step == 400 and final.metrics["accuracy"] == 0.95

    rejected = decide(final, GateSpec.from_params({"accuracy": {"min": 0.99}}), None, NOW)
    write_blessing(storage, model_dir, rejected)
    assert set(gcs.objects(bucket, "models/nightly/run-1/blessing/")) == {
        "blessing.json",
        NOT_BLESSED,
    }
    blessed = decide(final, GateSpec.from_params({"accuracy": {"min": 0.9}}), None, NOW)
    write_blessing(storage, model_dir, blessed)
    assert gcs.objects(bucket, "models/nightly/run-1/blessing/")[BLESSED] == b""
    assert NOT_BLESSED not in gcs.objects(bucket, "models/nightly/run-1/blessing/")
    assert read_blessing(storage, model_dir) == blessed
    assert blessed.model_dir == model_dir


class RecordingGcs(GcsStorage):
    """Records when each write to the serving directory started and ended."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def _record(self, event: str, path: str) -> None:
        with self._lock:
            self.events.append((event, path.rsplit("/digits/", 1)[-1]))

    def copy(self, src: str, dst: str) -> None:
        self._record("start", dst)
        super().copy(src, dst)
        self._record("end", dst)

    def write_text(self, path: str, text: str) -> None:
        self._record("start", path)
        super().write_text(path, text)
        self._record("end", path)


def saved_model_files() -> dict[str, bytes]:
    """A SavedModel's layout with 50 files: graph, fingerprint, variables and assets."""
    files = {
        SAVED_MODEL_PB: b"graph" * 1000,
        "fingerprint.pb": b"fingerprint",
        "variables/variables.index": b"index",
        "variables/variables.data-00000-of-00001": bytes(range(256)) * 400,
    }
    files.update({f"assets/vocab-{i:02d}.txt": f"token-{i}\n".encode() * 100 for i in range(46)})
    return files


def upload(gcs: GcsEmulator, bucket: str, prefix: str, files: dict[str, bytes]) -> None:
    target = gcs.client().bucket(bucket)
    for name, data in files.items():
        target.blob(f"{prefix}/{name}").upload_from_string(data)


def blessing_for(model_dir: str) -> Any:
    record = EvalRecord(
        global_step=400,
        metrics={"accuracy": 0.95, "loss": 0.2},
        checkpoint_path=f"{model_dir}/ckpt-400",
        timestamp=NOW,
        eval_steps=20,
    )
    return decide(record, GateSpec.from_params({"accuracy": {"min": 0.9}}), None, NOW)


def test_deploy_on_gcs(
    gcs: GcsEmulator, bucket: str, requests_seen: list[str], storage: GcsStorage
) -> None:
    files = saved_model_files()
    export_dir = f"gs://{bucket}/models/run-1/export/1"
    serving = f"gs://{bucket}/serving"
    upload(gcs, bucket, "models/run-1/export/1", files)
    recording = RecordingGcs()
    requests_seen.clear()

    def run(run_id: str, storage: GcsStorage, trained_on: float) -> Any:
        return deploy(
            storage,
            export_dir=export_dir,
            serving_base=serving,
            model_name="digits",
            run_id=run_id,
            blessing=blessing_for(f"gs://{bucket}/models/{run_id}"),
            now=trained_on,
            trained_on=trained_on,
        )

    first = run("run-1", recording, NOW)

    assert first.status is DeployStatus.DEPLOYED
    assert first.deployment is not None and first.deployment.version == 1
    assert first.deployment.path == f"{serving}/digits/1"
    deployed = gcs.objects(bucket, "serving/digits/1/")
    assert {name: deployed[name] for name in files} == files
    assert set(deployed) == {*files, DEPLOYMENT_JSON}
    # saved_model.pb is started only after every other write ended
    events = recording.events
    last_start = events.index(("start", f"1/{SAVED_MODEL_PB}"))
    assert events[last_start:] == [("start", f"1/{SAVED_MODEL_PB}"), ("end", f"1/{SAVED_MODEL_PB}")]
    assert sum(event == "end" for event, _ in events[:last_start]) == len(files)
    assert events[last_start - 1] == ("end", f"1/{DEPLOYMENT_JSON}")
    # no byte of the model passed through this process: copies are rewrites
    export_reads = [r for r in requests_seen if "export" in r and "rewriteTo" not in r]
    assert [r for r in export_reads if "alt=media" in r] == []
    assert sum("/rewriteTo/" in r for r in requests_seen) == len(files)
    uploads = [r for r in requests_seen if "/upload/" in r]
    assert len(uploads) == 2  # the claim and tfdist-deployment.json

    generations = {b.name: b.generation for b in gcs.client().list_blobs(bucket, prefix="serving/")}
    again = run("run-1", storage, NOW + 60)
    assert again.status is DeployStatus.ALREADY_DEPLOYED
    second = run("run-2", storage, NOW + DAY)
    assert second.deployment is not None and second.deployment.version == 2
    assert set(gcs.objects(bucket, "serving/digits/2/")) == {*files, DEPLOYMENT_JSON}

    # a version claimed by someone else is skipped, never overwritten
    other = Claim(run_id="run-other", claimed_at=NOW).model_dump_json()
    assert storage.create_exclusive(f"{serving}/digits/.claims/3", other)
    third = run("run-3", storage, NOW + 2 * DAY)
    assert third.deployment is not None and third.deployment.version == 4
    assert gcs.objects(bucket, "serving/digits/3/") == {}
    after = {b.name: b.generation for b in gcs.client().list_blobs(bucket, prefix="serving/")}
    assert {name: after[name] for name in generations} == generations

    backfill = run("backfill", storage, NOW - DAY)
    assert backfill.status is DeployStatus.SKIPPED


def test_a_local_export_deploys_to_a_bucket(gcs: GcsEmulator, bucket: str, tmp_path: Path) -> None:
    files = saved_model_files()
    export_dir = tmp_path / "model" / "export" / "400"
    for name, data in files.items():
        (export_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (export_dir / name).write_bytes(data)
    result = deploy(
        GcsStorage(),
        export_dir=str(export_dir),
        serving_base=f"gs://{bucket}/serving",
        model_name="digits",
        run_id="run-1",
        blessing=blessing_for(str(tmp_path / "model")),
        now=NOW,
        export_storage=LocalStorage(),
    )
    assert result.status is DeployStatus.DEPLOYED
    deployed = gcs.objects(bucket, "serving/digits/1/")
    assert {name: deployed[name] for name in files} == files
    assert set(deployed) == {*files, DEPLOYMENT_JSON}


def test_an_export_in_a_bucket_deploys_to_a_local_serving_base(
    gcs: GcsEmulator, bucket: str, tmp_path: Path
) -> None:
    files = saved_model_files()
    upload(gcs, bucket, "model/export/400", files)
    serving = tmp_path / "serving"
    result = deploy(
        LocalStorage(),
        export_dir=f"gs://{bucket}/model/export/400",
        serving_base=str(serving),
        model_name="digits",
        run_id="run-1",
        blessing=blessing_for(f"gs://{bucket}/model"),
        now=NOW,
        export_storage=GcsStorage(),
    )
    assert result.status is DeployStatus.DEPLOYED
    version = serving / "digits" / "1"
    deployed = {
        p.relative_to(version).as_posix(): p.read_bytes() for p in version.rglob("*") if p.is_file()
    }
    assert {name: deployed[name] for name in files} == files
    assert set(deployed) == {*files, DEPLOYMENT_JSON}  # no partial or temporary files


# -- the GCS variant of the nightly DAG ----------------------------------------------------------


def test_gcs_dag_imports_light_renders_its_paths_and_deploys_through_an_alias() -> None:
    dag_file = REPO / "dags" / "nightly_retrain_gcs.py"
    code = (
        "import importlib.util, json, sys\n"
        f"spec = importlib.util.spec_from_file_location('dag', {str(dag_file)!r})\n"
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & "
        "{'tensorflow', 'keras', 'kubernetes', 'google'})\n"
        "dag = module.dag\n"
        "env = dag.get_template_env()\n"
        "launch = dag.get_task('train_and_evaluate.launch')\n"
        "deploy = dag.get_task('deploy')\n"
        "gate = dag.get_task('gate')\n"
        "class Value:\n"
        "    def __init__(self, values): self.values = values\n"
        "    def get(self, key, default=None): return self.values.get(key, default)\n"
        "def render(text, bucket, variable):\n"
        "    var = {'value': Value({'tfdist_bucket': variable} if variable else {})}\n"
        "    return env.from_string(text).render(params={'bucket': bucket}, var=var)\n"
        "assets = [(type(a).__name__, a.name) for t in dag.tasks for a in t.outlets]\n"
        "print(json.dumps({'heavy': heavy, 'assets': assets, 'paths': [\n"
        "    [render(t, b, v) for t in (launch.model_dir_base, deploy.serving_base,\n"
        "                                gate.serving_base)]\n"
        "    for b, v in [(None, 'from-variable'), ('from-param', 'from-variable')]]}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["heavy"] == []
    # The bucket is chosen per run: the deploy declares an alias, each event names the bucket.
    assert report["assets"] == [["AssetAlias", "tfdist-serving-digits"]]
    assert report["paths"] == [
        [
            "gs://from-variable/tfdist/models",
            "gs://from-variable/tfdist/serving",
            "gs://from-variable/tfdist/serving",
        ],
        [
            "gs://from-param/tfdist/models",
            "gs://from-param/tfdist/serving",
            "gs://from-param/tfdist/serving",
        ],
    ]
