"""What each backend is, as data: one table for the launchers and for the Airflow
configurations that name them (which read it when a DAG is parsed, without importing a
launcher)."""

from __future__ import annotations

from tfdist.spec import Frozen

__all__ = ["FAKE", "JOBSET", "LOCAL", "Capabilities"]


class Capabilities(Frozen):
    """What a backend can do.

    :param shared_storage: the roles see the launcher's disk, so local paths work for
        `model_dir`, `data_dir` and `serving_base`; otherwise they must be gs://.
    :param runs_policy: the engine restarts roles itself (a JobSet runs the compiled policy,
        also while nobody watches); the supervisor then only reads what it did.
    """

    shared_storage: bool
    runs_policy: bool = False


LOCAL = Capabilities(shared_storage=True)
FAKE = Capabilities(shared_storage=True)
# The JobSet's failure policy restarts roles in the cluster and keeps the counts.
JOBSET = Capabilities(shared_storage=False, runs_policy=True)
