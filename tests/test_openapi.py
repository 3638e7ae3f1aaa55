"""schemas/openapi.yaml is a valid OpenAPI 3.1 document that lists every /v1 route the hub serves."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml
from openapi_spec_validator import validate

from lgsp.core.config import load_config
from lgsp.core.hub import Hub
from lgsp.plugins.manager import BUILTIN_PLUGINS

from .conftest import base_env, raw_request

SPEC = Path(__file__).resolve().parents[1] / "schemas" / "openapi.yaml"


def test_openapi_document_is_valid() -> None:
    doc = yaml.safe_load(SPEC.read_text(encoding="utf-8"))
    validate(doc)
    assert doc["openapi"].startswith("3.1")


@pytest.fixture
async def full_hub(tmp_path: Path) -> AsyncIterator[Hub]:
    """A hub with every built-in plugin enabled, so every /v1 route is mounted."""
    enabled = "[" + ", ".join(BUILTIN_PLUGINS) + "]"
    async with Hub(load_config(None, env=base_env(tmp_path, LGSP_PLUGINS_ENABLED=enabled))) as hub:
        yield hub


async def test_every_route_is_documented(full_hub: Hub) -> None:
    hub = full_hub
    doc = yaml.safe_load(SPEC.read_text(encoding="utf-8"))
    assert hub.app is not None
    served = set()
    for route in hub.app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter")
        if route.method in ("HEAD", "OPTIONS") or not path or not path.startswith("/v1/"):
            continue  # other adapters (SOAP, ...) describe themselves in their own schemas
        served.add((route.method.lower(), path))
    if ("*", "/v1/services/{service}/{tail}") in served:  # the service proxy forwards any method
        served.discard(("*", "/v1/services/{service}/{tail}"))
        served |= {(m, "/v1/services/{service}/{tail}") for m in ("get", "post", "put", "patch", "delete")}
    assert served, "no routes mounted"
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops
                  if m in ("get", "put", "post", "delete", "options", "head", "patch", "trace")}
    missing = served - documented
    assert not missing, f"routes missing from schemas/openapi.yaml: {sorted(missing)}"
    stale = documented - served
    assert not stale, f"documented but not served: {sorted(stale)}"


async def test_served_document_is_the_file(hub: Hub) -> None:
    status, headers, body = await raw_request(hub.url, "GET", "/v1/openapi.yaml")
    assert status == 200 and headers["Content-Type"].startswith("application/yaml")
    assert body == SPEC.read_bytes()
