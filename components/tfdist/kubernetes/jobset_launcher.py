"""The JobSet backend: one JobSet per launch, restarted by the cluster, watched from outside.

Implements `tfdist.backend.Backend` over a `KubeApi`. A launch creates one JobSet
(`tfdist.kubernetes.jobset`), whose failure and success policies are the core lifecycle
compiled (`jobset_policy`): the JobSet, Job and Kueue controllers admit the gang, restart a
role or the whole job, and fail or finish it, also while Airflow is down. This backend only
reports what they do (`jobset_status`): the supervisor never asks it to restart anything, and
the restart counts are the engine's own (`status.restarts`, each Job's failed pods).

Watching is cheap: the JobSet, its pods and (while queued) its Kueue Workload are read in one
snapshot that every role's status and log read share for `Snapshots.max_age_secs`; the watch
tasks of one triggerer share them through one `Snapshots`. A role's log follows its current
pod across restarts and each poll reads only its new lines: the offset carries which pod it is
in and the time of the last line read (`tfdist.kubernetes.logs.LogCursor`).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple

from tfdist.backend import (
    EXPORT_TIMEOUT_SECS,
    JobHandle,
    LaunchError,
    LaunchRefused,
    RoleState,
    RoleStatus,
    SupervisionRecord,
)
from tfdist.capabilities import JOBSET
from tfdist.kubernetes.api import JOBSETS, WORKLOADS, AlreadyExists, KubeApi, KubeApiError
from tfdist.kubernetes.jobset import (
    JOBSET_NAME,
    MAX_REPLICAS,
    TASK_INDEX,
    JobSetOptions,
    build_jobset,
    jobset_addresses,
    jobset_name,
)
from tfdist.kubernetes.jobset_status import admission, replica_pods, role_views, suspended
from tfdist.kubernetes.kueue import QUEUE_NAME, WORKLOAD_JOB_UID, QueuePosition
from tfdist.kubernetes.logs import LogCursor, new_lines
from tfdist.kubernetes.manifests import Target, build_export_pod
from tfdist.kubernetes.names import (
    LAUNCH,
    MANAGED_BY,
    ROLES_ANNOTATION,
    SCOPE,
    SPEC_ANNOTATION,
    RunRef,
    export_pod_name,
    scope_label,
)
from tfdist.kubernetes.one_off import OneOffPod
from tfdist.kubernetes.pods import Timeouts, condition, pod_end, started, timestamp
from tfdist.lifecycle import RoleId
from tfdist.locations import require_shared_storage
from tfdist.plan import JobPlan, plan
from tfdist.spec import JobSpec, Role
from tfdist.supervision import record_in_memory
from tfdist.supervisor import Command, StopRoles

BACKEND = "jobset"


class Snapshot(NamedTuple):
    """One read of a launch: its JobSet (None: gone), its pods, its Kueue Workload; and the
    role statuses made of them, once, for every watch that shares it."""

    jobset: dict[str, Any] | None
    pods: list[dict[str, Any]]
    workload: dict[str, Any] | None
    at: float
    statuses: dict[str, RoleStatus]
    position: QueuePosition | None = None  # while Kueue holds the Workload


class Snapshots:
    """Recent snapshots by launch, shared by every watcher of one process (the triggerer
    runs the watch of every role). One reader at a time per launch; the others reuse its
    snapshot while it is younger than `max_age_secs`."""

    def __init__(self, max_age_secs: float = 1.0, clock: Callable[[], float] = time.monotonic):
        self.max_age_secs = max_age_secs
        self.clock = clock
        self._found: dict[str, Snapshot] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def get(self, key: str, read: Callable[[float], Snapshot], fresh: bool = False) -> Snapshot:
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            found = self._found.get(key)
            now = self.clock()
            if found is None or fresh or now - found.at >= self.max_age_secs:
                found = self._found[key] = read(now)
            return found


def new_launch_id() -> str:
    return uuid.uuid4().hex[:12]


class JobSetLauncher:
    """Launches, watches and stops train-and-evaluate jobs as JobSets.

    :param api: the cluster (`ProviderKubeApi`) or `FakeJobSetCluster`.
    :param target: namespace, image, placement and cluster domain of the pods.
    :param options: Kueue queue, priority and provisioning; `ttlSecondsAfterFinished`.
    :param snapshots: shared with the other watchers of this process; default: its own.
    :param timeouts: how long the export pod may wait for a node, then for its container.
    :param poll_secs: how often the export pod is read while it runs.
    """

    capabilities = JOBSET

    python = "python"

    def __init__(
        self,
        api: KubeApi,
        target: Target,
        options: JobSetOptions | None = None,
        *,
        snapshots: Snapshots | None = None,
        launch_ids: Callable[[], str] = new_launch_id,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        delete_wait_secs: float = 300.0,
        timeouts: Timeouts | None = None,
        poll_secs: float = 5.0,
    ):
        self.api = api
        self.target = target
        self.options = options or JobSetOptions()
        self.snapshots = snapshots or Snapshots()
        self.launch_ids = launch_ids
        self.clock = clock
        self.sleep = sleep
        self.delete_wait_secs = delete_wait_secs
        self.timeouts = timeouts or Timeouts()
        self.poll_secs = poll_secs

    @property
    def namespace(self) -> str:
        return self.target.namespace

    # -- planning and launching -------------------------------------------------------------
    def admit(self, spec: JobSpec) -> None:
        """Refuse a local `model_dir` or `data_dir` (pods share no disk), and what the JobSet
        webhook would: more replicas of a role than its pod names have room for; and a trainer
        variable named `TASK_INDEX`, which this backend sets."""
        require_shared_storage(spec, "jobset")
        for role, count in ((r, spec.cluster.count(r)) for r in Role):
            if count > MAX_REPLICAS:
                raise LaunchRefused(
                    f"cluster.{role.value}: {count} replicas; a JobSet's pod names have room "
                    f"for {MAX_REPLICAS} at most"
                )
        if TASK_INDEX in spec.trainer.env:
            raise LaunchRefused(
                f"trainer.env: {TASK_INDEX} is set by the JobSet backend for each replica; "
                "rename it"
            )

    def plan(self, spec: JobSpec, scope: str) -> JobPlan:
        ref = RunRef.from_scope(scope, self.launch_ids())
        name = jobset_name(spec.name, ref)
        addresses = jobset_addresses(spec, name, self.namespace, self.target.cluster_domain)
        return plan(spec, addresses, python=self.python, scope=scope, launch_id=ref.launch)

    def launch(self, job: JobPlan) -> JobHandle:
        """Create the JobSet: every role at once, admitted as one by Kueue when queued. A
        retry of the same launch finds the JobSet it made and creates no second one."""
        ref = RunRef.from_scope(job.scope, job.launch_id or self.launch_ids())
        manifest = build_jobset(job, ref, self.target, self.options)
        name = manifest["metadata"]["name"]
        try:
            self.api.create_object(JOBSETS, self.namespace, manifest)
        except AlreadyExists:
            found = self.api.get_object(JOBSETS, self.namespace, name)
            if found is None or found["metadata"].get("labels", {}).get(LAUNCH) != ref.launch:
                raise LaunchError(f"JobSet {name} exists but is not this launch's") from None
        except KubeApiError as error:
            raise LaunchError(
                f"could not create JobSet {name} of {job.spec.name}: {error}"
            ) from None
        return JobHandle(
            backend=BACKEND,
            job_id=f"{self.namespace}/{name}",
            launch_id=ref.launch,
            roles=tuple(job.role_names),
        )

    # -- watching ---------------------------------------------------------------------------
    def snapshot(self, handle: JobHandle, fresh: bool = False) -> Snapshot:
        """The launch's JobSet, pods and (while suspended) Workload and its place in the
        queue: two requests, four while queued; shared for `snapshots.max_age_secs`."""
        namespace, name = _where(handle)

        def read(now: float) -> Snapshot:
            jobset = self.api.get_object(JOBSETS, namespace, name)
            if jobset is None:
                return Snapshot(None, [], None, now, {})
            pods = self.api.list_pods(namespace, {JOBSET_NAME: name})
            workload, position = None, None
            if suspended(jobset):
                uid = {WORKLOAD_JOB_UID: jobset["metadata"].get("uid", "")}
                found = self.api.list_objects(WORKLOADS, namespace, uid)
                workload = found[0] if found else None
                queue = jobset["metadata"].get("labels", {}).get(QUEUE_NAME)
                if workload is not None and queue and not condition(workload, "QuotaReserved"):
                    position = self._position(namespace, queue, workload)
            return Snapshot(jobset, pods, workload, now, {}, position)

        return self.snapshots.get(handle.job_id, read, fresh)

    def _position(
        self, namespace: str, queue: str, workload: Mapping[str, Any]
    ) -> QueuePosition | None:
        created = timestamp(workload["metadata"].get("creationTimestamp"))
        waited = self.clock() - created if created is not None else None
        pending = self.api.pending_workloads(namespace, queue)
        return QueuePosition.find(pending, workload["metadata"]["name"], waited)

    def statuses(self, handle: JobHandle) -> dict[str, RoleStatus]:
        snap = self.snapshot(handle)
        if snap.jobset is None:
            detail = "its JobSet is gone: deleted (stopped, torn down, or past its TTL)"
            return {
                role: RoleStatus(name=role, state=RoleState.FAILED, detail=detail)
                for role in handle.roles
            }
        if not snap.statuses:
            spec = _recorded_spec(snap.jobset)
            views = role_views(spec, snap.jobset, snap.pods, snap.workload, snap.position)
            queued = {"admission": admission(snap.jobset, snap.workload, snap.position)}
            snap.statuses.update(
                {role: view.status.model_copy(update=queued) for role, view in views.items()}
            )
        return {role: snap.statuses[role] for role in handle.roles}

    def wait(self, handle: JobHandle, roles: Sequence[str], timeout: float) -> None:
        self.sleep(timeout)

    def read_log(self, handle: JobHandle, role: str, offset: int = 0) -> tuple[str, int]:
        """The role's new log lines since `offset` (a `LogCursor`): each poll asks only for the
        lines written since the last one (`tfdist.kubernetes.logs`). Once the role has a new
        pod (its Job or the whole JobSet restarted), the rest of the old pod's log comes first
        if it is still there, then the new pod's from its start, after a line naming it."""
        snap = self.snapshot(handle)
        if snap.jobset is None:
            return "", offset
        namespace, _ = _where(handle)
        rid = RoleId.parse(role)
        attempt = int((snap.jobset.get("status") or {}).get("restarts") or 0)
        current = replica_pods(snap.pods, rid, attempt)
        here = LogCursor(attempt, max(len(current) - 1, 0))
        cursor = LogCursor.decode(offset)
        if cursor[:2] != here[:2]:  # on an older pod: its rest, then on to the current one
            older = replica_pods(snap.pods, rid, cursor.attempt)
            text = ""
            if cursor.ordinal < len(older):
                text = self._new_lines(namespace, older[cursor.ordinal], cursor, whole=True)[0]
            return text, here.encode()
        if not current:
            return "", offset
        pod = current[-1]
        text, after = self._new_lines(namespace, pod, cursor, whole=pod_end(pod) is not None)
        if text and not cursor.stamp and (attempt or here.ordinal):
            runs = f"job restart {attempt}, " if attempt else ""
            text = (
                f"--- {role}: following pod {pod['metadata']['name']} ({runs}run "
                f"{here.ordinal + 1} of its Job) ---\n{text}"
            )
        return text, after.encode()

    def _new_lines(
        self, namespace: str, pod: Mapping[str, Any], cursor: LogCursor, whole: bool
    ) -> tuple[str, LogCursor]:
        if not started(pod):
            return "", cursor
        name = pod["metadata"]["name"]
        data = self.api.read_pod_log(namespace, name, since=cursor.since, timestamps=True)
        return new_lines(data, cursor, whole=whole)

    # -- supervising: the cluster's job --------------------------------------------------------
    def apply(self, handle: JobHandle, command: Command) -> None:
        """Stop roles; restarting is the JobSet's and its Jobs' own (their failure policies)."""
        if not isinstance(command, StopRoles):
            raise ValueError(f"a JobSet restarts its roles itself; {command.kind} is not asked")
        self.stop(handle, command.roles)

    @contextmanager
    def supervision(self, handle: JobHandle) -> Iterator[SupervisionRecord]:
        """Kept in memory: the counts that must survive a watcher are the engine's own, and
        the outcome is read again from the JobSet at each step."""
        with record_in_memory(f"{BACKEND}/{handle.job_id}/{handle.launch_id}") as record:
            yield record

    # -- stopping ---------------------------------------------------------------------------
    def stop(self, handle: JobHandle, roles: Sequence[str] | None = None) -> None:
        """Delete the JobSet with foreground propagation and wait until its pods are gone.

        With `roles` short of every role still running, delete only those roles' current
        pods: their Jobs and the JobSet then do what the policy says for a role that ended so
        (a role-scope role starts again, a job-scope one restarts the job).
        """
        namespace, name = _where(handle)
        if roles is not None:
            running = {r for r, s in self.statuses(handle).items() if not s.state.finished}
            if not running <= set(roles):
                self._stop_pods(handle, roles)
                return
        self.api.delete_object(JOBSETS, namespace, name, foreground=True)
        self._await(lambda: not self.api.list_pods(namespace, {JOBSET_NAME: name}), name)

    def _stop_pods(self, handle: JobHandle, roles: Sequence[str]) -> None:
        namespace, name = _where(handle)
        snap = self.snapshot(handle, fresh=True)
        attempt = int(((snap.jobset or {}).get("status") or {}).get("restarts") or 0)
        names = []
        for role in roles:
            current = replica_pods(snap.pods, RoleId.parse(role), attempt)
            if current and pod_end(current[-1]) is None:
                names.append(current[-1]["metadata"]["name"])
        for pod in names:
            self.api.delete_pod(namespace, pod)
        self._await(lambda: all(self.api.get_pod(namespace, n) is None for n in names), name)

    def _await(self, gone: Callable[[], bool], name: str) -> None:
        deadline = self.clock() + self.delete_wait_secs
        while not gone():
            if self.clock() >= deadline:
                raise KubeApiError(
                    f"the pods of JobSet {name} are still being deleted after "
                    f"{self.delete_wait_secs:.0f} s; Kubernetes finishes on its own"
                )
            self.sleep(1.0)

    def cleanup(self, handle: JobHandle) -> None:
        """Delete the JobSet (foreground) and confirm its pods are gone."""
        self.stop(handle)

    def handles(self, scope: str) -> list[JobHandle]:
        """Every JobSet of `scope` still on the cluster, oldest first."""
        labels = {MANAGED_BY: "tfdist", SCOPE: scope_label(RunRef.from_scope(scope, "").scope)}
        found = self.api.list_objects(JOBSETS, self.namespace, labels)
        found.sort(
            key=lambda js: (js["metadata"].get("creationTimestamp") or "", js["metadata"]["name"])
        )
        return [
            JobHandle(
                backend=BACKEND,
                job_id=f"{self.namespace}/{js['metadata']['name']}",
                launch_id=js["metadata"]["labels"].get(LAUNCH, ""),
                roles=tuple(
                    (js["metadata"].get("annotations") or {}).get(ROLES_ANNOTATION, "").split(",")
                ),
            )
            for js in found
        ]

    # -- exporting --------------------------------------------------------------------------
    def export(
        self,
        handle: JobHandle,
        spec: JobSpec,
        checkpoint: str,
        out: str,
        env: Mapping[str, str],
        log: Callable[[str], None],
    ) -> None:
        """Export in a one-off pod of the trainer image, placed as the chief (`placement.
        export` may say otherwise). It is not part of the JobSet, so the JobSet's end (or its
        TTL) does not stop it; a retry follows the pod of an earlier try (`OneOffPod`)."""
        namespace, name = _where(handle)
        if namespace != self.namespace:
            raise ValueError(f"launch {handle.job_id} is not in namespace {self.namespace}")
        manifest = build_export_pod(spec, name, handle.launch_id, self.target, checkpoint, out, env)
        pod = OneOffPod(
            self.api, namespace, timeouts=self.timeouts, clock=self.clock, sleep=self.sleep
        )
        try:
            pod.run(manifest, log, poll_secs=self.poll_secs, timeout_secs=EXPORT_TIMEOUT_SECS)
        except RuntimeError as error:
            raise RuntimeError(f"export failed: {error}") from error

    def stop_export(self, handle: JobHandle, checkpoint: str) -> None:
        """Delete the export pod of `checkpoint` (as a killed export task must)."""
        namespace, name = _where(handle)
        self.api.delete_pod(namespace, export_pod_name(name, checkpoint))


def _recorded_spec(jobset: Mapping[str, Any]) -> JobSpec:
    return JobSpec.model_validate_json(jobset["metadata"]["annotations"][SPEC_ANNOTATION])


def _where(handle: JobHandle) -> tuple[str, str]:
    if handle.backend != BACKEND or "/" not in handle.job_id:
        raise ValueError(f"not a JobSet launch: {handle.backend} {handle.job_id}")
    namespace, name = handle.job_id.split("/", 1)
    return namespace, name
