"""After training: gate on the evaluator's final record, export the model, deploy a version.

Follows the TFX contract: the gate writes a blessing (`BLESSED` or `NOT_BLESSED` plus
`blessing.json`) to the model directory; deploy publishes `<serving_base>/<model>/<N>/` with
`saved_model.pb` last and emits an Asset event only when it really deployed.

A model that is not blessed is a result, not a failure: the run stays green, and export and
deploy each end *skipped* with the reasons as their skip message (the first lines of their
logs), so the reasons are one click away on the run's page. Airflow 3.3 gives a task no way to
set its run's note (the Task SDK sets a note only on a run it triggers), so no note is written.
Teams that want a red run instead pass `fail_when_not_blessed=True`.
"""

from __future__ import annotations

import ast
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset, AssetAlias, BaseOperator, TaskGroup, get_current_context
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from tfdist.deploy import DeployError, deploy, latest_deployment, model_root
from tfdist.locations import check_location, check_locations
from tfdist.rolelog import relay
from tfdist.spec import parse_spec
from tfdist.storage import join
from tfdist_airflow.backends import backend_from_dict, connect, storage_cluster
from tfdist_airflow.gcp import storages
from tfdist_airflow.links import DEPLOY_LINKS, STEP_LINKS
from tfdist_airflow.masking import mask_trainer_env, trainer_overrides
from tfdist_airflow.refusals import FAIL_AT_ONCE, refusing
from tfdist_airflow.roles import LaunchRolesOperator, launched_job

if TYPE_CHECKING:
    import jinja2
    from airflow.sdk import Context

    from tfdist.gate import Blessing
    from tfdist.storage import Storage

log = logging.getLogger(__name__)


def _as_mapping(thresholds: Mapping[str, Any] | str | None) -> Mapping[str, Any] | None:
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


def serving_asset(serving_base: str, model_name: str) -> Asset:
    """The model's serving directory as an Asset, named by its URI."""
    root = model_root(serving_base, model_name)
    return Asset(uri=root if "://" in root else f"file://{root}")


def deploy_outlet(serving_base: str, model_name: str) -> Asset | AssetAlias:
    """What a deploy task declares it updates.

    A serving base that still holds a template (a bucket chosen per run) is not a URI yet: the
    task then declares an AssetAlias and attaches the rendered directory to each event.
    """
    if "{{" in serving_base:
        return AssetAlias(name=f"tfdist-serving-{model_name}")
    return serving_asset(serving_base, model_name)


def decide_blessing(
    launch_task_id: str,
    thresholds: Mapping[str, Any] | str | None,
    serving_base: str,
    model_name: str,
    gcp_conn_id: str | None = None,
) -> dict[str, Any] | bool:
    """Decide, write the blessing, push it to XCom `blessing`; return it (False when not
    blessed). Bad thresholds or serving base fail the task at once (`tfdist_airflow.refusals`)."""
    blessing = _decide(launch_task_id, thresholds, serving_base, model_name, gcp_conn_id)
    return blessing.model_dump(mode="json") if blessing.blessed else False


def _decide(
    launch_task_id: str,
    thresholds: Mapping[str, Any] | str | None,
    serving_base: str,
    model_name: str,
    gcp_conn_id: str | None,
) -> Blessing:
    from tfdist.gate import GateError, GateSpec, decide, read_final_eval, write_blessing

    context = get_current_context()
    spec, _ = launched_job(context, launch_task_id)
    storage_of = storages(gcp_conn_id)
    storage = storage_of(spec.model_dir)
    with refusing(log, GateError, DeployError):
        gate = GateSpec.from_params(_as_mapping(thresholds))
        serving_base = check_location("serving_base", serving_base, relative_ok=False)
        record = read_final_eval(
            storage,
            spec.model_dir,
            max_steps=spec.train_spec.max_steps,
            eval_dir_name=spec.eval_spec.dir_name,
        )
        deployed = latest_deployment(storage_of(serving_base), serving_base, model_name)
        blessing = decide(
            record,
            gate,
            deployed.baseline() if deployed else None,
            now=time.time(),
            model_dir=spec.model_dir,
        )
    write_blessing(storage, spec.model_dir, blessing)
    shown = ", ".join(f"{k} {v:.4f}" for k, v in sorted(blessing.metrics.items()))
    log.info("final eval at step %d: %s", blessing.global_step, shown)
    for note in blessing.notes:
        log.info("note: %s", note)
    context["ti"].xcom_push(key="blessing", value=blessing.model_dump(mode="json"))
    if blessing.blessed:
        log.info("BLESSED (baseline: %s)", f"version {deployed.version}" if deployed else "none")
    else:
        for reason in blessing.reasons:
            log.warning("NOT BLESSED: %s", reason)
        log.warning("the blessing is in %s/blessing", spec.model_dir)
    return blessing


