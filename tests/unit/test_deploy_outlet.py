"""What the deploy task declares it updates, for fixed and per-run serving directories."""

from __future__ import annotations

from airflow.sdk import Asset, AssetAlias

from tfdist_airflow.deploy import deploy_outlet, serving_asset


def test_a_fixed_serving_base_is_an_asset_named_by_its_uri() -> None:
    assert serving_asset("/srv/models", "digits") == Asset(uri="file:///srv/models/digits")
    assert serving_asset("gs://b/serving", "digits").uri == "gs://b/serving/digits"
    assert deploy_outlet("/srv/models", "digits") == serving_asset("/srv/models", "digits")


def test_two_places_for_one_model_name_are_two_assets() -> None:
    assert serving_asset("/a", "digits").name != serving_asset("gs://b/s", "digits").name


def test_a_templated_serving_base_is_an_alias() -> None:
    outlet = deploy_outlet("gs://{{ params.bucket }}/serving", "digits")
    assert isinstance(outlet, AssetAlias)
    assert outlet.name == "tfdist-serving-digits"
