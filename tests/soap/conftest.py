"""Hubs with the edXML plugin and the SOAP adapter; zeep clients that sign like a VBQL system.

The root tests/conftest.py fixtures (`hub`, `make_actor`, ...) build on `hub_config`, overridden
here. zeep is synchronous (requests): tests call it through `asyncio.to_thread` so the hub, which
runs on the test's event loop, keeps serving.
"""

from __future__ import annotations

from typing import Any

import pytest

from lgsp.core.config import Config, load_config

from ..conftest import base_env
from ..edxml_hub.support import HUB_ID, PLUGINS


@pytest.fixture
def hub_config(tmp_path: Any) -> Config:
    return load_config(None, env=base_env(tmp_path / "var", LGSP_PLUGINS_ENABLED=PLUGINS, LGSP_HUB_IDENTIFIER=HUB_ID))
