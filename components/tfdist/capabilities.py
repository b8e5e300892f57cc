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
    :param atomic_launch: a launch is one request (a JobSet), never half done; otherwise roles
        start one by one, and a launcher that died on the way leaves some never started.
    """

    shared_storage: bool
    runs_policy: bool = False
    atomic_launch: bool = False


LOCAL = Capabilities(shared_storage=True)
FAKE = Capabilities(shared_storage=True, atomic_launch=True)
# The JobSet's failure policy restarts roles in the cluster and keeps the counts.
JOBSET = Capabilities(shared_storage=False, runs_policy=True, atomic_launch=True)
