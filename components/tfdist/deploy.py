"""Deploy a blessed SavedModel as a new version under `<serving_base>/<model_name>/<version>/`.

The layout is the one TF Serving watches: integer version directories (other names are
ignored), the highest one served. A deploy

1. does nothing unless the gate blessed the model, and returns the earlier deployment when this
   run was deployed before (one run, one version);
2. skips when the newest deployment was trained on newer data than this run (a backfilled old
   date never replaces it);
3. claims the next version atomically (`.claims/<version>`, created only if absent; a
   concurrent deploy that lost the race takes the next number), so no version is overwritten;
4. copies every file except `saved_model.pb` (up to `COPY_THREADS` at a time: on GCS each copy
   is a server-side request; between a local disk and GCS, an upload or a download), writes
   `tfdist-deployment.json` once they all completed, and copies `saved_model.pb` last: TF
   Serving loads a version once that file is there.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from tfdist.spec import Frozen
from tfdist.storage import Storage, copier, join

if TYPE_CHECKING:
    from tfdist.gate import Baseline, Blessing

SAVED_MODEL_PB = "saved_model.pb"
DEPLOYMENT_JSON = "tfdist-deployment.json"
CLAIMS_DIR = ".claims"
MAX_CLAIM_ATTEMPTS = 100
COPY_THREADS = 16
VERSION = re.compile(r"[0-9]+")
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


class DeployError(ValueError):
    """A deploy that cannot start: bad model name or an export that is not a SavedModel."""


class Deployment(Frozen):
    """One deployed version, stored as `tfdist-deployment.json` inside the version directory.

    Timestamps are seconds since the epoch; `trained_on` is the end of the data the model was
    trained on (Airflow's `data_interval_end`), None for runs without one.
    """

    model_name: str
    version: int
    path: str
    run_id: str
    model_dir: str
    metrics: dict[str, float]
    global_step: int
    trained_on: float | None = None
    deployed_at: float

    def baseline(self) -> Baseline:
        """This deployment as the gate's baseline for the next candidate."""
        from tfdist.gate import Baseline

        return Baseline(
            version=self.version,
            metrics=self.metrics,
            model_dir=self.model_dir,
            run_id=self.run_id,
        )


class Claim(Frozen):
    """The content of `.claims/<version>`: which run took the version number."""

    run_id: str
    claimed_at: float


class DeployStatus(StrEnum):
    DEPLOYED = "deployed"
    ALREADY_DEPLOYED = "already_deployed"
    SKIPPED = "skipped"


class DeployResult(Frozen):
    """What `deploy` did and why; `deployment` is the version serving this run, if any."""

    status: DeployStatus
    reason: str
    deployment: Deployment | None = None

    @property
    def skipped(self) -> bool:
        return self.status is DeployStatus.SKIPPED


@dataclass(frozen=True)
class Layout:
    """What a model's serving directory holds: files per version, and claimed versions."""

    files: dict[int, frozenset[str]]  # version -> paths relative to its directory
    claims: frozenset[int]

    @staticmethod
    def of(root: str, paths: list[str]) -> Layout:
        """Read from the full paths below `root` (as `Storage.list` returns them)."""
        files: dict[int, set[str]] = {}
        claims: set[int] = set()
        for path in paths:
            first, _, rest = path.removeprefix(f"{root.rstrip('/')}/").partition("/")
            if VERSION.fullmatch(first) and rest:
                files.setdefault(int(first), set()).add(rest)
            elif first == CLAIMS_DIR and VERSION.fullmatch(rest):
                claims.add(int(rest))
        return Layout({v: frozenset(names) for v, names in files.items()}, frozenset(claims))

    def next_version(self) -> int:
        """One above every version seen, directory or claim."""
        return max({0, *self.files, *self.claims}) + 1

    def complete_versions(self) -> list[int]:
        """Versions with both `saved_model.pb` and the deployment record, newest first."""
        wanted = {SAVED_MODEL_PB, DEPLOYMENT_JSON}
        return sorted((v for v, names in self.files.items() if wanted <= names), reverse=True)


def model_root(serving_base: str, model_name: str) -> str:
    """`<serving_base>/<model_name>`; raises `DeployError` for a name that is not one plain
    directory name (such as `../x`), so no path leaves the serving base."""
    if not MODEL_NAME.fullmatch(model_name):
        raise DeployError(
            f"model_name {model_name!r}: use letters, digits, `_`, `-` or `.`; it names the "
            "serving directory"
        )
    return join(serving_base, model_name)


def backfill_skip_reason(latest: Deployment | None, trained_on: float | None) -> str | None:
    """Why a run trained on data up to `trained_on` must not replace `latest`, if it must not."""
    if latest is None or latest.trained_on is None or trained_on is None:
        return None
    if latest.trained_on <= trained_on:
        return None
    return (
        f"version {latest.version} (run {latest.run_id}) was trained on newer data "
        f"(up to {latest.trained_on}) than this run (up to {trained_on}); a backfilled "
        "run never replaces a newer model"
    )


def _read_deployment(storage: Storage, root: str, version: int) -> Deployment | None:
    text = storage.read_text(join(root, str(version), DEPLOYMENT_JSON))
    return None if text is None else Deployment.model_validate_json(text)


def _latest(storage: Storage, root: str, layout: Layout) -> Deployment | None:
    for version in layout.complete_versions():
        deployment = _read_deployment(storage, root, version)
        if deployment is not None:
            return deployment
    return None


def latest_deployment(storage: Storage, serving_base: str, model_name: str) -> Deployment | None:
    """The highest complete version (the one TF Serving serves), or None."""
    root = model_root(serving_base, model_name)
    return _latest(storage, root, Layout.of(root, storage.list(root)))


def deployments(storage: Storage, serving_base: str, model_name: str) -> list[Deployment]:
    """Every complete version of the model, newest first."""
    root = model_root(serving_base, model_name)
    found = (
        _read_deployment(storage, root, version)
        for version in Layout.of(root, storage.list(root)).complete_versions()
    )
    return [deployment for deployment in found if deployment is not None]


def _claimed_by(storage: Storage, root: str, layout: Layout, run_id: str) -> int | None:
    """The version this run claimed on an earlier attempt, if any."""
    for version in sorted(layout.claims, reverse=True):
        text = storage.read_text(join(root, CLAIMS_DIR, str(version)))
        if text and Claim.model_validate_json(text).run_id == run_id:
            return version
    return None


def _claim(storage: Storage, root: str, layout: Layout, run_id: str, now: float) -> int:
    claim = Claim(run_id=run_id, claimed_at=now).model_dump_json()
    version = layout.next_version()
    for _ in range(MAX_CLAIM_ATTEMPTS):
        if storage.create_exclusive(join(root, CLAIMS_DIR, str(version)), claim):
            return version
        version += 1
    raise RuntimeError(f"{root}: could not claim a version after {MAX_CLAIM_ATTEMPTS} tries")


def _export_files(storage: Storage, export_dir: str) -> list[str]:
    prefix = f"{export_dir.rstrip('/')}/"
    files = [path.removeprefix(prefix) for path in storage.list(export_dir)]
    if SAVED_MODEL_PB not in files:
        raise DeployError(f"{export_dir} is not a SavedModel: it has no {SAVED_MODEL_PB}")
    return files


def copy_all(
    copy: Callable[[str, str], None], pairs: Sequence[tuple[str, str]], threads: int
) -> None:
    """`copy(src, dst)` for each pair, `threads` at a time; returns once all completed.

    The first failure is raised after the copies already running have ended; the rest are
    not started.
    """
    if not pairs:
        return
    with ThreadPoolExecutor(max_workers=max(1, min(threads, len(pairs)))) as pool:
        futures = [pool.submit(copy, src, dst) for src, dst in pairs]
        done, pending = wait(futures, return_when=FIRST_EXCEPTION)
        for future in pending:
            future.cancel()
        for future in done:
            future.result()


def deploy(
    storage: Storage,
    *,
    export_dir: str,
    serving_base: str,
    model_name: str,
    run_id: str,
    blessing: Blessing,
    now: float,
    trained_on: float | None = None,
    copy_threads: int = COPY_THREADS,
    export_storage: Storage | None = None,
) -> DeployResult:
    """Publish `export_dir` as the next version of `model_name`; see the module docstring.

    :param storage: where `serving_base` is.
    :param export_storage: where `export_dir` is, when not in `storage` (a local export
        deployed to gs://, or the reverse).
    """
    source = export_storage or storage
    copy = copier(source, storage)
    root = model_root(serving_base, model_name)
    if not blessing.blessed:
        reasons = "; ".join(blessing.reasons) or "no reason recorded"
        return DeployResult(status=DeployStatus.SKIPPED, reason=f"not blessed: {reasons}")
    layout = Layout.of(root, storage.list(root))
    claimed = _claimed_by(storage, root, layout, run_id)
    if claimed is not None and claimed in layout.complete_versions():
        earlier = _read_deployment(storage, root, claimed)
        reason = f"run {run_id} is already deployed as version {claimed}"
        return DeployResult(status=DeployStatus.ALREADY_DEPLOYED, reason=reason, deployment=earlier)
    skip = backfill_skip_reason(_latest(storage, root, layout), trained_on)
    if skip is not None:
        return DeployResult(status=DeployStatus.SKIPPED, reason=skip)
    files = _export_files(source, export_dir)
    version = claimed if claimed is not None else _claim(storage, root, layout, run_id, now)
    target = join(root, str(version))
    pairs = [
        (join(export_dir, name), join(target, name)) for name in files if name != SAVED_MODEL_PB
    ]
    copy_all(copy, pairs, copy_threads)
    deployment = Deployment(
        model_name=model_name,
        version=version,
        path=target,
        run_id=run_id,
        model_dir=blessing.model_dir,
        metrics=blessing.metrics,
        global_step=blessing.global_step,
        trained_on=trained_on,
        deployed_at=now,
    )
    storage.write_text(join(target, DEPLOYMENT_JSON), deployment.model_dump_json(indent=1))
    copy(join(export_dir, SAVED_MODEL_PB), join(target, SAVED_MODEL_PB))
    return DeployResult(
        status=DeployStatus.DEPLOYED,
        reason=f"deployed run {run_id} as version {version} of {model_name}",
        deployment=deployment,
    )
