"""Storage locations: which values are accepted, and what a refusal says."""

from __future__ import annotations

import pytest

from tfdist.locations import (
    LocationError,
    bucket_problem,
    check_location,
    check_locations,
    location_problem,
    require_shared_storage,
)
from tfdist.spec import SpecError, parse_spec

ACCEPTED = "use a local path such as /data/models, or gs://BUCKET/PREFIX"


@pytest.mark.parametrize(
    "value",
    [
        "/data/models",
        "/",
        "models",  # relative: resolves against the directory tfdist runs in
        "./gs:/bucket/x",  # a local folder named `gs:`, written unambiguously
        "/tmp/a:b",
        "gs://my-bucket",
        "gs://my-bucket/",
        "gs://my_bucket-1/models/nightly",
        "gs://example.com/models",
        "gs://a.b-c_d/x/y/",
        "gs://abc/",
        "gs://" + "a" * 63 + "/x",
        "gs://" + ".".join(["a" * 63] * 3) + "/x",
    ],
)
def test_accepted_locations(value: str) -> None:
    assert location_problem(value) is None


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("", f"is empty; {ACCEPTED}"),
        ("  ", f"is empty; {ACCEPTED}"),
        ("gs://", "'gs://' names no bucket; write gs://BUCKET/PREFIX"),
        ("gs:///models", "'gs:///models' names no bucket; write gs://BUCKET/PREFIX"),
        (
            "gs:/bucket/x",
            "'gs:/bucket/x': starts like a URI (`gs:`) but is not one; a local folder named "
            f"`gs:` is written ./gs:/bucket/x; {ACCEPTED}",
        ),
        (
            "gs:bucket",
            "'gs:bucket': starts like a URI (`gs:`) but is not one; a local folder named `gs:` "
            f"is written ./gs:bucket; {ACCEPTED}",
        ),
        (
            "GS://bucket/x",
            f"'GS://bucket/x': the scheme is written `gs://`, in lowercase; {ACCEPTED}",
        ),
        (
            "Gs://bucket/x",
            f"'Gs://bucket/x': the scheme is written `gs://`, in lowercase; {ACCEPTED}",
        ),
        ("s3://bucket/x", f"'s3://bucket/x': s3:// storage is not supported; {ACCEPTED}"),
        ("hdfs://nn/x", f"'hdfs://nn/x': hdfs:// storage is not supported; {ACCEPTED}"),
        ("file:///tmp/x", f"'file:///tmp/x': file:// storage is not supported; {ACCEPTED}"),
        ("~/models", "'~/models': `~` is not expanded here; write the full path"),
        ("/tmp/a\nb", f"'/tmp/a\\nb' has a control character ('\\n'); {ACCEPTED}"),
    ],
)
def test_refused_locations(value: str, problem: str) -> None:
    assert location_problem(value) == problem


@pytest.mark.parametrize(
    ("bucket", "problem"),
    [
        ("My-Bucket", "bucket name 'My-Bucket' has uppercase letters"),
        ("bucket!", "bucket name 'bucket!' has '!'"),
        ("my bucket", "bucket name 'my bucket' has ' '"),
        ("ab", "bucket name 'ab' has 2 characters"),
        ("a" * 64, f"bucket name {'a' * 64!r} has 64 characters"),
        ("-bucket", "bucket name '-bucket' does not start and end with a letter or digit"),
        ("bucket_", "bucket name 'bucket_' does not start and end with a letter or digit"),
        ("a..b", "bucket name 'a..b' has an empty or over-long part between dots"),
        ("192.168.5.4", "bucket name '192.168.5.4' is an IP address"),
        ("goog-models", "bucket name 'goog-models' starts with `goog` or contains `google`"),
        ("my-g00gle-x", "bucket name 'my-g00gle-x' starts with `goog` or contains `google`"),
    ],
)
def test_bucket_naming_rules(bucket: str, problem: str) -> None:
    assert bucket_problem(bucket) == problem
    refused = location_problem(f"gs://{bucket}/models")
    assert refused is not None and refused.startswith(f"'gs://{bucket}/models' {problem}; ")
    assert "Cloud Storage bucket names have 3-63 characters" in refused


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("gs://bucket//x", "has an empty path segment (`//`)"),
        ("gs://bucket/a/../b", "has a `.` or `..` segment"),
        ("gs://bucket/./b", "has a `.` or `..` segment"),
        ("gs://bucket/run-*", "has * in its prefix"),
        ("gs://bucket/a#b", "has # in its prefix"),
        ("gs://bucket/" + "x" * 901, "has a prefix over 900 bytes"),
    ],
)
def test_object_prefix_rules(value: str, problem: str) -> None:
    assert (location_problem(value) or "").startswith(f"{value!r} {problem}")


