"""The Kubernetes launcher: every role as a pod behind one headless Service, via a `KubeApi`.

Implements `tfdist.backend.Backend`. A launch creates the Service and every pod together (a
gang: if one cannot be created, the others are deleted again). A `JobHandle`'s `job_id` is
`<namespace>/<service>`; every object carries the launch's labels, so any process (a watch task,
a teardown, a retry) finds them. After training, `export` runs the export in a one-off pod of
the trainer image and waits for it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from tfdist.backend import (
    EXPORT_TIMEOUT_SECS,
    JobHandle,
    RoleState,
    RoleStatus,
    SupervisionRecord,
)
from tfdist.capabilities import RAW_PODS
from tfdist.kubernetes.api import AlreadyExists, KubeApi, KubeApiError
from tfdist.kubernetes.manifests import (
    Target,
    build_export_pod,
    build_manifests,
    build_pod,
    kubernetes_addresses,
)
from tfdist.kubernetes.names import (
    INDEX,
    LAUNCH,
    MANAGED_BY,
    ROLE,
    ROLES_ANNOTATION,
    SCOPE,
    SCOPE_ANNOTATION,
    SPEC_ANNOTATION,
    TRY,
    RunRef,
    export_pod_name,
    pod_name,
    scope_label,
    service_name,
)
from tfdist.kubernetes.status import Timeouts, pod_status
from tfdist.lifecycle import RoleId
from tfdist.locations import require_shared_storage
from tfdist.plan import JobPlan, plan
from tfdist.spec import JobSpec, Role
from tfdist.supervision import record_in_memory
from tfdist.supervisor import Command, RestartJob, RestartRole, StopRoles

BACKEND = "kubernetes"
_ROLE_ORDER = {role: rank for rank, role in enumerate(Role)}


def new_launch_id() -> str:
    return uuid.uuid4().hex[:12]


class KubernetesLauncher:
    """Launches, watches and stops the role pods of one train-and-evaluate step.

    :param api: the cluster (`ProviderKubeApi`) or `FakeKubeApi`.
    :param target: namespace, image, placement and cluster domain of the pods.
    :param launch_ids: the id of each new launch; names and labels of a launch derive from
        it and from its scope, `<dag>/<run>/<group>` (see `tfdist_airflow.runs.run_scope`).
    :param clock: seconds since the epoch (pod timestamps are compared with it).
    """

    capabilities = RAW_PODS  # its supervision record lives in the watching process

    python = "python"  # the interpreter in the trainer image

    def __init__(
        self,
        api: KubeApi,
        target: Target,
        *,
        timeouts: Timeouts | None = None,
        launch_ids: Callable[[], str] = new_launch_id,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        delete_wait_secs: float = 120.0,
    ):
        self.api = api
        self.target = target
        self.timeouts = timeouts or Timeouts()
        self.launch_ids = launch_ids
        self.clock = clock
        self.sleep = sleep
        self.delete_wait_secs = delete_wait_secs

    @property
    def namespace(self) -> str:
        return self.target.namespace

    # -- planning and launching -------------------------------------------------------------
    def admit(self, spec: JobSpec) -> None:
        """Refuse a local `model_dir` or `data_dir`: pods share no disk. Otherwise the cluster
        admits (or queues) the pods."""
        require_shared_storage(spec, "kubernetes")

    def plan(self, spec: JobSpec, scope: str) -> JobPlan:
        ref = RunRef.from_scope(scope, self.launch_ids())
        service = service_name(spec.name, ref)
        domain = self.target.cluster_domain
        addresses = kubernetes_addresses(spec, service, self.namespace, domain)
        return plan(spec, addresses, python=self.python, scope=scope, launch_id=ref.launch)

    def launch(self, job: JobPlan) -> JobHandle:
        self.admit(job.spec)
        ref = RunRef.from_scope(job.scope, job.launch_id or self.launch_ids())
        service, *pods = build_manifests(job, ref, self.target)
        created: list[dict[str, Any]] = []
        try:
            self.api.create_service(self.namespace, service)
            created.append(service)
            for pod in pods:
                self.api.create_pod(self.namespace, pod)
                created.append(pod)
        except Exception as error:
            for obj in reversed(created):
                self._delete(obj)
            raise KubeApiError(
                f"could not create every role of {job.spec.name} ({error}); deleted the "
                f"{len(created)} objects already created, so that no role runs alone"
            ) from error
        return JobHandle(
            backend=BACKEND,
            job_id=f"{self.namespace}/{service['metadata']['name']}",
            launch_id=ref.launch,
            roles=tuple(job.role_names),
        )

    def _delete(self, obj: Mapping[str, Any]) -> None:
        name = obj["metadata"]["name"]
        if obj["kind"] == "Service":
            self.api.delete_service(self.namespace, name)
        else:
            self.api.delete_pod(self.namespace, name)

    # -- watching ---------------------------------------------------------------------------
    def statuses(self, handle: JobHandle) -> dict[str, RoleStatus]:
        """Every role's status from one list of the launch's pods."""
        namespace, service = _where(handle)
        pods = {
            pod["metadata"]["name"]: pod
            for pod in self.api.list_pods(namespace, _launch_labels(handle))
        }
        now = self.clock()
        return {
            role: pod_status(role, pods.get(pod_name(service, role)), now, self.timeouts)
            for role in handle.roles
        }

    def wait(self, handle: JobHandle, roles: Sequence[str], timeout: float) -> None:
        self.sleep(timeout)

    def read_log(self, handle: JobHandle, role: str, offset: int = 0) -> tuple[str, int]:
        """Whole lines from byte `offset`; from the start again once the pod was recreated."""
        namespace, service = _where(handle)
        return _lines(self.api.read_pod_log(namespace, pod_name(service, role)), offset)

    # -- supervising --------------------------------------------------------------------------
    def apply(self, handle: JobHandle, command: Command) -> None:
        match command:
            case RestartRole(role=role):
                self._relaunch(handle, role)
            case RestartJob():
                self._relaunch_job(handle)
            case StopRoles(roles=roles):
                self.stop(handle, roles)

    @contextmanager
    def supervision(self, handle: JobHandle) -> Iterator[SupervisionRecord]:
        with record_in_memory(f"{BACKEND}/{handle.job_id}/{handle.launch_id}") as record:
            yield record

    def _relaunch(self, handle: JobHandle, role: str) -> None:
        """Recreate one finished role's pod under the same name (so the same DNS name).

        The old pod is deleted first and its deletion awaited; the new one's `try` label is
        one higher. The pod is rebuilt from the Service's annotations, so this works also
        when the old pod went away with its node.
        """
        namespace, _ = _where(handle)
        job, ref = self._recorded_plan(handle)
        manifest = build_pod(job, job.role(role), ref, self.target)
        name = manifest["metadata"]["name"]
        old = self.api.get_pod(namespace, name)
        attempt = 2
        if old is not None:
            if not pod_status(role, old, self.clock(), self.timeouts).state.finished:
                raise RuntimeError(f"{role} is still running; stop it before starting it again")
            attempt = int(old["metadata"].get("labels", {}).get(TRY, "1")) + 1
            self.api.delete_pod(namespace, name)
            if not self._await_gone(namespace, [name]):
                raise KubeApiError(
                    f"{role}: pod {name} is still being deleted after "
                    f"{self.delete_wait_secs:.0f} s; retry once it is gone"
                )
        manifest["metadata"]["labels"][TRY] = str(attempt)
        self.api.create_pod(namespace, manifest)

    def _relaunch_job(self, handle: JobHandle) -> None:
        """Delete every role's pod, await their deletion, create them all again (each with
        its `try` label one higher); the Service and so every DNS name stays."""
        namespace, service = _where(handle)
        job, ref = self._recorded_plan(handle)
        tries = {
            pod["metadata"]["name"]: int(pod["metadata"].get("labels", {}).get(TRY, "1"))
            for pod in self.api.list_pods(namespace, _launch_labels(handle))
        }
        names = [pod_name(service, role) for role in handle.roles]
        for name in names:
            self.api.delete_pod(namespace, name)
        if not self._await_gone(namespace, names):
            raise KubeApiError(
                f"the pods of launch {handle.launch_id} are still being deleted after "
                f"{self.delete_wait_secs:.0f} s; retry once they are gone"
            )
        for role in handle.roles:
            manifest = build_pod(job, job.role(role), ref, self.target)
            name = manifest["metadata"]["name"]
            manifest["metadata"]["labels"][TRY] = str(tries.get(name, 1) + 1)
            self.api.create_pod(namespace, manifest)

    def _recorded_plan(self, handle: JobHandle) -> tuple[JobPlan, RunRef]:
        namespace, service = _where(handle)
        found = [
            svc
            for svc in self.api.list_services(namespace, _launch_labels(handle))
            if svc["metadata"]["name"] == service
        ]
        if not found:
            raise KubeApiError(
                f"Service {service} of launch {handle.launch_id} is gone (torn down?); clear "
                "the whole train-and-evaluate group to launch every role again"
            )
        annotations = found[0]["metadata"].get("annotations") or {}
        spec = JobSpec.model_validate_json(annotations[SPEC_ANNOTATION])
        ref = RunRef.from_scope(annotations[SCOPE_ANNOTATION], handle.launch_id)
        if service_name(spec.name, ref) != service:
            raise KubeApiError(f"Service {service} does not match its recorded job and run")
        domain = self.target.cluster_domain
        addresses = kubernetes_addresses(spec, service, namespace, domain)
        return plan(spec, addresses, python=self.python), ref

    # -- stopping ---------------------------------------------------------------------------
    def stop(self, handle: JobHandle, roles: Sequence[str] | None = None) -> None:
        """Delete the given roles' pods, or (default) every pod and the Service of the launch.

        Waits up to `delete_wait_secs` for the pods to be gone; Kubernetes finishes the
        deletion on its own after that.
        """
        namespace, service = _where(handle)
        labels = _launch_labels(handle)
        if roles is None:
            names = [
                pod["metadata"]["name"]
                for pod in self.api.list_pods(namespace, labels)
                if pod["spec"].get("subdomain") == service
            ]
        else:
            names = [pod_name(service, role) for role in roles]
        for name in names:
            self.api.delete_pod(namespace, name)
        if roles is None:
            for svc in self.api.list_services(namespace, labels):
                if svc["metadata"]["name"] == service:
                    self.api.delete_service(namespace, service)
        self._await_gone(namespace, names)

    def _await_gone(self, namespace: str, names: Sequence[str]) -> bool:
        deadline = self.clock() + self.delete_wait_secs
        left = list(names)
        while True:
            left = [name for name in left if self.api.get_pod(namespace, name) is not None]
            if not left:
                return True
            if self.clock() >= deadline:
                return False
            self.sleep(1.0)

    # -- exporting --------------------------------------------------------------------------
    def export(
        self,
        handle: JobHandle,
        spec: JobSpec,
        checkpoint: str,
        out: str,
        env: Mapping[str, str],
        log: Callable[[str], None],
        *,
        poll_secs: float = 5.0,
        timeout_secs: float | None = EXPORT_TIMEOUT_SECS,
    ) -> None:
        """Export `checkpoint` to `out` in a pod of the trainer image (`build_export_pod`),
        placed as the chief; wait for it, stream its log to `log`, delete it.

        The pod is named after the launch and the checkpoint's step, so a retry follows a
        pod still running, or takes one that already succeeded, rather than start another.
        """
        namespace, service = _where(handle)
        if namespace != self.namespace:
            raise ValueError(f"launch {handle.job_id} is not in namespace {self.namespace}")
        manifest = build_export_pod(
            spec, service, handle.launch_id, self.target, checkpoint, out, env
        )
        try:
            self.run_to_completion(manifest, log, poll_secs=poll_secs, timeout_secs=timeout_secs)
        except RuntimeError as error:
            raise RuntimeError(f"export failed: {error}") from error

    def stop_export(self, handle: JobHandle, checkpoint: str) -> None:
        """Delete the export pod of `checkpoint` (as a killed export task must)."""
        namespace, service = _where(handle)
        self.api.delete_pod(namespace, export_pod_name(service, checkpoint))

    def run_to_completion(
        self,
        manifest: Mapping[str, Any],
        log: Callable[[str], None],
        *,
        poll_secs: float = 5.0,
        timeout_secs: float | None = None,
    ) -> None:
        """Run a one-off pod to its end, pass each line of its log to `log`, then delete it.

        A pod of the same name and command that is pending or running is followed, one that
        succeeded is taken as done; a failed one is replaced. Raises `RuntimeError` when the
        pod fails, is not scheduled or started in time (`timeouts`), or runs longer than
        `timeout_secs`. The pod is deleted in every case.
        """
        name = manifest["metadata"]["name"]
        self._adopt_or_create(manifest, log)
        try:
            status = self._follow(name, log, poll_secs, timeout_secs)
        finally:
            try:
                self.api.delete_pod(self.namespace, name)
            except KubeApiError as error:
                log(f"could not delete pod {name}: {error}")
        if status.state is not RoleState.SUCCEEDED:
            code = f" with exit code {status.exit_code}" if status.exit_code is not None else ""
            raise RuntimeError(f"pod {name} failed{code}: {status.detail or 'no reason given'}")

    def _adopt_or_create(self, manifest: Mapping[str, Any], log: Callable[[str], None]) -> None:
        name = manifest["metadata"]["name"]
        old = self.api.get_pod(self.namespace, name)
        if old is not None and not old["metadata"].get("deletionTimestamp"):
            status = pod_status(name, old, self.clock(), self.timeouts)
            same = _command(old) == _command(manifest)
            if same and status.state is RoleState.SUCCEEDED:
                log(f"pod {name} of an earlier try succeeded; taking its result")
                return
            if same and not status.state.finished:
                log(f"pod {name} of an earlier try is {status.state.value}; following it")
                return
            if not status.state.finished:
                raise RuntimeError(
                    f"pod {name} is still running another command ({' '.join(_command(old))}); "
                    "wait for it to end or delete it"
                )
            why = status.state.value if same else "ran another command"
            log(f"pod {name} of an earlier try {why}; starting it again")
            self.api.delete_pod(self.namespace, name)
        if old is not None and not self._await_gone(self.namespace, [name]):
            raise KubeApiError(
                f"pod {name} is still being deleted after {self.delete_wait_secs:.0f} s; "
                "retry once it is gone"
            )
        try:
            self.api.create_pod(self.namespace, manifest)
        except AlreadyExists:
            log(f"pod {name} was created meanwhile by another try; following it")
            return
        log(f"created pod {name}")

    def _follow(
        self, name: str, log: Callable[[str], None], poll_secs: float, timeout_secs: float | None
    ) -> RoleStatus:
        offset, shown, started = 0, "", None
        while True:
            pod = self.api.get_pod(self.namespace, name)
            status = pod_status(name, pod, self.clock(), self.timeouts)
            text, offset = _lines(
                self.api.read_pod_log(self.namespace, name), offset, whole=status.state.finished
            )
            for line in text.splitlines():
                log(line)
            if status.state.finished:
                return status
            if status.detail and status.detail != shown:
                log(f"pod {name} {status.state.value}: {status.detail}")
                shown = status.detail
            if status.state is RoleState.RUNNING and timeout_secs is not None:
                started = started or _started_at(pod) or self.clock()
                if self.clock() - started > timeout_secs:
                    raise RuntimeError(
                        f"pod {name} still running after {timeout_secs:.0f} s; stopped it"
                    )
            self.sleep(poll_secs)

    # -- finding launches, cleaning up -------------------------------------------------------
    def cleanup(self, handle: JobHandle) -> None:
        """Delete every pod and the Service of the launch, finished ones included."""
        self.stop(handle)

    def handles(self, scope: str) -> list[JobHandle]:
        """Every launch of `scope` still on the cluster, oldest first."""
        labels = {MANAGED_BY: "tfdist", SCOPE: scope_label(RunRef.from_scope(scope, "").scope)}
        found: dict[str, dict[str, Any]] = {}
        for svc in self.api.list_services(self.namespace, labels):
            meta = svc["metadata"]
            entry = _entry(found, meta)
            entry["service"] = meta["name"]
            entry["roles"].update(
                dict.fromkeys((meta.get("annotations") or {}).get(ROLES_ANNOTATION, "").split(","))
            )
        for pod in self.api.list_pods(self.namespace, labels):
            meta = pod["metadata"]
            entry = _entry(found, meta)
            entry.setdefault("service", pod["spec"].get("subdomain", ""))
            role = RoleId(kind=Role(meta["labels"][ROLE]), index=int(meta["labels"][INDEX]))
            entry["roles"][role.name] = None
        launches = sorted(found.items(), key=lambda item: item[1]["created"])
        return [
            JobHandle(
                backend=BACKEND,
                job_id=f"{self.namespace}/{entry['service']}",
                launch_id=launch,
                roles=tuple(sorted((r for r in entry["roles"] if r), key=_role_key)),
            )
            for launch, entry in launches
        ]


def _entry(found: dict[str, dict[str, Any]], meta: Mapping[str, Any]) -> dict[str, Any]:
    entry = found.setdefault(
        meta["labels"][LAUNCH], {"roles": {}, "created": meta.get("creationTimestamp") or ""}
    )
    entry["created"] = min(entry["created"], meta.get("creationTimestamp") or entry["created"])
    return entry


def _role_key(name: str) -> tuple[int, int]:
    role = RoleId.parse(name)
    return _ROLE_ORDER[role.kind], role.index


def _lines(log: str, offset: int, whole: bool = False) -> tuple[str, int]:
    """The log's whole lines from byte `offset` (all of the rest when `whole`), and the new
    offset; from the start again when the log is shorter (a new pod)."""
    data = log.encode()
    if offset > len(data):
        offset = 0
    end = len(data) if whole else data.rfind(b"\n", offset) + 1
    if end <= offset:
        return "", offset
    return data[offset:end].decode(errors="replace"), end


def _command(pod: Mapping[str, Any]) -> list[str]:
    containers = pod.get("spec", {}).get("containers") or [{}]
    return list(containers[0].get("command") or [])


def _started_at(pod: Mapping[str, Any] | None) -> float | None:
    """When the pod's container started running, from its status."""
    statuses = (pod or {}).get("status", {}).get("containerStatuses") or [{}]
    stamp = (statuses[0].get("state") or {}).get("running", {}).get("startedAt")
    return datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp() if stamp else None


def _where(handle: JobHandle) -> tuple[str, str]:
    if handle.backend != BACKEND or "/" not in handle.job_id:
        raise ValueError(f"not a Kubernetes launch: {handle.backend} {handle.job_id}")
    namespace, service = handle.job_id.split("/", 1)
    return namespace, service


def _launch_labels(handle: JobHandle) -> dict[str, str]:
    return {MANAGED_BY: "tfdist", LAUNCH: handle.launch_id}
