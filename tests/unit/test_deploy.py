"""Deploying to a TF Serving version directory, on the local filesystem under tmp_path."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tfdist.deploy import (
    DEPLOYMENT_JSON,
    Claim,
    DeployError,
    Deployment,
    DeployResult,
    DeployStatus,
    Layout,
    backfill_skip_reason,
    deploy,
    latest_deployment,
)
from tfdist.gate import Baseline, Blessing
from tfdist.storage import LocalStorage, Storage

NOW = 1_700_000_000.0
DAY = 86_400.0
EXPORT_FILES = {
    "saved_model.pb": b"graph",
    "fingerprint.pb": b"fingerprint",
    "variables/variables.index": b"index",
    "variables/variables.data-00000-of-00001": b"weights",
}


class RecordingStorage(LocalStorage):
    """Local storage that remembers every write, in order, as (operation, path)."""

    def __init__(self) -> None:
        self.writes: list[tuple[str, str]] = []

    def write_text(self, path: str, text: str) -> None:
        self.writes.append(("write_text", path))
        super().write_text(path, text)

    def copy(self, src: str, dst: str) -> None:
        self.writes.append(("copy", dst))
        super().copy(src, dst)

    def create_exclusive(self, path: str, text: str) -> bool:
        self.writes.append(("create_exclusive", path))
        return super().create_exclusive(path, text)


class ScanTogether(LocalStorage):
    """Holds every deployer after its scan of the model directory until all have scanned."""

    def __init__(self, root: str, parties: int) -> None:
        self.root, self.barrier = root, threading.Barrier(parties, timeout=10)

    def list(self, prefix: str) -> list[str]:
        found = super().list(prefix)
        if prefix == self.root:
            self.barrier.wait()
        return found


def blessing(model_dir: str = "/models/run", blessed: bool = True) -> Blessing:
    return Blessing(
        blessed=blessed,
        metrics={"accuracy": 0.95, "loss": 0.2},
        global_step=400,
        checkpoint_path=f"{model_dir}/ckpt-400",
        model_dir=model_dir,
        thresholds={},
        baseline=None,
        reasons=() if blessed else ("accuracy 0.5 is below min 0.9",),
        decided_at=NOW,
    )


@pytest.fixture
def export_dir(tmp_path: Path) -> str:
    root = tmp_path / "export"
    for name, data in EXPORT_FILES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    (root / "assets").mkdir()
    return str(root)


@pytest.fixture
def serving(tmp_path: Path) -> str:
    return str(tmp_path / "serving")


def run_deploy(
    storage: Storage,
    export_dir: str,
    serving: str,
    run_id: str,
    trained_on: float | None = None,
    blessed: bool = True,
    now: float = NOW,
) -> DeployResult:
    return deploy(
        storage,
        export_dir=export_dir,
        serving_base=serving,
        model_name="digits",
        run_id=run_id,
        blessing=blessing(f"/models/{run_id}", blessed),
        now=now,
        trained_on=trained_on,
    )


def files_under(path: str) -> dict[str, bytes]:
    root = Path(path)
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_first_deploy_is_version_1_and_saved_model_pb_comes_last(
    export_dir: str, serving: str
) -> None:
    storage = RecordingStorage()
    result = run_deploy(storage, export_dir, serving, "run-1", trained_on=NOW - DAY)

    version_dir = f"{serving}/digits/1"
    assert result.status is DeployStatus.DEPLOYED
    assert result.deployment is not None
    assert result.deployment.model_dump() == {
        "model_name": "digits",
        "version": 1,
        "path": version_dir,
        "run_id": "run-1",
        "model_dir": "/models/run-1",
        "metrics": {"accuracy": 0.95, "loss": 0.2},
        "global_step": 400,
        "trained_on": NOW - DAY,
        "deployed_at": NOW,
    }
    deployed = files_under(version_dir)
    assert {name: deployed[name] for name in EXPORT_FILES} == EXPORT_FILES
    assert set(deployed) == {*EXPORT_FILES, DEPLOYMENT_JSON}
    assert storage.writes[0] == ("create_exclusive", f"{serving}/digits/.claims/1")
    assert storage.writes[-2] == ("write_text", f"{version_dir}/{DEPLOYMENT_JSON}")
    assert storage.writes[-1] == ("copy", f"{version_dir}/saved_model.pb")
    assert len(storage.writes) == 1 + len(EXPORT_FILES) + 1


def test_versions_count_up_and_latest_is_the_baseline(export_dir: str, serving: str) -> None:
    storage = LocalStorage()
    assert latest_deployment(storage, serving, "digits") is None
    first = run_deploy(storage, export_dir, serving, "run-1", now=NOW)
    second = run_deploy(storage, export_dir, serving, "run-2", now=NOW + DAY)

    assert first.deployment is not None and first.deployment.version == 1
    assert second.deployment is not None and second.deployment.version == 2
    latest = latest_deployment(storage, serving, "digits")
    assert latest == second.deployment
    assert latest.baseline() == Baseline(
        version=2,
        metrics={"accuracy": 0.95, "loss": 0.2},
        model_dir="/models/run-2",
        run_id="run-2",
    )


def test_deploying_a_run_again_returns_its_version(export_dir: str, serving: str) -> None:
    storage = LocalStorage()
    first = run_deploy(storage, export_dir, serving, "run-1")
    before = files_under(serving)
    again = run_deploy(storage, export_dir, serving, "run-1", now=NOW + 60)

    assert again.status is DeployStatus.ALREADY_DEPLOYED
    assert again.reason == "run run-1 is already deployed as version 1"
    assert again.deployment == first.deployment
    assert files_under(serving) == before


def test_a_run_that_crashed_mid_copy_finishes_its_own_version(
    export_dir: str, serving: str
) -> None:
    storage = LocalStorage()
    claim = Claim(run_id="run-1", claimed_at=NOW).model_dump_json()
    storage.write_text(f"{serving}/digits/.claims/1", claim)
    storage.write_text(f"{serving}/digits/1/variables/variables.index", "partial")

    result = run_deploy(storage, export_dir, serving, "run-1", now=NOW + 60)

    assert result.deployment is not None and result.deployment.version == 1
    assert files_under(f"{serving}/digits/1")["variables/variables.index"] == b"index"
    assert not Path(serving, "digits/2").exists()


def test_racing_deploys_claim_different_versions(export_dir: str, serving: str) -> None:
    storage = ScanTogether(f"{serving}/digits", parties=2)
    results: dict[str, DeployResult] = {}

    def deploy_run(run_id: str) -> None:
        results[run_id] = run_deploy(storage, export_dir, serving, run_id)

    threads = [threading.Thread(target=deploy_run, args=(r,)) for r in ("run-a", "run-b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    versions = {
        run_id: result.deployment.version
        for run_id, result in results.items()
        if result.deployment is not None
    }
    assert sorted(versions.values()) == [1, 2]
    for run_id, version in versions.items():
        claim = Claim.model_validate_json(Path(serving, f"digits/.claims/{version}").read_text())
        assert claim.run_id == run_id
        record = Path(serving, f"digits/{version}/{DEPLOYMENT_JSON}").read_text()
        assert Deployment.model_validate_json(record).run_id == run_id


def test_a_lost_claim_moves_to_the_next_version(export_dir: str, serving: str) -> None:
    class ClaimedJustBefore(LocalStorage):
        """Another deployer claims version 1 between our scan and our claim."""

        def create_exclusive(self, path: str, text: str) -> bool:
            if path.endswith("/.claims/1"):
                other = Claim(run_id="run-other", claimed_at=NOW).model_dump_json()
                super().create_exclusive(path, other)
            return super().create_exclusive(path, text)

    result = run_deploy(ClaimedJustBefore(), export_dir, serving, "run-1")

    assert result.deployment is not None and result.deployment.version == 2
    assert not Path(serving, "digits/1").exists()


def test_existing_versions_and_claims_are_never_reused(export_dir: str, serving: str) -> None:
    Path(serving, "digits/5/variables").mkdir(parents=True)
    Path(serving, "digits/5/saved_model.pb").write_bytes(b"manual")
    Path(serving, "digits/latest").mkdir()  # TF Serving ignores non-integer names; so do we
    Path(serving, "digits/.claims").mkdir()
    Path(serving, "digits/.claims/7").write_text("")  # a deploy that died after claiming

    result = run_deploy(LocalStorage(), export_dir, serving, "run-1")

    assert result.deployment is not None and result.deployment.version == 8
    assert files_under(f"{serving}/digits/5") == {"saved_model.pb": b"manual"}


def test_backfilled_old_date_does_not_replace_newer_model(export_dir: str, serving: str) -> None:
    storage = LocalStorage()
    run_deploy(storage, export_dir, serving, "nightly-05-03", trained_on=NOW + 2 * DAY)
    result = run_deploy(storage, export_dir, serving, "backfill-05-01", trained_on=NOW)

    assert result.status is DeployStatus.SKIPPED
    assert result.deployment is None
    assert result.reason == (
        f"version 1 (run nightly-05-03) was trained on newer data (up to {NOW + 2 * DAY}) than "
        f"this run (up to {NOW}); a backfilled run never replaces a newer model"
    )
    assert sorted(p.name for p in Path(serving, "digits").iterdir()) == [".claims", "1"]


@pytest.mark.parametrize(
    ("latest_trained_on", "trained_on", "skips"),
    [
        (NOW + DAY, NOW, True),
        (NOW, NOW, False),
        (NOW, NOW + DAY, False),
        (None, NOW, False),
        (NOW, None, False),
    ],
)
def test_backfill_rule(
    latest_trained_on: float | None, trained_on: float | None, skips: bool
) -> None:
    latest = Deployment(
        model_name="digits",
        version=1,
        path="/serving/digits/1",
        run_id="run-1",
        model_dir="/models/run-1",
        metrics={"accuracy": 0.95},
        global_step=400,
        trained_on=latest_trained_on,
        deployed_at=NOW,
    )
    assert (backfill_skip_reason(latest, trained_on) is not None) == skips
    assert backfill_skip_reason(None, trained_on) is None


def test_not_blessed_is_skipped_and_writes_nothing(export_dir: str, serving: str) -> None:
    result = run_deploy(LocalStorage(), export_dir, serving, "run-1", blessed=False)

    assert result.skipped
    assert result.reason == "not blessed: accuracy 0.5 is below min 0.9"
    assert not Path(serving).exists()


def test_latest_deployment_ignores_incomplete_versions(export_dir: str, serving: str) -> None:
    storage = LocalStorage()
    first = run_deploy(storage, export_dir, serving, "run-1")
    Path(serving, "digits/2/variables").mkdir(parents=True)
    Path(serving, "digits/2/tfdist-deployment.json").write_text("{}")  # no saved_model.pb yet
    Path(serving, "digits/3").mkdir()
    Path(serving, "digits/3/saved_model.pb").write_bytes(b"manual")  # not deployed by tfdist

    assert latest_deployment(storage, serving, "digits") == first.deployment


def test_export_without_saved_model_pb(tmp_path: Path, serving: str) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DeployError, match=r"is not a SavedModel: it has no saved_model\.pb"):
        run_deploy(LocalStorage(), str(tmp_path / "empty"), serving, "run-1")
    assert not Path(serving, "digits/1").exists()


@pytest.mark.parametrize("name", ["", "a/b", "../up", ".claims"])
def test_model_name_must_be_a_directory_name(export_dir: str, serving: str, name: str) -> None:
    with pytest.raises(DeployError, match="model_name"):
        deploy(
            LocalStorage(),
            export_dir=export_dir,
            serving_base=serving,
            model_name=name,
            run_id="run-1",
            blessing=blessing(),
            now=NOW,
        )


def test_layout_reads_versions_and_claims() -> None:
    root = "/serving/digits"
    layout = Layout.of(
        root,
        [
            f"{root}/1/saved_model.pb",
            f"{root}/1/{DEPLOYMENT_JSON}",
            f"{root}/1/variables/variables.index",
            f"{root}/2/variables/variables.index",
            f"{root}/.claims/1",
            f"{root}/.claims/2",
            f"{root}/.claims/3",
            f"{root}/latest/saved_model.pb",
            f"{root}/README",
        ],
    )
    assert layout == Layout(
        files={
            1: frozenset({"saved_model.pb", DEPLOYMENT_JSON, "variables/variables.index"}),
            2: frozenset({"variables/variables.index"}),
        },
        claims=frozenset({1, 2, 3}),
    )
    assert layout.next_version() == 4
    assert layout.complete_versions() == [1]
    assert Layout.of(root, []).next_version() == 1


def test_layout_of_a_root_given_with_a_slash_and_stray_files() -> None:
    """A root written with a trailing `/` reads the same; files that are no version or claim
    (a temporary in `.claims`, a version directory's own file) are ignored."""
    paths = [
        "/serving/digits/2/saved_model.pb",
        f"/serving/digits/2/{DEPLOYMENT_JSON}",
        "/serving/digits/.claims/5",
        "/serving/digits/.claims/.5.tmp",
        "/serving/digits/7",
        "/serving/digits/3/saved_model.pb",
    ]
    layout = Layout.of("/serving/digits/", paths)
    assert layout == Layout(
        files={2: frozenset({"saved_model.pb", DEPLOYMENT_JSON}), 3: frozenset({"saved_model.pb"})},
        claims=frozenset({5}),
    )
    assert layout.complete_versions() == [2]


def test_an_export_dir_given_with_a_slash_deploys_the_same(export_dir: str, serving: str) -> None:
    result = run_deploy(LocalStorage(), f"{export_dir}/", serving, "run-1")

    assert result.deployment is not None and result.deployment.version == 1
    assert files_under(f"{serving}/digits/1").keys() >= set(files_under(export_dir))


@pytest.mark.parametrize(
    ("reasons", "said"),
    [
        (
            ("a is below min 1", "b is above max 2"),
            "not blessed: a is below min 1; b is above max 2",
        ),
        ((), "not blessed: no reason recorded"),
    ],
)
def test_a_model_not_blessed_says_every_reason(
    export_dir: str, serving: str, reasons: tuple[str, ...], said: str
) -> None:
    rejected = blessing(blessed=False).model_copy(update={"reasons": reasons})
    result = deploy(
        LocalStorage(),
        export_dir=export_dir,
        serving_base=serving,
        model_name="digits",
        run_id="run-1",
        blessing=rejected,
        now=NOW,
    )
    assert (result.skipped, result.reason) == (True, said)
