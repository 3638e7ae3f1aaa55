"""adapters.vxp settings: the URL prefix and the integer settings, checked with the YAML line."""

from __future__ import annotations

from pathlib import Path

import pytest

from lgsp.core.config import ConfigError, load_config
from lgsp.core.hub import Hub

from ..conftest import base_env
from ..edxml_hub.support import A, B, add_units, edoc
from ..national_axis.sdk_requests import SdkSession, parse_like_sdk, send_raw


def config_file(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "lgsp.yaml"
    path.write_text("plugins:\n  enabled: [rest, edxml, vxp]\nadapters:\n" + body, encoding="utf-8")
    return path


@pytest.mark.parametrize(("body", "key", "words"), [
    ("  vxp:\n    prefix: vxp\n", "adapters.vxp.prefix", "must be a path"),
    ("  vxp:\n    prefix: /v1/axis\n", "adapters.vxp.prefix", "/v1"),
    ("  vxp:\n    prefix: /a b\n", "adapters.vxp.prefix", "must be a path"),
    ("  vxp:\n    idempotency_window_seconds: 0\n", "adapters.vxp.idempotency_window_seconds", "positive"),
    ("  vxp:\n    prefixes: /x\n", "adapters.vxp.prefixes", "unknown key"),
])
def test_bad_settings_name_the_key_and_line(tmp_path: Path, body: str, key: str, words: str) -> None:
    cfg = load_config(config_file(tmp_path, body), env=base_env(tmp_path / "var"))
    with pytest.raises(ConfigError) as err:
        Hub(cfg).check_config()
    (issue,) = [i for i in err.value.issues if i.path == key]
    assert words in issue.message and "lgsp.yaml:" in str(issue)


def test_the_protocol_needs_the_edxml_plugin(tmp_path: Path) -> None:
    path = tmp_path / "lgsp.yaml"
    path.write_text("plugins:\n  enabled: [rest, vxp]\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        Hub(load_config(path, env=base_env(tmp_path / "var"))).check_config()
    assert any(i.path == "plugins.enabled" and "edxml" in i.message for i in err.value.issues)


async def test_a_configured_prefix_is_where_the_protocol_is_served(tmp_path: Path) -> None:
    cfg = load_config(config_file(tmp_path, "  vxp:\n    prefix: /truc/vxp/\n"), env=base_env(tmp_path / "var2"))
    async with Hub(cfg) as other:
        await add_units(other)
        key = await other.directory.issue_key((await other.directory.add_application(A, "vbql")).id, "HMAC-SHA256")
        assert key.secret is not None
        at_prefix = SdkSession(key.access_key, key.secret, base_path="/truc/vxp")
        at_default = SdkSession(key.access_key, key.secret, base_path="/vxp")
        served, missing = await send_raw(other.url, at_prefix.send_edoc(edoc(A, [B]), from_=A),
                                         at_default.received_list())
        assert parse_like_sdk("sendEdoc", served)["ErrorCode"] == "0"
        assert missing.status == 404
