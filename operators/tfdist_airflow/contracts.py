"""What each task of a train-and-evaluate step hands the next, as versioned, validated models.

    launch  --Launched-->  watch[role], stop, gate, export, the Training view  (XCom `launched`)
    launch  --roles----->  the watch tasks are mapped over this list            (return value)
    stop    --Goodput--->  the view (`tfdist.goodput.Goodput`)                  (return value)
    gate    --Gated----->  export, deploy, the view                             (return value)
    export  --Exported-->  deploy                                               (return value)
    deploy  --Deployed-->  the view                                             (return value)

The launch returns the names of the roles it started, because Airflow maps tasks over return
values only. Each model names its `contract` and `version`; a reader validates it with `pull`,
so a task never reads another's private fields.
Every tfdist task also declares its `TaskKind` as Airflow's `custom_operator_name`, which
Airflow keeps with each task instance: that is how the Training view finds a step's tasks.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from tfdist.backend import JobHandle
from tfdist.deploy import Deployment
from tfdist.gate import Blessing
from tfdist.spec import JobSpec

if TYPE_CHECKING:
    from airflow.sdk import Context

RETURN_KEY = "return_value"


class TaskKind(StrEnum):
    """What a task of the step is, as Airflow stores it (`custom_operator_name`)."""

    LAUNCH = "tfdist.launch"
    WATCH = "tfdist.watch"
    STOP = "tfdist.stop"
    GATE = "tfdist.gate"
    EXPORT = "tfdist.export"
    DEPLOY = "tfdist.deploy"


class Contract(BaseModel):
    """A task's hand-over; subclasses fix `contract` and `version`."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: ClassVar[str]
    key: ClassVar[str] = RETURN_KEY  # the XCom it is kept in


class Launched(Contract):
    """The launch's: the job as this run rendered it (`trainer.env` values redacted), and
    where its roles run."""

    name: ClassVar[str] = "launch"
    key: ClassVar[str] = "launched"
    contract: Literal["tfdist.launched"] = "tfdist.launched"
    version: Literal[1] = 1
    spec: JobSpec
    handle: JobHandle
    launched_at: float | None = None  # when its roles were started (None: by an earlier try)


class Gated(Contract):
    """The gate's: its decision on the run's model."""

    name: ClassVar[str] = "gate decision"
    contract: Literal["tfdist.gated"] = "tfdist.gated"
    version: Literal[1] = 1
    blessing: Blessing  # names the model directory it decided on


class Exported(Contract):
    """The export's: the SavedModel of the blessed checkpoint."""

    name: ClassVar[str] = "export"
    contract: Literal["tfdist.exported"] = "tfdist.exported"
    version: Literal[1] = 1
    model_dir: str
    path: str
    global_step: int


class Deployed(Contract):
    """The deploy's: the version it published."""

    name: ClassVar[str] = "deployment"
    contract: Literal["tfdist.deployed"] = "tfdist.deployed"
    version: Literal[1] = 1
    deployment: Deployment  # names the model directory it deployed from


C = TypeVar("C", bound=Contract)


class ContractMissing(RuntimeError):
    """A task found no (or no valid) hand-over from the task it depends on."""


def read(model: type[C], value: Any) -> C | None:
    """`value` as `model`, or None when it is not one (another task's XCom, an old version)."""
    try:
        return model.model_validate(value)
    except ValidationError:
        return None


def pull(context: Context, task_id: str, model: type[C]) -> C:
    """The hand-over of `task_id` in this run, validated."""
    value = context["ti"].xcom_pull(task_ids=task_id, key=model.key)
    if value is None:
        raise ContractMissing(f"{task_id} handed over no {model.name}: did it run?")
    try:
        return model.model_validate(value)
    except ValidationError as error:
        raise ContractMissing(f"{task_id} handed over an invalid {model.name}: {error}") from None
