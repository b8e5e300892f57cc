"""Bad input in a task: fail at once, with one log line that says why, and no traceback.

Airflow logs every exception a task raises with its traceback and retries it if it may, except
`SystemExit`: that it reports as the task's exit (`Task exited exit_code=2`), like a command.
`InputRefused` is such an exit; `FAIL_AT_ONCE`, the tfdist operators' default `retry_policy`,
makes it final whatever `retries` says, since no retry can fix the input.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from airflow.sdk.definitions.retry_policy import ExceptionRetryPolicy, RetryAction, RetryRule

from tfdist.backend import LaunchRefused
from tfdist.fingerprint import FingerprintMismatch
from tfdist.locations import LocationError
from tfdist.preflight import PreflightError
from tfdist.spec import SpecError

EXIT_CODE = 2
BAD_INPUT: tuple[type[Exception], ...] = (
    SpecError,
    LocationError,
    PreflightError,
    FingerprintMismatch,
    LaunchRefused,
)


class InputRefused(SystemExit):
    """A task refused its input; `reason` says what to fix (the task's log has it too)."""

    def __init__(self, reason: str) -> None:
        super().__init__(EXIT_CODE)
        self.reason = reason

    def __str__(self) -> str:
        return self.reason


FAIL_AT_ONCE = ExceptionRetryPolicy(
    rules=[
        RetryRule(
            exception=InputRefused,
            action=RetryAction.FAIL,
            reason="bad input: a retry would be refused the same way",
        )
    ]
)


@contextmanager
def refusing(log: logging.Logger | Any, *also: type[Exception]) -> Iterator[None]:
    """Turn bad input raised in the block (`BAD_INPUT`, and `also`, such as the gate's
    errors) into `InputRefused`, logging its reason once. A Cloud Storage that could not be
    reached is not bad input: that error goes on as it is."""
    refused: tuple[type[Exception], ...] = (*BAD_INPUT, *also)
    try:
        yield
    except refused as error:
        if isinstance(error, PreflightError) and error.transient:
            raise
        log.error("%s", error)
        raise InputRefused(str(error)) from None
