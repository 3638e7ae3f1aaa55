"""Large packets: beyond libxml2's 10 MB text-node limit, and ~200 MB with flat memory."""

from __future__ import annotations

import hashlib
import io
import time
from pathlib import Path
from typing import Any

import pytest
from edxml_support import FIXTURES, PatternReader, RssProbe

from lgsp.core.edxml import AttachmentMeta, append_trace_header, build_packet, parse_packet


class HashingWriter:
    """A sink writer that keeps only a digest: what the test stores costs no memory."""

    def __init__(self) -> None:
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        return len(data)

    def close(self) -> None:
        pass


def document_with_one_attachment() -> dict[str, Any]:
    doc = parse_packet(FIXTURES / "edoc_update.edxml").to_json()
    entry = doc["attachments"][0]
    doc["attachments"] = [{k: entry[k] for k in ("content_id", "attachment_name", "description", "content_type")}]
    return doc


def expected_digest(size: int) -> str:
    sha = hashlib.sha256()
    reader = PatternReader(size)
    while chunk := reader.read(1 << 20):
        sha.update(chunk)
    return sha.hexdigest()


def write_packet(path: Path, size: int) -> None:
    with path.open("wb") as fh:
        build_packet(
            document_with_one_attachment(),
            fh,
            attachments={"cid:301": io.BufferedReader(PatternReader(size))},
        )


def test_attachment_beyond_libxml2_text_limit(tmp_path: Path) -> None:
    """12 MB decoded (16 MB of Base64 in one text node): libxml2 alone refuses this without huge_tree."""
    from lxml import etree

    size = 12 << 20
    path = tmp_path / "twelve.edxml"
    write_packet(path, size)
    with pytest.raises(etree.XMLSyntaxError):  # the limit is real...
        etree.parse(str(path), etree.XMLParser(huge_tree=False))
    writers: list[HashingWriter] = []

    def sink(meta: AttachmentMeta) -> HashingWriter:
        writers.append(HashingWriter())
        return writers[-1]

    p = parse_packet(path, attachment_sink=sink)  # ...and the streaming parser is not subject to it
    assert p.attachments[0].size == size
    assert p.attachments[0].sha256 == writers[0].sha.hexdigest() == expected_digest(size)


@pytest.mark.slow
def test_200_mb_packet_with_flat_memory(tmp_path: Path, rss_probe: RssProbe) -> None:
    size = 150_000_000  # ~200 MB once Base64-encoded
    path = tmp_path / "big.edxml"
    with rss_probe.measure():
        write_packet(path, size)
    build_growth = rss_probe.growth
    assert path.stat().st_size > 200_000_000

    writers: list[HashingWriter] = []

    def sink(meta: AttachmentMeta) -> HashingWriter:
        writers.append(HashingWriter())
        return writers[-1]

    started = time.perf_counter()
    with rss_probe.measure():
        p = parse_packet(path, attachment_sink=sink)
    parse_seconds = time.perf_counter() - started
    parse_growth = rss_probe.growth

    assert p.attachments[0].size == size
    assert p.attachments[0].sha256 == writers[0].sha.hexdigest() == expected_digest(size)
    assert p.attachments[0].is_zip is False
    # Flat memory: a few read chunks (1 MiB each) plus the small header tree, whatever the size.
    assert build_growth < 32 << 20, f"build grew RSS by {build_growth / 2**20:.1f} MiB"
    assert parse_growth < 32 << 20, f"parse grew RSS by {parse_growth / 2**20:.1f} MiB"
    assert parse_seconds < 20

    out_path = tmp_path / "forwarded.edxml"
    with rss_probe.measure(), out_path.open("wb") as out:
        forwarded = append_trace_header(path, out, organ_id="000.00.99.H45")
    assert rss_probe.growth < 32 << 20, f"trace copy grew RSS by {rss_probe.growth / 2**20:.1f} MiB"
    assert forwarded.attachments[0].sha256 == p.attachments[0].sha256
    assert len(parse_packet(out_path).trace_headers) == 2
