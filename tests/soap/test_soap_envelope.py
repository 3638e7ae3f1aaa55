"""The streaming SOAP reader decodes the same bytes however the body is cut into chunks."""

from __future__ import annotations

import hashlib
import itertools
import os
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from lgsp.adapters.soap_edxml.envelope import Limits, MessageReader

from .soap_support import TNS, envelope, mtom, send_edoc_op, xop

PAYLOAD = os.urandom(20_000) + b"\r\n--uuid:not-the-boundary\r\n" + os.urandom(5_000) + b"\r\n"
INLINE = envelope(send_edoc_op(PAYLOAD))
MTOM_BODY, MTOM_TYPE = mtom(f'<ns2:sendEdoc xmlns:ns2="{TNS}"><ns2:edxml>{xop("p@x")}</ns2:edxml></ns2:sendEdoc>',
                            {"p@x": PAYLOAD})


def read(body: bytes, content_type: str, cuts: list[int], tmp: Path) -> tuple[bytes, str]:
    reader = MessageReader(content_type, tmp, Limits())
    points = sorted({c % (len(body) + 1) for c in cuts} | {0, len(body)})
    for start, end in itertools.pairwise(points):
        reader.feed(body[start:end])
    message = reader.finish()
    try:
        payload = message.payload(message.operation[0])
        assert payload.path is not None
        assert payload.path.read_bytes()[:8] == b"LGSPBLB1"  # sealed on disk, even while the request runs
        with payload.open() as fh:
            return fh.read(), message.content_sha256
    finally:
        message.discard()
        assert list(tmp.iterdir()) == []


@settings(max_examples=60, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=1 << 20), max_size=40))
def test_inline_base64_any_chunking(tmp_path_factory: object, cuts: list[int]) -> None:
    tmp = tmp_path_factory.mktemp("inline")  # type: ignore[attr-defined]
    data, digest = read(INLINE, "text/xml", cuts, tmp)
    assert data == PAYLOAD and digest == hashlib.sha256(INLINE).hexdigest()


@settings(max_examples=60, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=1 << 20), max_size=40))
def test_mtom_any_chunking(tmp_path_factory: object, cuts: list[int]) -> None:
    tmp = tmp_path_factory.mktemp("mtom")  # type: ignore[attr-defined]
    data, digest = read(MTOM_BODY, MTOM_TYPE, cuts, tmp)
    assert data == PAYLOAD and digest == hashlib.sha256(MTOM_BODY).hexdigest()
