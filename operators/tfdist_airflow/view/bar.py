"""The bar a run must clear, known before its gate decides: the gate task's thresholds and the
model version deployed now (its baseline), so the charts show them from the first eval point.

The gate's `thresholds` are a template field; templates that use only `params` (as DAG params
do) are rendered here with the run's params, in Jinja's sandbox. Anything else (an XCom, a
macro) cannot be rendered before the task runs: then the lines appear once the gate decides.
Once it has, its own record (`blessing.json`) is the only source.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment
from pydantic import BaseModel, ConfigDict

from tfdist.deploy import latest_deployment
from tfdist.gate import Baseline, GateError, GateSpec, MetricThreshold
from tfdist.storage import Storage

StorageOf = Callable[[str], Storage]
_JINJA = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


class Bar(BaseModel):
    """What the gate will compare the run's final evaluation with."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    thresholds: dict[str, MetricThreshold]
    baseline: Baseline | None = None


class GateTask(BaseModel):
    """The gate task's fields as the serialized DAG has them, unrendered."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    thresholds: Any
    serving_base: str | None = None
    model_name: str | None = None


def render(value: Any, params: Mapping[str, Any]) -> Any:
    """Every string in a JSON-shaped value rendered as a template over `params` only; raises
    `TemplateError` where a template needs more."""
    if isinstance(value, str):
        return _JINJA.from_string(value).render(params=params) if "{" in value else value
    if isinstance(value, Mapping):
        return {key: render(item, params) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [render(item, params) for item in value]
    return value


def thresholds_of(gate: GateTask, params: Mapping[str, Any]) -> dict[str, MetricThreshold] | None:
    """The gate's thresholds for a run with these params; None where they cannot be known yet."""
    try:
        return GateSpec.from_params(render(gate.thresholds, params)).thresholds
    except (TemplateError, GateError, TypeError, ValueError):
        return None


def the_bar(gate: GateTask, params: Mapping[str, Any], storage_of: StorageOf) -> Bar | None:
    """The thresholds and the version deployed now; None without thresholds to draw."""
    thresholds = thresholds_of(gate, params)
    if not thresholds:
        return None
    baseline = None
    base, name = gate.serving_base, gate.model_name
    if base and name and "{" not in base + name:
        try:
            deployed = latest_deployment(storage_of(base), base, name)
        except Exception:  # an unreadable serving base: the lines without the baseline
            deployed = None
        baseline = deployed.baseline() if deployed else None
    return Bar(thresholds=thresholds, baseline=baseline)