def test_a_relative_path_is_refused_where_no_working_directory_is_meant() -> None:
    assert location_problem("models", relative_ok=False) == (
        "'models' is a relative path, which would resolve against whichever directory the "
        "Airflow task runs in; write an absolute path, or gs://BUCKET/PREFIX"
    )
    assert location_problem("/models", relative_ok=False) is None


def test_check_location_names_the_field_and_normalises() -> None:
    assert check_location("serving_base", "gs://bucket/serving/") == "gs://bucket/serving"
    with pytest.raises(LocationError) as refused:
        check_location("serving_base", "gs:/bucket/serving")
    assert str(refused.value).startswith("serving_base: 'gs:/bucket/serving': starts like a URI")


def test_check_locations_lists_every_bad_field_and_skips_templates() -> None:
    with pytest.raises(LocationError) as refused:
        check_locations(
            {
                "model_dir_base": "s3://b/m",
                "data_dir": None,
                "serving_base": "gs://{{ params.bucket }}/serving",
                "other": "GS://x/y",
            }
        )
    assert str(refused.value) == (
        f"model_dir_base: 's3://b/m': s3:// storage is not supported; {ACCEPTED}\n"
        f"other: 'GS://x/y': the scheme is written `gs://`, in lowercase; {ACCEPTED}"
    )


def test_the_spec_refuses_a_malformed_model_dir_and_data_dir() -> None:
    spec = {
        "name": "digits",
        "trainer": {"entrypoint": "tfdist.examples.digits"},
        "train_spec": {"max_steps": 10},
        "model_dir": "gs:/bucket/x",
        "data_dir": "s3://bucket/data",
    }
    with pytest.raises(SpecError) as refused:
        parse_spec(spec)
    assert str(refused.value) == (
        "invalid job spec:\n"
        "  model_dir: 'gs:/bucket/x': starts like a URI (`gs:`) but is not one; a local folder "
        f"named `gs:` is written ./gs:/bucket/x; {ACCEPTED}\n"
        f"  data_dir: 's3://bucket/data': s3:// storage is not supported; {ACCEPTED}"
    )


def test_cluster_backends_need_storage_every_pod_shares() -> None:
    spec = parse_spec(
        {
            "name": "digits",
            "trainer": {"entrypoint": "tfdist.examples.digits"},
            "train_spec": {"max_steps": 10},
            "model_dir": "/tmp/tfdist/models",
            "data_dir": "gs://bucket/data",
        }
    )
    with pytest.raises(LocationError) as refused:
        require_shared_storage(spec, "kubernetes", {"serving_base": "/srv/serving"})
    lines = str(refused.value).splitlines()
    assert [line.split(":", 1)[0] for line in lines] == ["model_dir", "serving_base"]
    assert lines[0] == (
        "model_dir: '/tmp/tfdist/models' is a local path, but on the kubernetes backend every "
        "pod has its own disk: the evaluator, the gate and the export would not see the "
        "chief's checkpoints, and a restarted pod would start over; use gs://BUCKET/PREFIX"
    )
    shared = spec.with_overrides({"model_dir": "gs://bucket/models"})
    require_shared_storage(shared, "kubernetes", {"serving_base": "gs://bucket/serving"})
