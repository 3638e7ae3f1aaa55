"""schemas/openapi.yaml is a valid OpenAPI 3.1 document that lists every /v1 route the hub serves."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml
from openapi_spec_validator import validate

from lgsp.core.config import load_config
from lgsp.core.errors import CATALOGUE, CORE_CODES
from lgsp.core.hub import Hub
from lgsp.plugins.manager import BUILTIN_PLUGINS, problem_codes

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


#: Plugins whose codes belong to a protocol of their own (SOAP faults, the axis protocol), never a
#: /v1 problem; their own documents list them.
OWN_PROTOCOL_PREFIXES = ("soap.",)


async def test_problem_codes_are_the_catalogue_with_their_statuses(full_hub: Hub) -> None:
    """Schema `Problem.code` lists every code a REST client can receive, each with the catalogue's status.

    The hub's own codes and every built-in plugin's (`lgsp_problem_codes`): a code added without the
    document (or left in the document after its removal) fails here.
    """
    code = yaml.safe_load(SPEC.read_text(encoding="utf-8"))["components"]["schemas"]["Problem"]["properties"]["code"]
    plugins = {c: kind[0] for c, kind in problem_codes(full_hub.pm).items()}
    served = {c: CATALOGUE[c].status for c in CORE_CODES} | plugins
    served = {c: status for c, status in served.items() if not c.startswith(OWN_PROTOCOL_PREFIXES)}
    assert set(CORE_CODES) <= set(served)
    assert set(code["enum"]) == set(served)
    assert code["x-lgsp-status"] == served
    assert len(code["enum"]) == len(set(code["enum"]))


def test_the_integrator_guide_names_every_core_code() -> None:
    guide = (SPEC.parents[1] / "docs" / "integrator-guide.md").read_text(encoding="utf-8")
    missing = [c for c in sorted(CORE_CODES) if not re.search(rf"(?<![\w.]){re.escape(c)}(?![\w.])", guide)]
    assert missing == [], "codes the integrator guide does not explain"


def test_every_signed_operation_documents_the_edge_answers() -> None:
    """The edge checks every signed request before its handler (signature, text, body hash): 400,
    401 and 422 can answer any signed operation, so each lists them (the fuzzer in tests/fuzz
    fails on an undocumented status)."""
    doc = yaml.safe_load(SPEC.read_text(encoding="utf-8"))
    missing = []
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            if method not in {"get", "put", "post", "patch", "delete"} or operation.get("security") == []:
                continue
            lacking = {"400", "401", "422"} - {str(code) for code in operation["responses"]}
            if lacking:
                missing.append(f"{method.upper()} {path}: {sorted(lacking)}")
    assert missing == []
