"""The goodput line of a step in the Training view, from its teardown task's return value."""

from __future__ import annotations

from html import escape
from typing import Any


def goodput_html(value: Any) -> str:
    """`<p id="goodput">...` from the step's teardown's return `value` (its measured goodput);
    "" when there is none yet."""
    from tfdist.goodput import Goodput

    if not isinstance(value, dict):
        return ""
    try:
        summary = Goodput.model_validate(value).summary()
    except ValueError:
        return ""
    return f'<p id="goodput">{escape(summary[0].upper() + summary[1:])}</p>'