def not_blessed(blessing: Blessing) -> str:
    """Why a model is not blessed, in one line."""
    return f"not blessed: {'; '.join(blessing.reasons) or 'no reason recorded'}"


class BlessingGateOperator(BaseOperator):
    """Decides whether the model of this run is blessed and writes the blessing.

    A model that is not blessed leaves the run green: export and deploy then skip, each with
    the reasons as its skip message. With `fail_when_not_blessed`, the gate fails instead
    (no retry), so do export and deploy (upstream failed), and the run ends failed.

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

    def execute(self, context: Context) -> dict[str, Any]:
        blessing = _decide(
            self.launch_task_id,
            self.thresholds,
            self.serving_base,
            self.model_name,
            self.gcp_conn_id,
        )
        if not blessing.blessed and self.fail_when_not_blessed:
            raise AirflowFailException(f"{not_blessed(blessing)} (fail_when_not_blessed)")
        if not blessing.blessed:
            self.log.warning("export and deploy will skip: %s", not_blessed(blessing))
        return blessing.model_dump(mode="json")


def _blessing(
    context: Context, launch_task_id: str, storage_of: Callable[[str], Storage], skipped: str
) -> tuple[Any, Blessing]:
    """The run's blessing; a skip naming the reasons (and logged first) when not blessed."""
    from tfdist.gate import read_blessing

    spec, _ = launched_job(context, launch_task_id)
    blessing = read_blessing(storage_of(spec.model_dir), spec.model_dir)
    if blessing is None:
        why = f"no blessing in {spec.model_dir}: the gate did not decide"
    elif not blessing.blessed:
        why = f"{not_blessed(blessing)}; the blessing is in {spec.model_dir}/blessing"
    else:
        return spec, blessing
    log.warning("%s: %s", skipped, why)
    raise AirflowSkipException(f"{skipped}: {why}")


