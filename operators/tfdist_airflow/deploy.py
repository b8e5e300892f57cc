"""Deploy: the exported SavedModel as the next version under `serving_base/model_name`.

Deploy publishes `<serving_base>/<model>/<N>/` with `saved_model.pb` last (`tfdist.deploy`)
and emits an Asset event only when it really deployed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset, AssetAlias, BaseOperator
from airflow.sdk.exceptions import AirflowSkipException

from tfdist.deploy import DeployError, deploy, model_root
from tfdist.locations import check_location
from tfdist_airflow.contracts import Deployed, Exported, TaskKind, pull
from tfdist_airflow.gate import blessed
from tfdist_airflow.gcp import storages
from tfdist_airflow.links import DEPLOY_LINKS
from tfdist_airflow.refusals import FAIL_AT_ONCE, refusing

if TYPE_CHECKING:
    from airflow.sdk import Context

    from tfdist.spec import JobSpec

log = logging.getLogger(__name__)


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


class DeployModelOperator(BaseOperator):
    """Deploys the exported SavedModel as the next version under `serving_base/model_name`
    and returns it (`Deployed`).

    Skips (no Asset event) when the model is not blessed (it runs after a skipped export to
    say so), or when a model trained on newer data is already deployed, as after a backfill of
    an old date; a rerun of a deployed run returns its version and adds none. The step's
    launch checks that `serving_base` can be written before any role starts
    (`before_launch`).

    :param gate_task_id: the gate that decided on this run's model.
    :param export_task_id: the export of this run's model.
    :param serving_base: the TF Serving base directory; it may be in another store than the
        export (a local model_dir deployed to gs://, or the reverse). (templated)
    :param gcp_conn_id: the Airflow connection for gs:// paths; default: Application
        Default Credentials.
    """

    template_fields: Sequence[str] = ("serving_base",)
    ui_color = "#b2dfdb"
    custom_operator_name = TaskKind.DEPLOY
    operator_extra_links = DEPLOY_LINKS

    def __init__(
        self,
        *,
        gate_task_id: str,
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
        self.gate_task_id = gate_task_id
        self.export_task_id = export_task_id
        self.serving_base = serving_base
        self.model_name = model_name
        self.gcp_conn_id = gcp_conn_id

    def before_launch(self, spec: JobSpec, context: Context) -> dict[str, str]:
        """The launch's question, before any role starts: where this task will write."""
        return {"serving_base": str(self.render_template(self.serving_base, context))}

    def execute(self, context: Context) -> dict[str, Any]:
        blessing = blessed(context, self.gate_task_id, "not deployed", log)
        exported = pull(context, self.export_task_id, Exported)
        storage_of = storages(self.gcp_conn_id)
        dag_run = context["dag_run"]
        trained_on = dag_run.data_interval_end or dag_run.run_after
        with refusing(self.log, DeployError):
            serving_base = check_location("serving_base", self.serving_base, relative_ok=False)
            result = deploy(
                storage_of(serving_base),
                export_dir=exported.path,
                serving_base=serving_base,
                model_name=self.model_name,
                run_id=context["run_id"],
                blessing=blessing,
                now=time.time(),
                trained_on=trained_on.timestamp() if trained_on else None,
                export_storage=storage_of(exported.path),
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
        return Deployed(deployment=deployment).model_dump(mode="json")
