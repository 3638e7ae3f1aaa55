"""Hostile input: DTDs, entity bombs, external entities, and every resource limit.

Each attack must be refused with ``edxml.unsafe`` / ``edxml.too_large`` quickly, without
memory growth, without touching the file system or the network, and leave the process able
to parse the next packet.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from edxml_support import FIXTURES, RssProbe, fixture

from lgsp.core.edxml import (
    EdxmlMalformed,
    EdxmlTooLarge,
    EdxmlUnsafe,
    ParseLimits,
    build_packet,
    load_json,
    parse_packet,
)

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<edXML xmlns="http://www.mic.gov.vn/TBT/QCVN_102_2016"><edXMLEnvelope>&lol9;</edXMLEnvelope></edXML>
"""

QUADRATIC = (
    b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "' + b"x" * 50_000 + b'">]><r>' + b"&a;" * 50_000 + b"</r>"
)


class Listener:
    """A loopback TCP server that records whether anything connected."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(5)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.close()


def assert_healthy() -> None:
    """The parser still works after the attack."""
    assert parse_packet(FIXTURES / "status_01.edxml").status_code == "01"


def test_billion_laughs_refused_fast_and_small(rss_probe: RssProbe) -> None:
    started = time.perf_counter()
    with rss_probe.measure(), pytest.raises(EdxmlUnsafe) as err:
        parse_packet(BILLION_LAUGHS)
    assert time.perf_counter() - started < 1.0
    assert rss_probe.growth < 20 << 20
    assert err.value.code == "edxml.unsafe"
    assert "DOCTYPE" in err.value.detail
    assert_healthy()


def test_quadratic_blowup_refused(rss_probe: RssProbe) -> None:
    with rss_probe.measure(), pytest.raises(EdxmlUnsafe):
        parse_packet(QUADRATIC)
    assert rss_probe.growth < 20 << 20
    assert_healthy()


def test_xxe_file_is_refused_and_never_read(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT")
    data = (
        f'<?xml version="1.0"?><!DOCTYPE edXML [<!ENTITY xxe SYSTEM "file://{secret}">]>'
        '<edXML xmlns="http://www.mic.gov.vn/TBT/QCVN_102_2016"><edXMLEnvelope>&xxe;</edXMLEnvelope></edXML>'
    ).encode()
    before = secret.stat().st_atime_ns
    with pytest.raises(EdxmlUnsafe) as err:
        parse_packet(data)
    assert "TOP-SECRET" not in err.value.message
    assert secret.stat().st_atime_ns == before
    assert_healthy()


@pytest.mark.parametrize(
    "template",
    [
        '<!DOCTYPE edXML [<!ENTITY xxe SYSTEM "http://127.0.0.1:{port}/x">]><edXML>&xxe;</edXML>',
        '<!DOCTYPE edXML SYSTEM "http://127.0.0.1:{port}/evil.dtd"><edXML/>',
        '<!DOCTYPE edXML [<!ENTITY % p SYSTEM "http://127.0.0.1:{port}/p.dtd"> %p;]><edXML/>',
        '<!DOCTYPE edXML PUBLIC "-//X//Y" "http://127.0.0.1:{port}/pub.dtd"><edXML/>',
    ],
)
def test_xxe_http_is_refused_without_network(template: str, listener: Listener) -> None:
    data = ('<?xml version="1.0"?>' + template.format(port=listener.port)).encode()
    with pytest.raises(EdxmlUnsafe):
        parse_packet(data)
    time.sleep(0.3)
    assert listener.connections == 0
    assert_healthy()


def test_doctype_cut_across_reads_is_still_seen() -> None:
    for chunk in (1, 2, 3, 5, 8):
        with pytest.raises(EdxmlUnsafe):
            parse_packet(BILLION_LAUGHS, limits=ParseLimits(read_chunk_bytes=chunk))


def test_doctype_inside_a_comment_is_harmless() -> None:
    data = fixture("status_02").replace(b"<edXML xmlns=", b"<!-- <!DOCTYPE x> --><edXML xmlns=", 1)
    assert parse_packet(data).status_code == "02"


def test_doctype_after_bom_and_whitespace_is_refused() -> None:
    data = b"\xef\xbb\xbf  \n<!DOCTYPE edXML><edXML/>"
    with pytest.raises(EdxmlUnsafe):
        parse_packet(data)


def test_external_reference_in_the_built_signature_is_refused() -> None:
    from lgsp.core.edxml import EdxmlInvalid

    document = parse_packet(FIXTURES / "status_01.edxml").to_json()
    document["signature"] = {"xml": '<!DOCTYPE s [<!ENTITY x SYSTEM "file:///etc/passwd">]><Signature>&x;</Signature>'}
    with pytest.raises(EdxmlInvalid, match="DOCTYPE"):
        build_packet(document, _Sink())


class _Sink:
    def write(self, data: bytes) -> int:
        return len(data)


# ------------------------------------------------------------------------- limits


def test_deep_nesting_hits_the_limit(rss_probe: RssProbe) -> None:
    deep = b'<edXML xmlns="http://www.mic.gov.vn/TBT/QCVN_102_2016">' + b"<a>" * 100_000 + b"</a>" * 100_000
    with rss_probe.measure(), pytest.raises(EdxmlTooLarge):
        parse_packet(deep + b"</edXML>")
    assert rss_probe.growth < 50 << 20


def test_depth_limit_is_configurable() -> None:
    data = fixture("edoc_new")  # Signature/SignedInfo/Reference/Transforms/Transform is depth 8
    parse_packet(data, limits=ParseLimits(max_depth=8))
    with pytest.raises(EdxmlTooLarge) as err:
        parse_packet(data, limits=ParseLimits(max_depth=7))
    assert err.value.rule == "max_depth"


def test_total_size_limit() -> None:
    data = fixture("edoc_new")
    parse_packet(data, limits=ParseLimits(max_packet_bytes=len(data)))
    with pytest.raises(EdxmlTooLarge) as err:
        parse_packet(data, limits=ParseLimits(max_packet_bytes=len(data) - 1, read_chunk_bytes=4096))
    assert err.value.rule == "max_packet_bytes"


def test_metadata_limit_excludes_payloads() -> None:
    data = fixture("edoc_new")
    # the packet is ~10 KB of which ~1.5 KB is payload: a 9.5 KB metadata budget suffices
    parse_packet(data, limits=ParseLimits(max_metadata_bytes=len(data) - 1000))
    with pytest.raises(EdxmlTooLarge) as err:
        parse_packet(data, limits=ParseLimits(max_metadata_bytes=4000))
    assert err.value.rule == "max_metadata_bytes"


def test_huge_text_outside_payloads_is_bounded(rss_probe: RssProbe) -> None:
    data = fixture("edoc_new").replace(b"<edXML:Content>", b"<edXML:Content>" + b"x" * (30 << 20), 1)
    with rss_probe.measure(), pytest.raises(EdxmlTooLarge):
        parse_packet(data)
    assert rss_probe.growth < 40 << 20


def test_huge_start_tag_is_bounded() -> None:
    data = b"<edXML " + b'a="' + b"x" * (5 << 20)
    with pytest.raises((EdxmlTooLarge, EdxmlMalformed)):
        parse_packet(data)


def test_element_count_limit() -> None:
    data = fixture("edoc_new")
    with pytest.raises(EdxmlTooLarge) as err:
        parse_packet(data, limits=ParseLimits(max_elements=60))
    assert err.value.rule == "max_elements"
    many = fixture("status_01").replace(b"<edXML:Description>", b"<edXML:Description>" + b"<x/>" * 50_000, 1)
    with pytest.raises(EdxmlTooLarge):
        parse_packet(many)


def test_attachment_count_limit() -> None:
    with pytest.raises(EdxmlTooLarge) as err:
        parse_packet(fixture("edoc_new"), limits=ParseLimits(max_attachments=2))
    assert err.value.rule == "max_attachments"
    assert [a.content_id for a in err.value.attachments] == ["101", "cid:102"]


def test_attachment_size_limit() -> None:
    with pytest.raises(EdxmlTooLarge) as err:
        parse_packet(fixture("edoc_new"), limits=ParseLimits(max_attachment_bytes=400))
    assert err.value.rule == "max_attachment_bytes"
    assert err.value.path == "/edXML/AttachmentEncoded/Attachment[1]/ContentTransferEncoded"


def test_json_size_limit() -> None:
    import io

    with pytest.raises(EdxmlTooLarge):
        load_json(io.BytesIO(b"{" + b" " * 2000 + b"}"), ParseLimits(max_json_bytes=1000))
    with pytest.raises(EdxmlMalformed):
        load_json(io.BytesIO(b"{not json"))
    with pytest.raises(EdxmlTooLarge):
        load_json(io.BytesIO(b"[" * 100_000 + b"]" * 100_000))


@pytest.mark.parametrize("field", ["max_packet_bytes", "max_depth", "read_chunk_bytes"])
@pytest.mark.parametrize("value", [0, -1, True, 1.5])
def test_limits_reject_nonsense(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        ParseLimits(**{field: value})  # type: ignore[arg-type]
