"""Names and labels of a launch's Kubernetes objects: valid DNS-1123, unique per run and launch.

A launch belongs to one train-and-evaluate step of one Airflow run (its scope,
`<dag>/<run>/<group>`) and has its own id, new for every try of the launch task, so concurrent
backfill runs and retries never share a name.
"""

from __future__ import annotations

import hashlib
import re

from tfdist.spec import Frozen

MAX_NAME = 63  # label values and pod names
MANAGED_BY = "app.kubernetes.io/managed-by"
JOB = "tfdist.io/job"
DAG = "tfdist.io/dag"
RUN = "tfdist.io/run"  # the run id as a label value
SCOPE = "tfdist.io/scope"  # a hash of `<dag>/<run>/<group>`: the step of one run
LAUNCH = "tfdist.io/launch"  # new for every launch (every try of the launch task)
ROLE = "tfdist.io/role"
# JobSet annotations: the roles, the unhashed scope and the job spec of the launch.
ROLES_ANNOTATION = "tfdist.io/roles"
SCOPE_ANNOTATION = "tfdist.io/scope"
SPEC_ANNOTATION = "tfdist.io/spec"

EXPORT_ROLE = "export"  # the `role` label of a launch's export pod

_NOT_LABEL = re.compile(r"[^A-Za-z0-9_.-]+")
_STEP = re.compile(r"-([0-9]{1,20})$")
_EDGES = re.compile(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$")


def digest(text: str, length: int = 10) -> str:
    """A short, stable, DNS-safe hash."""
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def label_value(text: str) -> str:
    """`text` as a valid label value: unsafe characters become `-`; a long one ends in a hash."""
    value = _EDGES.sub("", _NOT_LABEL.sub("-", text))
    if len(value) <= MAX_NAME and (value or not text):
        return value
    head = _EDGES.sub("", value[: MAX_NAME - 11])
    return f"{head}-{digest(text)}" if head else digest(text)


class RunRef(Frozen):
    """Who a launch belongs to: the step of an Airflow run, and which launch of it."""

    dag: str = "cli"
    run: str = "manual"
    group: str = "train_and_evaluate"
    launch: str = "plan"

    @classmethod
    def from_scope(cls, scope: str, launch: str) -> RunRef:
        """From a scope made by `tfdist_airflow.runs.run_scope` (`<dag>/<run>/<group>`)."""
        dag, run, group = ([*scope.split("/", 2), "", ""])[:3]
        return cls(dag=dag, run=run, group=group, launch=launch)

    @property
    def scope(self) -> str:
        return f"{self.dag}/{self.run}/{self.group}"


def scope_label(scope: str) -> str:
    return digest(f"scope:{scope}")


def _child_name(parent: str, role: str) -> str:
    """`<parent>-<role>`, shortened before the parent's hash to stay within 63 characters."""
    base, _, hashed = parent.rpartition("-")
    room = MAX_NAME - len(hashed) - len(role) - 2
    return f"{base[: max(room, 1)].rstrip('-')}-{hashed}-{role}"


def export_pod_name(jobset: str, checkpoint: str) -> str:
    """`<jobset>-export-<step>` for a checkpoint `.../ckpt-<step>` (else a hash of its path).

    The same for every try of the export task, so a retry finds the pod of the one before.
    """
    found = _STEP.search(checkpoint)
    return _child_name(
        jobset, f"{EXPORT_ROLE}-{found.group(1) if found else digest(checkpoint, 8)}"
    )


def launch_labels(job: str, ref: RunRef) -> dict[str, str]:
    """What every object of a launch carries."""
    return {
        MANAGED_BY: "tfdist",
        JOB: job,
        DAG: label_value(ref.dag),
        RUN: label_value(ref.run),
        SCOPE: scope_label(ref.scope),
        LAUNCH: label_value(ref.launch),
    }
