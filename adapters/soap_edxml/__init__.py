"""The SOAP adapter for document-management (VBQL) systems: edXML packets over SOAP 1.1/1.2.

Inbound (service.py): a document/literal service on the hub's HTTP server, WSDL at
`/soap/edxml?wsdl`; operations mirror the exchange (sendEdoc, getReceivedEdocList, getEdoc,
updateStatus, getSentEdocList, getAgenciesList). Callers sign requests with the same LGSP1
headers as REST, over the exact POST body. MTOM/XOP and inline Base64 are both accepted.

Outbound (push.py): push adapter `soap`, delivering packets to a unit's own SOAP receive
operation with a zeep client.

Needs the `edxml` plugin (which reads and routes the packets): `plugins.enabled: [rest, edxml,
soap_edxml]`. Settings under `adapters.soap_edxml` (see service.SETTINGS). docs/soap.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from aiohttp import web

from lgsp.adapters.soap_edxml.push import SoapPushAdapter
from lgsp.adapters.soap_edxml.service import NAME, SETTINGS, routes
from lgsp.core.api import N_, Text, positive_int_settings
from lgsp.plugins.hookspecs import hookimpl

if TYPE_CHECKING:
    from lgsp.core.api import Hub


@hookimpl
def lgsp_problem_codes() -> Mapping[str, tuple[int, str]]:
    return {
        "soap.unsafe": (400, N_("SOAP message with a DTD or entities refused")),
        "soap.must_understand": (400, N_("SOAP header block marked mustUnderstand is not understood")),
    }


@hookimpl
def lgsp_web_routes(hub: Hub) -> Iterable[web.AbstractRouteDef]:
    return routes


@hookimpl
def lgsp_push_adapters(hub: Hub) -> Iterable[SoapPushAdapter]:
    return [SoapPushAdapter(hub)]


@hookimpl
def lgsp_check_config(hub: Hub) -> Iterable[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if "edxml" not in hub.config.plugins.enabled:
        out.append(("plugins.enabled", Text("{name} needs the edxml plugin: add edxml to plugins.enabled", name=NAME)))
    return out + positive_int_settings(f"adapters.{NAME}", hub.config.adapters.get(NAME), SETTINGS)


@hookimpl
async def lgsp_shutdown(hub: Hub) -> None:
    for adapter in hub.push_adapters.values():
        if isinstance(adapter, SoapPushAdapter):
            await adapter.close()
