"""Airflow provider registration (entry point group `apache_airflow_provider`)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any


def get_provider_info() -> dict[str, Any]:
    try:
        package_version = version("tfdist")
    except PackageNotFoundError:
        package_version = "0.0.0"
    return {
        "package-name": "tfdist",
        "name": "tfdist",
        "description": "Distributed TensorFlow train-and-evaluate as Airflow role tasks, "
        "gated export and deployment.",
        "versions": [package_version],
        "integrations": [
            {
                "integration-name": "tfdist",
                "external-doc-url": "https://www.tensorflow.org/guide/distributed_training",
                "tags": ["software"],
            }
        ],
        "operators": [
            {
                "integration-name": "tfdist",
                "python-modules": [
                    "tfdist_airflow.roles",
                    "tfdist_airflow.gate",
                    "tfdist_airflow.export",
                    "tfdist_airflow.deploy",
                ],
            }
        ],
        "triggers": [{"integration-name": "tfdist", "python-modules": ["tfdist_airflow.triggers"]}],
    }
