"""Bad input in a task: one logged reason, an exit Airflow neither retries nor shows a
traceback for; other errors go on as they are."""

from __future__ import annotations

import logging

import pytest

from tfdist.gate import GateError
from tfdist.locations import LocationError
from tfdist.preflight import PreflightError
from tfdist.spec import SpecError
from tfdist_airflow.refusals import FAIL_AT_ONCE, InputRefused, refusing

LOG = logging.getLogger("tfdist.test")


@pytest.mark.parametrize(
    "error",
    [
        SpecError("invalid job spec:\n  train_spec.max_steps: Input should be greater than 0"),
        LocationError("model_dir_base: 'gs://' names no bucket; write gs://BUCKET/PREFIX"),
        PreflightError("bucket b does not exist; create it or fix model_dir (gs://b/m)"),
    ],
)
def test_bad_input_becomes_an_exit_with_its_reason_logged_once(
    error: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR), pytest.raises(InputRefused) as refused, refusing(LOG):
        raise error
    assert isinstance(refused.value, SystemExit) and refused.value.code == 2
    assert refused.value.reason == str(refused.value) == str(error)
    assert [record.getMessage() for record in caplog.records] == [str(error)]
    assert refused.value.__suppress_context__  # no chained traceback either


@pytest.mark.parametrize(
    "error",
    [
        PreflightError("cannot reach Cloud Storage to check model_dir", transient=True),
        RuntimeError("the launch failed"),
        GateError("gate thresholds name auc"),  # the gate's own errors: only where named
    ],
)
def test_other_errors_go_on_as_they_are(error: Exception) -> None:
    with pytest.raises(type(error)), refusing(LOG):
        raise error


def test_the_gate_names_its_own_errors() -> None:
    with pytest.raises(InputRefused, match="gate thresholds name auc"), refusing(LOG, GateError):
        raise GateError("gate thresholds name auc")


def test_the_retry_policy_fails_a_refusal_at_once_and_leaves_the_rest() -> None:
    refusal = FAIL_AT_ONCE.evaluate(InputRefused("x"), try_number=1, max_tries=3)
    other = FAIL_AT_ONCE.evaluate(RuntimeError("x"), try_number=1, max_tries=3)
    assert (refusal.action.value, other.action.value) == ("fail", "default")
    assert FAIL_AT_ONCE.serialize()["rules"][0]["exception"] == (
        "tfdist_airflow.refusals.InputRefused"
    )
