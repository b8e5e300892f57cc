"""The digits trainer, except that a worker fails to build its model.

`CRASH_WITH` picks how: `error` (an exception, the default), `exit-3` (`sys.exit(3)`) or
`interrupt` (`KeyboardInterrupt`). In local mode the one process is a worker too.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from tfdist.examples.digits import build_model as _build_model
from tfdist.examples.digits import (
    build_optimizer,
    eval_input_fn,
    eval_metrics,
    loss_fn,
    train_input_fn,
)
from tfdist.runtime.contract import RunContext

__all__ = [
    "build_model",
    "build_optimizer",
    "eval_input_fn",
    "eval_metrics",
    "loss_fn",
    "train_input_fn",
]


def build_model(ctx: RunContext) -> Any:
    if ctx.task_type == "worker":
        how = os.environ.get("CRASH_WITH", "error")
        if how == "exit-3":
            sys.exit(3)
        if how == "interrupt":
            raise KeyboardInterrupt
        raise RuntimeError("worker model is broken on purpose")
    return _build_model(ctx)
