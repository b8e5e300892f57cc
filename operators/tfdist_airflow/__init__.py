"""Airflow binding of tfdist: role tasks, the blessing gate, export and deployment.

Names are imported lazily: Airflow imports this package early (for `get_provider_info`), before
its own configuration is ready. Nothing here loads TensorFlow, Kubernetes or Google clients, so
DAG files that use it parse fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tfdist_airflow.backends import JobSetBackend, LocalBackend
    from tfdist_airflow.group import gate_export_deploy, train_and_evaluate

_LAZY = {
    "JobSetBackend": "tfdist_airflow.backends",
    "LocalBackend": "tfdist_airflow.backends",
    "gate_export_deploy": "tfdist_airflow.group",
    "train_and_evaluate": "tfdist_airflow.group",
}

__all__ = [
    "JobSetBackend",
    "LocalBackend",
    "gate_export_deploy",
    "train_and_evaluate",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name == "KubernetesBackend":  # retired: the error names its replacement
        return importlib.import_module("tfdist_airflow.backends").KubernetesBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
