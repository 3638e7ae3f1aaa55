"""Hubs serving the national axis protocol (`/vxp`) next to REST, with the edXML plugin."""

from __future__ import annotations

from typing import Any

import pytest

from lgsp.core.config import Config, load_config

from ..conftest import base_env
from ..edxml_hub.support import HUB_ID

PLUGINS = "[rest, edxml, vxp]"


@pytest.fixture
def hub_config(tmp_path: Any) -> Config:
    return load_config(None, env=base_env(tmp_path / "var", LGSP_PLUGINS_ENABLED=PLUGINS, LGSP_HUB_IDENTIFIER=HUB_ID))
