"""Hook `lgsp_check_config`: a plugin judges its own settings; the hub reports them with the YAML line."""

from __future__ import annotations

from pathlib import Path

import pytest

from lgsp.core.config import ConfigError, load_config
from lgsp.core.hub import Hub
from lgsp.plugins.hookspecs import hookimpl


class Demo:
    """Judges a setting it cares about (a plugin registered as an object has no `adapters.<name>`)."""

    @hookimpl
    def lgsp_check_config(self, hub: Hub) -> list[tuple[str, str]]:
        if hub.config.hub.name.startswith("thử"):
            return [("hub.name", "a production hub must not be named as a test")]
        return []


def write(tmp_path: Path, name: str) -> Path:
    path = tmp_path / "lgsp.yaml"
    path.write_text(f"hub:\n  data_dir: {tmp_path / 'var'}\n  name: {name}\nplugins:\n  enabled: [rest]\n",
                    encoding="utf-8")
    return path


async def test_a_plugin_s_complaint_names_the_key_and_line_and_stops_the_start(tmp_path: Path) -> None:
    path = write(tmp_path, "thử nghiệm")
    hub = Hub(load_config(path, env={}), extra_plugins=(Demo(),))
    with pytest.raises(ConfigError) as err:
        hub.check_config()
    assert [str(i) for i in err.value.issues] == [
        f"{path}:3: hub.name: a production hub must not be named as a test"]
    with pytest.raises(ConfigError):
        await hub.start()
    await hub.stop()
    assert not (tmp_path / "var" / "lgsp.db").exists()  # refused before the store was touched


def test_good_settings_pass(tmp_path: Path) -> None:
    Hub(load_config(write(tmp_path, "Trục tỉnh"), env={}), extra_plugins=(Demo(),)).check_config()
