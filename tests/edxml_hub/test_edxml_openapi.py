"""schemas/openapi-edxml.yaml documents every /v1 route the edxml plugin adds, and merges validly."""

from __future__ import annotations

from pathlib import Path

import yaml
from openapi_spec_validator import validate

from lgsp.core.hub import Hub

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def merged() -> dict:
    base = yaml.safe_load((SCHEMAS / "openapi.yaml").read_text(encoding="utf-8"))
    extra = yaml.safe_load((SCHEMAS / "openapi-edxml.yaml").read_text(encoding="utf-8"))
    assert not set(base["paths"]) & set(extra["paths"]), "the edXML paths must be new"
    base["paths"].update(extra["paths"])
    base["components"]["schemas"].update(extra["components"]["schemas"])
    return base


def test_merged_document_is_valid_openapi() -> None:
    doc = merged()
    validate(doc)
    assert "/v1/packets/{id}/attachments/{n}" in doc["paths"]


async def test_every_edxml_route_is_documented(hub: Hub) -> None:
    assert hub.app is not None
    base = yaml.safe_load((SCHEMAS / "openapi.yaml").read_text(encoding="utf-8"))["paths"]
    extra = yaml.safe_load((SCHEMAS / "openapi-edxml.yaml").read_text(encoding="utf-8"))["paths"]
    served = set()
    for route in hub.app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter")
        if route.method in ("HEAD", "OPTIONS") or not path or not path.startswith("/v1/") or path in base:
            continue
        served.add((route.method.lower(), path))
    documented = {(m, p) for p, ops in extra.items() for m in ops if m != "parameters"}
    assert served == documented
