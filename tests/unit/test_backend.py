"""The backend interface's shipped fake, and backend configurations read from their dicts."""

from __future__ import annotations

import pytest

from tfdist.backend import RoleState
from tfdist.launch.local import STANDBY_ENV, LocalLauncher
from tfdist.lifecycle import Ending
from tfdist.spec import parse_spec
from tfdist.supervisor import RestartJob, RestartRole
from tfdist.testing import FakeBackend
from tfdist_airflow.backends import (
    FakeBackendConfig,
    JobSetBackend,
    LocalBackend,
    backend_from_dict,
    connect,
)

SPEC = parse_spec(
    {
        "name": "digits",
        "trainer": {"entrypoint": "tfdist.examples.digits"},
        "cluster": {"worker": 2, "ps": 1, "evaluator": 1},
        "train_spec": {"max_steps": 40},
        "model_dir": "/tmp/model",
    }
)


def test_a_fake_launch_runs_every_role_and_reads_statuses_in_one_call() -> None:
    fake = FakeBackend()
    job = fake.plan(SPEC, "dag/run/group")
    assert (job.scope, len(job.launch_id)) == ("dag/run/group", 8)
    handle = fake.launch(job)
    assert handle.roles == ("chief-0", "worker-0", "worker-1", "ps-0", "evaluator-0")
    fake.calls.clear()
    statuses = fake.statuses(handle)
    assert fake.calls == [("statuses", handle.launch_id)]
    assert {s.state for s in statuses.values()} == {RoleState.RUNNING}
    assert fake.handles("dag/run/group") == [handle] and fake.handles("other") == []


def test_a_fake_role_ends_restarts_and_logs_whole_lines() -> None:
    fake = FakeBackend()
    handle = fake.launch(fake.plan(SPEC, "s"))
    fake.write_log("worker-1", "step 1\nste")
    assert fake.read_log(handle, "worker-1") == ("step 1\n", 7)
    assert fake.read_log(handle, "worker-1", 7) == ("", 7)
    fake.exit("worker-1", 137)
    end = fake.statuses(handle)["worker-1"].end
    assert end is not None and end.ending is Ending.CRASHED
    with pytest.raises(RuntimeError, match="chief-0 is still running"):
        fake.apply(handle, RestartRole(role="chief-0"))
    fake.apply(handle, RestartRole(role="worker-1"))
    assert fake.tries("worker-1") == 2 and fake.tries("chief-0") == 1
    assert fake.statuses(handle)["worker-1"].state is RoleState.RUNNING
    fake.apply(handle, RestartJob())
    assert [fake.tries(role) for role in handle.roles] == [2, 2, 3, 2, 2]
    fake.stop(handle, ["ps-0"])
    assert fake.statuses(handle)["ps-0"].exit_code == 143
    fake.cleanup(handle)
    assert fake.handles("s") == []


def test_an_oom_kill_reads_as_out_of_memory() -> None:
    fake = FakeBackend()
    handle = fake.launch(fake.plan(SPEC, "s"))
    fake.exit("chief-0", 137, ending=Ending.OOM_KILLED)
    end = fake.statuses(handle)["chief-0"].end
    assert end is not None and end.describe().startswith("out of memory")


def test_backend_configs_are_told_apart_by_kind() -> None:
    assert backend_from_dict({}) == LocalBackend()
    assert backend_from_dict({"kind": "local", "run_root": "/r"}) == LocalBackend(run_root="/r")
    k8s = backend_from_dict({"kind": "jobset", "image": "trainer:1"})
    assert isinstance(k8s, JobSetBackend) and k8s.image == "trainer:1"
    assert backend_from_dict({"kind": "fake", "name": "t"}) == FakeBackendConfig(name="t")
    for config in (LocalBackend(), k8s, FakeBackendConfig(name="t")):
        assert backend_from_dict(config.model_dump(mode="json")) == config


def test_a_fake_backend_is_found_by_name_in_this_process() -> None:
    try:
        assert connect({"kind": "fake", "name": "shared"}) is FakeBackend.named("shared")
        assert connect({"kind": "fake", "name": "other"}) is not FakeBackend.named("shared")
    finally:
        FakeBackend.forget("shared")
        FakeBackend.forget("other")


def test_the_local_config_connects_to_its_run_root() -> None:
    backend = connect({"kind": "local", "run_root": "/srv/runs", "python": "/opt/py"})
    assert isinstance(backend, LocalLauncher)
    assert (str(backend.run_root), backend.python) == ("/srv/runs", "/opt/py")


@pytest.mark.parametrize(
    ("config", "env", "standby"),
    [
        ({}, None, False),  # off unless asked for: it costs every job an import and memory
        ({}, "1", True),
        ({"warm_standby": True}, None, True),
        ({"warm_standby": True}, "0", True),  # the DAG's word wins
        ({}, "0", False),
    ],
)
def test_the_warm_standby_is_asked_for(
    config: dict[str, bool], env: str | None, standby: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if env is None:
        monkeypatch.delenv(STANDBY_ENV, raising=False)
    else:
        monkeypatch.setenv(STANDBY_ENV, env)
    backend = connect({"kind": "local", "run_root": "/srv/runs", **config})
    assert isinstance(backend, LocalLauncher) and backend.standby is standby


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"kind": "slurm"}, "kind: unknown backend kind 'slurm'; use one of 'local', 'jobset'"),
        ({"kind": "jobset"}, "jobset.image: required; add it"),
        ({"kind": "local", "runroot": "/r"}, "local.runroot: unknown field"),
    ],
)
def test_a_bad_backend_config_names_the_field(data: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match="invalid backend") as error:
        backend_from_dict(data)
    assert message in str(error.value)


def test_the_retired_kubernetes_kind_is_refused_naming_jobset() -> None:
    """`kind: kubernetes` (a pod per role) is gone: the error names the replacement and how a
    cluster without JobSet installs it, whatever else the dict holds."""
    with pytest.raises(ValueError, match="invalid backend: kind: backend kind 'kubernetes'") as err:
        backend_from_dict({"kind": "kubernetes", "image": "trainer:1"})
    assert "use kind: jobset (JobSetBackend)" in str(err.value)
    assert "jobset/releases/download/v0.12.0/manifests.yaml" in str(err.value)
    with pytest.raises(ImportError, match=r"KubernetesBackend: .* use kind: jobset"):
        from tfdist_airflow import KubernetesBackend  # noqa: F401
