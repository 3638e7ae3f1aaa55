"""The national axis protocol (VXP) served by the hub, for systems built on the axis's Java SDK.

Routes `<prefix>/<operation>` (prefix `/vxp` by default, `adapters.vxp.prefix`) on the hub's HTTP
server: a document-management system already written against the national SDK connects to the
provincial hub by changing only its endpoint, systemId (an HMAC access key of its unit) and secret.
The wire protocol itself is `lgsp.adapters.national_axis.protocol` (shared with the axis client and
simulator); service.py translates each operation to the exchange.

Needs the `edxml` plugin (which reads and routes the packets): `plugins.enabled: [rest, edxml, vxp]`.
docs/vxp.md.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from aiohttp import web

from lgsp.adapters.vxp.service import NAME, SETTINGS, check_prefix, routes
from lgsp.core.api import Text, positive_int_settings
from lgsp.plugins.hookspecs import hookimpl

if TYPE_CHECKING:
    from lgsp.core.api import Hub


@hookimpl
def lgsp_web_routes(hub: Hub) -> Iterable[web.AbstractRouteDef]:
    return routes(hub)


@hookimpl
def lgsp_check_config(hub: Hub) -> Iterable[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if "edxml" not in hub.config.plugins.enabled:
        out.append(("plugins.enabled", Text("{name} needs the edxml plugin: add edxml to plugins.enabled", name=NAME)))
    section = hub.config.adapters.get(NAME)
    if not isinstance(section, dict):
        return out + positive_int_settings(f"adapters.{NAME}", section, SETTINGS)
    if "prefix" in section:
        why = check_prefix(section["prefix"])
        if why:
            out.append((f"adapters.{NAME}.prefix", why))
    ints = {k: v for k, v in section.items() if k != "prefix"}
    return out + positive_int_settings(f"adapters.{NAME}", ints, [*SETTINGS, "prefix"])
