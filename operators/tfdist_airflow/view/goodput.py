"""The goodput line of a step in the Training view, from its teardown task's return value."""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from typing import Any


def goodput_html(xcoms: Mapping[tuple[str, str], Any], group: str) -> str:
    """`<p id="goodput">...` once the step's teardown measured it, else ""."""
    from tfdist.goodput import Goodput

    value = xcoms.get((f"{group}.stop" if group else "stop", "return_value"))
    if not isinstance(value, dict):
        return ""
    try:
        summary = Goodput.model_validate(value).summary()
    except ValueError:
        return ""
    return f'<p id="goodput">{escape(summary[0].upper() + summary[1:])}</p>'
