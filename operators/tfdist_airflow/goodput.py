"""The goodput of a run's launch, for the teardown task's XCom (see `tfdist.goodput`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.sdk import Context

GOODPUT_KEY = "goodput"


def launch_goodput(
    context: Context, launch_task_id: str | None, log: Callable[[str], object]
) -> dict[str, Any] | None:
    """Measure the goodput of the launch `launch_task_id` pushed (also written to
    `model_dir/tfdist/goodput.json`) and log it; None if there is nothing to measure."""
    from tfdist.backend import JobHandle
    from tfdist.goodput import measure
    from tfdist.spec import JobSpec
    from tfdist.storage import storage_for

    pushed = context["ti"].xcom_pull(task_ids=launch_task_id) if launch_task_id else None
    if not pushed:
        return None
    spec = JobSpec.model_validate(pushed["spec"])
    handle = JobHandle.model_validate(pushed["handle"])
    try:
        found = measure(
            storage_for(spec.model_dir),
            spec.model_dir,
            handle.launch_id,
            launched_at=pushed.get("launched_at"),
            ended_at=time.time(),
        )
    except Exception as error:  # a report is not worth failing the teardown for
        log(f"goodput not measured: {error}")
        return None
    if found is None:
        return None
    log(found.summary())
    return found.model_dump(mode="json")