class ExportModelOperator(BaseOperator):
    """Exports the evaluated final checkpoint as a SavedModel, in the trainer environment.

    Writes `<model_dir>/export/<global_step>/`; a rerun finds it there and does nothing.
    The export process uses the trainer's credentials; `gcp_conn_id` is for reading the
    blessing.

    :param job: the job spec as the launch task got it, for its `trainer.env`.
    :param trainer_overrides: the launch task's overrides of `trainer` fields, rendered here
        as there, so the export runs with the roles' real `trainer.env` (XCom keeps only its
        keys); each value is masked as soon as it is rendered. (templated)
    """

    template_fields: Sequence[str] = ("trainer_overrides",)
    ui_color = "#bbdefb"

    def __init__(
        self,
        *,
        launch_task_id: str,
        backend: dict[str, Any],
        job: dict[str, Any],
        trainer_overrides: dict[str, Any] | None = None,
        gcp_conn_id: str | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.launch_task_id = launch_task_id
        self.backend = backend
        self.job = job
        self.trainer_overrides = trainer_overrides or {}
        self.gcp_conn_id = gcp_conn_id

    def render_template_fields(
        self, context: Context, jinja_env: jinja2.Environment | None = None
    ) -> None:
        super().render_template_fields(context, jinja_env)
        mask_trainer_env(self.job, self.trainer_overrides)

    def trainer_env(self) -> dict[str, str]:
        """The roles' `trainer.env`: the job's, with the rendered trainer overrides."""
        return dict(parse_spec(self.job).with_overrides(self.trainer_overrides).trainer.env)

    def execute(self, context: Context) -> str:
        storage_of = storages(self.gcp_conn_id)
        spec, blessing = _blessing(context, self.launch_task_id, storage_of, "not exported")
        _, handle = launched_job(context, self.launch_task_id)
        out = join(spec.model_dir, "export", str(blessing.global_step))
        # The trainer's own environment, as its roles had it (XCom keeps only the keys).
        roles_env = self.trainer_env() if spec.trainer.env else {}
        env = {**roles_env, "TFDIST_JOB": spec.model_dump_json(), "TF_CPP_MIN_LOG_LEVEL": "2"}
        self.log.info("exporting %s to %s", blessing.checkpoint_path, out)
        self._export = (handle, blessing.checkpoint_path)
        connect(self.backend).export(
            handle,
            spec,
            blessing.checkpoint_path,
            out,
            env,
            lambda line: relay(self.log, "export", line),
        )
        return out

    def on_kill(self) -> None:
        """A killed export task stops its export (on Kubernetes: deletes the export pod)."""
        export = getattr(self, "_export", None)
        if export is not None:
            connect(self.backend).stop_export(*export)


class DeployModelOperator(BaseOperator):
    """Deploys the exported SavedModel as the next version under `serving_base/model_name`.

    Skips (no Asset event) when the model is not blessed (it runs after a skipped export to
    say so), or when a model trained on newer data is already deployed, as after a backfill of
    an old date; a rerun of a deployed run returns its version and adds none.

    :param serving_base: the TF Serving base directory; it may be in another store than the
        export (a local model_dir deployed to gs://, or the reverse). (templated)
    :param gcp_conn_id: the Airflow connection for gs:// paths; default: Application
        Default Credentials.
    """

    template_fields: Sequence[str] = ("serving_base",)
    ui_color = "#b2dfdb"
    operator_extra_links = DEPLOY_LINKS

    def __init__(
        self,
        *,
        launch_task_id: str,
        export_task_id: str,
        serving_base: str,
        model_name: str,
        gcp_conn_id: str | None = None,
        **kwargs: Any,
    ):
        kwargs.setdefault("outlets", [deploy_outlet(serving_base, model_name)])
        kwargs.setdefault("retry_policy", FAIL_AT_ONCE)
        kwargs.setdefault("trigger_rule", "none_failed")  # after a skipped export: say why
        super().__init__(**kwargs)
        self.launch_task_id = launch_task_id
        self.export_task_id = export_task_id
        self.serving_base = serving_base
        self.model_name = model_name
        self.gcp_conn_id = gcp_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        storage_of = storages(self.gcp_conn_id)
        _, blessing = _blessing(context, self.launch_task_id, storage_of, "not deployed")
        export_dir = context["ti"].xcom_pull(task_ids=self.export_task_id)
        dag_run = context["dag_run"]
        trained_on = dag_run.data_interval_end or dag_run.run_after
        with refusing(self.log, DeployError):
            serving_base = check_location("serving_base", self.serving_base, relative_ok=False)
            result = deploy(
                storage_of(serving_base),
                export_dir=export_dir,
                serving_base=serving_base,
                model_name=self.model_name,
                run_id=context["run_id"],
                blessing=blessing,
                now=time.time(),
                trained_on=trained_on.timestamp() if trained_on else None,
                export_storage=storage_of(export_dir),
            )
        if result.skipped or result.deployment is None:
            raise AirflowSkipException(result.reason)
        deployment = result.deployment
        self.log.info("%s: %s", result.status.value, result.reason)
        self.log.info(
            "serving %s version %d from %s", self.model_name, deployment.version, deployment.path
        )
        extra: dict[str, Any] = {
            "version": deployment.version,
            "path": deployment.path,
            "run_id": deployment.run_id,
            "metrics": deployment.metrics,
        }
        served = serving_asset(self.serving_base, self.model_name)
        for outlet in self.outlets:
            if isinstance(outlet, AssetAlias):
                context["outlet_events"][outlet].add(served, extra=extra)
            else:
                context["outlet_events"][outlet].extra = extra
        return deployment.model_dump(mode="json")


def gate_export_deploy(
    training: TaskGroup,
    *,
    thresholds: Mapping[str, Any] | str | None,
    serving_base: str,
    model_name: str,
    fail_when_not_blessed: bool = False,
) -> tuple[BlessingGateOperator, ExportModelOperator, DeployModelOperator]:
    """`gate >> export >> deploy` after a `train_and_evaluate` group.

    The group's launch task also checks that `serving_base` can be written, before any role
    starts; all three tasks use the group's `gcp_conn_id`. A model that is not blessed leaves
    the run green (export and deploy skip, naming the reasons), or fails the run with
    `fail_when_not_blessed=True`.
    """
    launch = training.children[f"{training.group_id}.launch"]
    assert isinstance(launch, LaunchRolesOperator)
    check_locations(
        {"serving_base": serving_base},
        relative_ok=False,
        cluster=storage_cluster(backend_from_dict(launch.backend)),
    )
    launch.preflight_paths = {**launch.preflight_paths, "serving_base": serving_base}
    gcp_conn_id = launch.gcp_conn_id
    if not launch.job.get("cluster", {}).get("evaluator"):
        raise ValueError(
            f"{training.group_id}: the gate reads the evaluator's results; add "
            "`evaluator: 1` to the job's cluster"
        )
    gate = BlessingGateOperator(
        task_id="gate",
        launch_task_id=launch.task_id,
        thresholds=thresholds,
        serving_base=serving_base,
        model_name=model_name,
        gcp_conn_id=gcp_conn_id,
        fail_when_not_blessed=fail_when_not_blessed,
    )
    export = ExportModelOperator(
        task_id="export",
        launch_task_id=launch.task_id,
        backend=launch.backend,
        job=launch.job,
        trainer_overrides=trainer_overrides(launch.overrides),
        gcp_conn_id=gcp_conn_id,
    )
    deploy_task = DeployModelOperator(
        task_id="deploy",
        launch_task_id=launch.task_id,
        export_task_id=export.task_id,
        serving_base=serving_base,
        model_name=model_name,
        gcp_conn_id=gcp_conn_id,
    )
    training >> gate >> export >> deploy_task
    return gate, export, deploy_task
