"""`adapters.national_axis`: every mistake reported with its key path in one pass; the secret by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from lgsp.adapters.national_axis.settings import parse_settings
from lgsp.core.config import ConfigError
from lgsp.core.errors import Problem
from lgsp.core.hub import Hub

from .bridge_support import axis_config, axis_settings


def test_good_settings_and_defaults() -> None:
    settings, issues = parse_settings({"endpoint": "https://vxp.example.gov.vn/", "system_id": "vxp.saas.45",
                                       "secret": "axis-vxp", "agency_code": "000.00.00.H45"})
    assert issues == []
    assert settings is not None
    assert settings.endpoint == "https://vxp.example.gov.vn" and settings.zone == "national"
    assert settings.message_types == ("edoc", "status") and settings.inbound
    assert settings.poll_interval == 60.0 and settings.page_size == 100


def test_every_mistake_is_named_by_its_key_path() -> None:
    settings, issues = parse_settings({
        "endpoint": "ftp://vxp", "system_id": "vxp saas", "secret": "Plain Secret Value!", "agency_code": "",
        "zone": "local", "message_types": ["edoc", "fax"], "poll_interval_seconds": 0, "page_size": 0,
        "inbound": "yes", "colour": "blue"})
    assert settings is None
    paths = {path for path, _ in issues}
    assert paths == {f"adapters.national_axis.{k}" for k in (
        "endpoint", "system_id", "secret", "agency_code", "zone", "message_types", "poll_interval_seconds",
        "page_size", "inbound", "colour")}
    secret_message = dict(issues)["adapters.national_axis.secret"]
    assert "NAME" in secret_message and "Plain Secret Value!" not in secret_message


def test_absent_section_is_no_error_and_a_wrong_kind_is() -> None:
    assert parse_settings(None) == (None, [])
    assert parse_settings(["endpoint"])[1] == [("adapters.national_axis", "must be a mapping of settings")]


def test_the_hub_refuses_to_start_on_bad_settings(tmp_path: Path) -> None:
    config = axis_config(tmp_path, "http://127.0.0.1:9", page_size=-1)
    with pytest.raises(ConfigError) as caught:
        Hub(config).check_config()
    assert "adapters.national_axis.page_size" in str(caught.value)


async def test_a_missing_secret_stops_the_start_naming_it(tmp_path: Path) -> None:
    config = axis_config(tmp_path, "http://127.0.0.1:9")
    hub = Hub(config)
    with pytest.raises(Problem) as caught:
        await hub.start()
    await hub.stop()
    assert caught.value.code == "not_found" and axis_settings("")["secret"] in caught.value.detail
