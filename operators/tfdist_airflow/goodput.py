"""The goodput of a run's launch, which the teardown task returns (see `tfdist.goodput`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.sdk import Context


def launch_goodput(
    context: Context, launch_task_id: str | None, log: Callable[[str], object]
) -> dict[str, Any] | None:
    """Measure the goodput of the launch `launch_task_id` handed over (also written to
    `model_dir/tfdist/goodput.json`) and log it; None if there is nothing to measure."""
    from tfdist.goodput import measure
    from tfdist.storage import storage_for
    from tfdist_airflow.contracts import ContractMissing, Launched, pull

    if launch_task_id is None:
        return None
    try:
        launched = pull(context, launch_task_id, Launched)
    except ContractMissing:  # the launch failed before it launched: nothing ran
        return None
    spec, handle = launched.spec, launched.handle
    try:
        found = measure(
            storage_for(spec.model_dir),
            spec.model_dir,
            handle.launch_id,
            launched_at=launched.launched_at,
            ended_at=time.time(),
        )
    except Exception as error:  # a report is not worth failing the teardown for
        log(f"goodput not measured: {error}")
        return None
    if found is None:
        return None
    log(found.summary())
    return found.model_dump(mode="json")
