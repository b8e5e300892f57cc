"""A parameter-server worker's progress lines, read from the record the chief rewrites: a
record caught half-replaced (on gs:// a rename is a copy, read in ranges) is skipped, never
fatal to the worker. Real TensorFlow file access (`tf.io.gfile`), on local disk."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from tfdist.records import RoleProgress, progress_name

pytestmark = pytest.mark.integration


def test_a_record_replaced_while_read_is_skipped_then_shown(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from tfdist.runtime.servers import ProgressLog

    path = Path(progress_name(str(tmp_path), "worker-1"))
    path.parent.mkdir(parents=True)
    record = RoleProgress(
        role="worker-1",
        unit="closures",
        count=99,
        rate=41.25,
        global_step=200,
        max_steps=400,
        timestamp=0.0,
        launch_id="abc",
        reported_by="chief-0",
    )
    whole = json.dumps(record.model_dump(mode="json"), indent=1)
    progress = ProgressLog(str(tmp_path), "worker-1", "abc")
    caplog.set_level(logging.INFO, logger="tfdist.serve")

    for torn in (whole[: len(whole) // 2], whole.replace('"count": 99', '"count": 99 "x"')):
        path.write_text(torn)
        progress.maybe_log(force=True)
    assert "ran" not in caplog.text

    path.write_text(whole)
    progress.maybe_log(force=True)
    assert "step 200/400: ran 99 steps here (41.2 steps/s)" in caplog.text
