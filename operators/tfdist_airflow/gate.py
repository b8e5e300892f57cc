"""The gate: is this run's model good enough to export and deploy?

Follows the TFX contract: the gate writes a blessing (`BLESSED` or `NOT_BLESSED` plus
`blessing.json`) to the model directory and hands it to export and deploy (`Gated`).

A model that is not blessed is a result, not a failure: the run stays green, and export and
deploy each end *skipped* with the reasons as their skip message (the first lines of their
logs), so the reasons are one click away on the run's page. Airflow 3.3 gives a task no way to
set its run's note (the Task SDK sets a note only on a run it triggers), so no note is written.
Teams that want a red run instead pass `fail_when_not_blessed=True`.
"""

from __future__ import annotations

import ast
import json
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from tfdist.deploy import DeployError, latest_deployment
from tfdist.locations import check_location
from tfdist.spec import SpecError
from tfdist_airflow.contracts import Gated, Launched, TaskKind, pull
from tfdist_airflow.gcp import storages
from tfdist_airflow.links import STEP_LINKS
from tfdist_airflow.refusals import FAIL_AT_ONCE, refusing

if TYPE_CHECKING:
    from logging import Logger

    from airflow.sdk import Context

    from tfdist.gate import Blessing
    from tfdist.spec import JobSpec


def thresholds_mapping(thresholds: Mapping[str, Any] | str | None) -> Mapping[str, Any] | None:
    """Thresholds as given, or rendered from a template (JSON or a Python literal)."""
    from tfdist.gate import GateError

    if thresholds is None or isinstance(thresholds, Mapping):
        return thresholds
    try:
        value = json.loads(thresholds)
    except json.JSONDecodeError:
        try:
            value = ast.literal_eval(thresholds)
        except (ValueError, SyntaxError):
            value = thresholds
    if not isinstance(value, Mapping):
        raise GateError(
            f"gate thresholds: expected a mapping of metric name to threshold, such as "
            f'{{"accuracy": {{"min": 0.9}}}}, got {value!r}'
        )
    return value


def not_blessed(blessing: Blessing) -> str:
    """Why a model is not blessed, in one line."""
    return f"not blessed: {'; '.join(blessing.reasons) or 'no reason recorded'}"


class BlessingGateOperator(BaseOperator):
    """Decides whether the model of this run is blessed, writes the blessing to the model
    directory and returns it (`Gated`).

    A model that is not blessed leaves the run green: export and deploy then skip, each with
    the reasons as its skip message. With `fail_when_not_blessed`, the gate fails instead
    (no retry), so do export and deploy (upstream failed), and the run ends failed. Bad
    thresholds or serving base fail the task at once (`tfdist_airflow.refusals`).

    :param launch_task_id: the train-and-evaluate step's launch task.
    :param thresholds: per metric, e.g. `{"accuracy": {"min": 0.9}, "loss": {"max": 0.3,
        "change": {"direction": "lower_is_better", "absolute": 0.05}}}`; change thresholds
        compare with the currently deployed version. No thresholds: never blessed. (templated)
    :param serving_base: where deployed versions live (for the baseline). (templated)
    :param model_name: the model's directory under `serving_base`.
    :param gcp_conn_id: the Airflow connection for gs:// paths (see `tfdist_airflow.gcp`);
        default: Application Default Credentials.
    :param fail_when_not_blessed: fail the gate (and the run) when the model is not blessed.
    """

    template_fields: Sequence[str] = ("thresholds", "serving_base", "model_name")
    ui_color = "#fff9c4"
    custom_operator_name = TaskKind.GATE
    operator_extra_links = STEP_LINKS

    def __init__(
        self,
        *,
        launch_task_id: str,
        thresholds: Mapping[str, Any] | str | None,
        serving_base: str,
        model_name: str,
        gcp_conn_id: str | None = None,
        fail_when_not_blessed: bool = False,
        **kwargs: Any,
    ):
        super().__init__(**{"retry_policy": FAIL_AT_ONCE, **kwargs})
        self.launch_task_id = launch_task_id
        self.thresholds = thresholds
        self.serving_base = serving_base
        self.model_name = model_name
        self.gcp_conn_id = gcp_conn_id
        self.fail_when_not_blessed = fail_when_not_blessed

    def before_launch(self, spec: JobSpec, context: Context) -> dict[str, str]:
        """The launch's question, before any role starts: the gate reads the evaluator's
        results, so the job (as this run sized it) needs one."""
        if not spec.cluster.evaluator:
            raise SpecError(
                f"cluster.evaluator: task {self.task_id} gates on the evaluator's results and "
                "this run's job has no evaluator; set `evaluator: 1` (in the spec or overrides)"
            )
        return {}

    def execute(self, context: Context) -> dict[str, Any]:
        blessing = self._decide(context)
        if not blessing.blessed and self.fail_when_not_blessed:
            raise AirflowFailException(f"{not_blessed(blessing)} (fail_when_not_blessed)")
        if not blessing.blessed:
            self.log.warning("export and deploy will skip: %s", not_blessed(blessing))
        return Gated(blessing=blessing).model_dump(mode="json")

    def _decide(self, context: Context) -> Blessing:
        from tfdist.gate import GateError, GateSpec, decide, read_final_eval, write_blessing

        spec = pull(context, self.launch_task_id, Launched).spec
        storage_of = storages(self.gcp_conn_id)
        storage = storage_of(spec.model_dir)
        with refusing(self.log, GateError, DeployError):
            gate = GateSpec.from_params(thresholds_mapping(self.thresholds))
            serving_base = check_location("serving_base", self.serving_base, relative_ok=False)
            record = read_final_eval(
                storage,
                spec.model_dir,
                max_steps=spec.train_spec.max_steps,
                eval_dir_name=spec.eval_spec.dir_name,
            )
            deployed = latest_deployment(storage_of(serving_base), serving_base, self.model_name)
            blessing = decide(
                record,
                gate,
                deployed.baseline() if deployed else None,
                now=time.time(),
                model_dir=spec.model_dir,
            )
        write_blessing(storage, spec.model_dir, blessing)
        shown = ", ".join(f"{k} {v:.4f}" for k, v in sorted(blessing.metrics.items()))
        self.log.info("final eval at step %d: %s", blessing.global_step, shown)
        for note in blessing.notes:
            self.log.info("note: %s", note)
        if blessing.blessed:
            baseline = f"version {deployed.version}" if deployed else "none"
            self.log.info("BLESSED (baseline: %s)", baseline)
        else:
            for reason in blessing.reasons:
                self.log.warning("NOT BLESSED: %s", reason)
            self.log.warning("the blessing is in %s/blessing", spec.model_dir)
        return blessing


def blessed(context: Context, gate_task_id: str, skipped: str, log: Logger) -> Blessing:
    """The gate's blessing of this run's model; a skip naming the reasons (logged first) when
    the model is not blessed."""
    from airflow.sdk.exceptions import AirflowSkipException

    blessing = pull(context, gate_task_id, Gated).blessing
    if blessing.blessed:
        return blessing
    why = f"{not_blessed(blessing)}; the blessing is in {blessing.model_dir}/blessing"
    log.warning("%s: %s", skipped, why)
    raise AirflowSkipException(f"{skipped}: {why}")
