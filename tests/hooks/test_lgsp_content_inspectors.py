"""Hook `lgsp_content_inspectors`: a plugin reads, refuses or transforms the content of its data types."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from lgsp.client import LgspError
from lgsp.core.content import Inspection, InspectionJob, Variant
from lgsp.core.errors import Problem
from lgsp.core.hub import Hub
from lgsp.plugins.hookspecs import hookimpl

from .support import DST, OTHER, SRC, client_of, config, sha

MAGIC = b"NOTE:"


class NoteInspector:
    """Data type `note`: text that must start with NOTE:, its first line the subject; the `shout`
    format is the same text in capitals."""

    data_types = frozenset({"note"})
    family = "note"
    default_format = "note"

    def __init__(self) -> None:
        self.inspected: list[str] = []

    def formats(self) -> frozenset[str]:
        return frozenset({"note", "shout"})

    async def inspect(self, job: InspectionJob) -> Inspection:
        self.inspected.append(job.packet.id)
        text = await asyncio.to_thread(lambda: job.open().read())
        if not text.startswith(MAGIC):
            raise Problem("request.invalid", "a note starts with NOTE:")
        info = job.packet
        formats = await job.formats_of(self.family, info.to, self.default_format)
        variants = [Variant("note", "note", job.upload_key, info.size, info.sha256, "text/plain", "note")]
        if "shout" in formats.values():
            def shout() -> Variant:
                writer = job.writer("shout")
                writer.write(text.upper())
                writer.close()
                return Variant("shout", "shout", writer.key, writer.size, writer.sha256, "text/plain", "note")

            variants.append(await asyncio.to_thread(shout))
        subject = text[len(MAGIC):].split(b"\n", 1)[0].decode().strip()
        return Inspection(destinations=info.to, variants=variants, formats=formats,
                          default_format=self.default_format, subject=subject)

    async def describe(self, conn: Any, packet: Any, unit: str, is_source: bool) -> dict[str, Any]:
        return {"note": {"seen_by_source": is_source}}


class NotePlugin:
    def __init__(self) -> None:
        self.inspector = NoteInspector()

    @hookimpl
    def lgsp_content_inspectors(self, hub: Hub) -> list[NoteInspector]:
        return [self.inspector]


async def test_an_inspector_refuses_reads_and_transforms_its_data_type(tmp_path: Path) -> None:
    plugin = NotePlugin()
    async with Hub(config(tmp_path), extra_plugins=(plugin,)) as hub:
        src, dst, other = [await client_of(hub, u) for u in (SRC, DST, OTHER)]
        async with src, dst, other:
            await hub.content.set_format(OTHER, "note", "shout")
            with pytest.raises(LgspError) as err:
                await src.send(b"no magic here", [DST], subject="s", data_type="note")
            assert err.value.code == "request.invalid" and "NOTE:" in str(err.value.detail)
            assert await dst.inbox() == []  # nothing of the refused packet is offered

            note = b"NOTE: hop giao ban\nthu tu 9 gio"
            created = await src.call("POST", "/v1/packets", {"to": [DST, OTHER], "data_type": "note",  # no subject
                                                              "size": len(note), "sha256": sha(note)})
            await src.upload(created["upload"]["url"], note, sha(note))
            packet_id = created["id"]
            (item,) = await dst.inbox()
            assert item["subject"] == "hop giao ban"
            assert await dst.fetch_bytes(packet_id) == b"NOTE: hop giao ban\nthu tu 9 gio"
            assert await other.fetch_bytes(packet_id) == b"NOTE: HOP GIAO BAN\nTHU TU 9 GIO"
            assert (await src.status(packet_id))["note"] == {"seen_by_source": True}
            plain = await src.send(b"any bytes", [DST], subject="s")  # another data type: not inspected
        assert plain not in plugin.inspector.inspected and packet_id in plugin.inspector.inspected
