"""Hook `lgsp_packet_converters`: a plugin's converter adds a format units may take, and is used for them."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import IO, Any, BinaryIO, ClassVar

import pytest

from lgsp.core.edxml.converters import EdxmlJsonConverter
from lgsp.core.hub import Hub
from lgsp.plugins.hookspecs import hookimpl

from ..edxml_hub.support import HUB_ID, A, B, add_units, edoc
from .support import client_of, config, sha


class Loud:
    """edXML to a JSON form whose subject is in capitals (its own output, so the test can tell)."""

    source_format: ClassVar[str] = "edxml"
    target_format: ClassVar[str] = "loud"

    def __init__(self) -> None:
        self.calls = 0

    def convert(self, src: BinaryIO | IO[bytes], dst: BinaryIO | IO[bytes], *, store: Any = None) -> Any:
        self.calls += 1
        buffer = io.BytesIO()
        packet = EdxmlJsonConverter().convert(src, buffer, store=store)
        form = json.loads(buffer.getvalue())
        dst.write(json.dumps({"loud": True, "form": form}, ensure_ascii=False).encode())
        return packet


class LoudPlugin:
    def __init__(self) -> None:
        self.converter = Loud()

    @hookimpl
    def lgsp_packet_converters(self, hub: Hub) -> list[Loud]:
        return [self.converter]


def edxml_config(tmp_path: Path) -> Any:
    return config(tmp_path, LGSP_PLUGINS_ENABLED="[rest, edxml]", LGSP_HUB_IDENTIFIER=HUB_ID)


async def test_a_converter_adds_a_format_and_makes_that_unit_s_variant(tmp_path: Path) -> None:
    plugin = LoudPlugin()
    async with Hub(edxml_config(tmp_path), extra_plugins=(plugin,)) as hub:
        assert hub.content.known_formats("edxml") == {"edxml", "json", "loud"}
        await add_units(hub)
        a, b = await client_of(hub, A, existing=True), await client_of(hub, B, existing=True)
        async with a, b:
            data = edoc(A, [B])
            created = await a.call("POST", "/v1/packets", {"data_type": "edxml", "size": len(data),
                                                            "sha256": sha(data)})
            await a.upload(created["upload"]["url"], data, sha(data))
            assert plugin.converter.calls == 0  # B takes edxml: nothing to convert
            await hub.content.set_format(B, "edxml", "loud")
            created = await a.call("POST", "/v1/packets", {"data_type": "edxml", "size": len(data),
                                                            "sha256": sha(data)})
            await a.upload(created["upload"]["url"], data, sha(data))
            assert plugin.converter.calls == 1
            got = json.loads(await b.fetch_bytes(created["id"]))
            assert got["loud"] is True and got["form"]["kind"] == "edoc"


async def test_without_the_plugin_the_format_does_not_exist(tmp_path: Path) -> None:
    from lgsp.core.errors import Problem

    async with Hub(edxml_config(tmp_path)) as hub:
        assert "loud" not in hub.content.known_formats("edxml")
        await add_units(hub)
        with pytest.raises(Problem):
            await hub.content.set_format(B, "edxml", "loud")


async def test_two_converters_for_one_pair_are_refused(tmp_path: Path) -> None:
    hub = Hub(edxml_config(tmp_path), extra_plugins=(LoudPlugin(), LoudPlugin()))
    with pytest.raises(ValueError, match="two converters from edxml to loud"):
        await hub.start()
    await hub.stop()
