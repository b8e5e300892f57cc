"""Airflow binding of tfdist: role tasks, the blessing gate, export and deployment.

Importing this package loads no TensorFlow, Kubernetes or Google client modules, so DAG files
that use it parse fast.
"""

from __future__ import annotations

from tfdist_airflow.backends import LocalBackend
from tfdist_airflow.group import train_and_evaluate

__all__ = ["LocalBackend", "train_and_evaluate"]
