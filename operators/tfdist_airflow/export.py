"""Export: the blessed checkpoint as a SavedModel, in the trainer's own environment."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from tfdist.rolelog import relay
from tfdist.spec import parse_spec
from tfdist.storage import join
from tfdist_airflow.backends import connect
from tfdist_airflow.contracts import Exported, Launched, TaskKind, pull
from tfdist_airflow.gate import blessed
from tfdist_airflow.masking import mask_trainer_env

if TYPE_CHECKING:
    import jinja2
    from airflow.sdk import Context

log = logging.getLogger(__name__)


class ExportModelOperator(BaseOperator):
    """Exports the evaluated final checkpoint as a SavedModel, in the trainer environment.

    Writes `<model_dir>/export/<global_step>/` and returns it (`Exported`); a rerun finds it
    there and does nothing. Skips, naming the reasons, when the gate did not bless the model.

    :param launch_task_id: the train-and-evaluate step's launch task.
    :param gate_task_id: the gate that decided on this run's model.
    :param backend: where roles run, as a dict (see `tfdist_airflow.backends`): the export
        runs there too.
    :param job: the job spec as the launch task got it, for its `trainer.env`.
    :param trainer_overrides: the launch task's overrides of `trainer` fields, rendered here
        as there, so the export runs with the roles' real `trainer.env` (XCom keeps only its
        keys); each value is masked as soon as it is rendered. (templated)
    """

    template_fields: Sequence[str] = ("trainer_overrides",)
    ui_color = "#bbdefb"
    custom_operator_name = TaskKind.EXPORT

    def __init__(
        self,
        *,
        launch_task_id: str,
        gate_task_id: str,
        backend: dict[str, Any],
        job: dict[str, Any],
        trainer_overrides: dict[str, Any] | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.launch_task_id = launch_task_id
        self.gate_task_id = gate_task_id
        self.backend = backend
        self.job = job
        self.trainer_overrides = trainer_overrides or {}

    def render_template_fields(
        self, context: Context, jinja_env: jinja2.Environment | None = None
    ) -> None:
        super().render_template_fields(context, jinja_env)
        mask_trainer_env(self.job, self.trainer_overrides)

    def trainer_env(self) -> dict[str, str]:
        """The roles' `trainer.env`: the job's, with the rendered trainer overrides."""
        return dict(parse_spec(self.job).with_overrides(self.trainer_overrides).trainer.env)

    def execute(self, context: Context) -> dict[str, Any]:
        blessing = blessed(context, self.gate_task_id, "not exported", log)
        launched = pull(context, self.launch_task_id, Launched)
        spec, handle = launched.spec, launched.handle
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
        exported = Exported(model_dir=spec.model_dir, path=out, global_step=blessing.global_step)
        return exported.model_dump(mode="json")

    def on_kill(self) -> None:
        """A killed export task stops its export (on Kubernetes: deletes the export pod)."""
        export = getattr(self, "_export", None)
        if export is not None:
            connect(self.backend).stop_export(*export)
