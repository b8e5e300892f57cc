"""Storage locations (`model_dir`, `data_dir`, `model_dir_base`, `serving_base`): what is accepted.

A location is a local path or `gs://BUCKET/PREFIX`, with a bucket name that follows Cloud
Storage's naming rules. Anything else (`gs://`, `gs:/bucket`, `GS://bucket`, `s3://...`) is
refused here, naming the field, the value and the accepted forms, before anything is written:
TensorFlow would otherwise read `gs:/bucket/x` as a local folder named `gs:`.

A relative local path resolves against the directory `tfdist` runs in; an Airflow task has no
such directory of its own, so there only absolute paths are accepted. Cluster backends accept
only storage that every pod shares (`require_shared_storage`).

Pure: no file or network access.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tfdist.spec import JobSpec

GCS_SCHEME = "gs://"
ACCEPTED = "use a local path such as /data/models, or gs://BUCKET/PREFIX"
BUCKET_RULES = (
    "Cloud Storage bucket names have 3-63 characters (up to 222 with dots, 63 between dots): "
    "lowercase letters, digits, `-`, `_` and `.`, starting and ending with a letter or digit"
)
STORAGE_FIELDS = ("model_dir", "data_dir", "model_dir_base", "serving_base")

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
_BUCKET_CHAR = re.compile(r"[a-z0-9._-]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_AVOIDED_IN_OBJECTS = "#[]*?"  # Cloud Storage's naming guide: wildcards and URL fragments
_GOOGLE_LOOKALIKE = re.compile(r"g[o0][o0]g[l1]e")


class LocationError(ValueError):
    """A storage location that cannot be used; the message names the field and the fix."""


def is_templated(value: str) -> bool:
    """A value Airflow renders per run: it is checked once rendered, in the task."""
    return "{{" in value or "{%" in value


def is_gcs(value: str) -> bool:
    return value.startswith(GCS_SCHEME)


def bucket_problem(bucket: str) -> str | None:
    """Why `bucket` is not a valid Cloud Storage bucket name, or None."""
    dotted = "." in bucket
    if not 3 <= len(bucket) <= (222 if dotted else 63):
        return f"bucket name {bucket!r} has {len(bucket)} characters"
    if bucket != bucket.lower():
        return f"bucket name {bucket!r} has uppercase letters"
    odd = sorted({char for char in bucket if not _BUCKET_CHAR.fullmatch(char)})
    if odd:
        return f"bucket name {bucket!r} has {' '.join(repr(char) for char in odd)}"
    if not (bucket[0] + bucket[-1]).isalnum():
        return f"bucket name {bucket!r} does not start and end with a letter or digit"
    if dotted and any(not 1 <= len(part) <= 63 for part in bucket.split(".")):
        return f"bucket name {bucket!r} has an empty or over-long part between dots"
    try:
        ipaddress.IPv4Address(bucket)
    except ValueError:
        pass
    else:
        return f"bucket name {bucket!r} is an IP address"
    if bucket.startswith("goog") or _GOOGLE_LOOKALIKE.search(bucket):
        return f"bucket name {bucket!r} starts with `goog` or contains `google`"
    return None


def _gcs_problem(value: str) -> str | None:
    bucket, _, prefix = value[len(GCS_SCHEME) :].partition("/")
    if not bucket:
        return "names no bucket; write gs://BUCKET/PREFIX"
    problem = bucket_problem(bucket)
    if problem is not None:
        return f"{problem}; {BUCKET_RULES}"
    segments = prefix.rstrip("/").split("/") if prefix.rstrip("/") else []
    if "" in segments:
        return "has an empty path segment (`//`); Cloud Storage would keep it in object names"
    if any(segment in (".", "..") for segment in segments):
        return "has a `.` or `..` segment; object names in Cloud Storage are not resolved"
    avoided = sorted({char for char in prefix if char in _AVOIDED_IN_OBJECTS})
    if avoided:
        return f"has {' '.join(avoided)} in its prefix, which Cloud Storage tools read as patterns"
    if len(prefix.encode()) > 900:
        return "has a prefix over 900 bytes; object names below it would pass Cloud Storage's 1024"
    return None


def location_problem(value: str, *, relative_ok: bool = True) -> str | None:
    """Why `value` is not a storage location, or None. The text names the value and the fix.

    :param relative_ok: whether a relative local path is accepted (it resolves against the
        working directory of the process that reads it).
    """
    if not value.strip():
        return f"is empty; {ACCEPTED}"
    shown = repr(value)
    control = _CONTROL.search(value)
    if control:
        return f"{shown} has a control character ({control.group()!r}); {ACCEPTED}"
    scheme = _SCHEME.match(value)
    if scheme and is_gcs(value):
        problem = _gcs_problem(value)
        return f"{shown} {problem}" if problem else None
    if scheme:
        name = scheme.group(1)
        if value.lower().startswith(GCS_SCHEME):
            why = "the scheme is written `gs://`, in lowercase"
        elif value[scheme.end() :].startswith("//"):
            why = f"{name}:// storage is not supported"
        else:
            why = (
                f"starts like a URI (`{name}:`) but is not one; a local folder named `{name}:` "
                f"is written ./{value}"
            )
        return f"{shown}: {why}; {ACCEPTED}"
    if value.startswith("~"):
        return f"{shown}: `~` is not expanded here; write the full path"
    if not value.startswith("/") and not relative_ok:
        return (
            f"{shown} is a relative path, which would resolve against whichever directory the "
            "Airflow task runs in; write an absolute path, or gs://BUCKET/PREFIX"
        )
    return None


def check_location(field: str, value: str, *, relative_ok: bool = True) -> str:
    """`value` without a trailing `/`, or `LocationError` naming `field`, the value and the fix."""
    problem = location_problem(value, relative_ok=relative_ok)
    if problem is not None:
        raise LocationError(f"{field}: {problem}")
    return value.rstrip("/") or "/"


def check_locations(
    locations: Mapping[str, str | None], *, relative_ok: bool = True, cluster: str | None = None
) -> None:
    """`check_location` for each set, untemplated value; one error listing every bad field.

    :param cluster: the name of a cluster backend (e.g. `kubernetes`) the locations are for:
        local paths are refused too (`shared_storage_problems`).
    """
    problems = []
    for field, value in locations.items():
        if value is None or is_templated(value):
            continue
        problem = location_problem(value, relative_ok=relative_ok)
        if problem is not None:
            problems.append(f"{field}: {problem}")
        elif cluster is not None:
            problems += shared_storage_problems({field: value}, cluster)
    if problems:
        raise LocationError("\n".join(problems))


def shared_storage_problems(locations: Mapping[str, str | None], backend: str) -> list[str]:
    """The fields that hold a local path, which the pods of a cluster backend cannot share."""
    return [
        f"{field}: {value!r} is a local path, but on the {backend} backend every pod has its "
        "own disk: the evaluator, the gate and the export would not see the chief's "
        "checkpoints, and a restarted pod would start over; use gs://BUCKET/PREFIX"
        for field, value in locations.items()
        if value is not None and not is_templated(value) and not is_gcs(value)
    ]


def require_shared_storage(
    spec: JobSpec, backend: str, others: Mapping[str, str | None] | None = None
) -> None:
    """Raise `LocationError` unless `model_dir`, `data_dir` and `others` (such as
    `serving_base`) are storage every pod of `backend` (e.g. `jobset`) shares: gs://."""
    locations = {"model_dir": spec.model_dir, "data_dir": spec.data_dir, **(others or {})}
    problems = shared_storage_problems(locations, backend)
    if problems:
        raise LocationError("\n".join(problems))
