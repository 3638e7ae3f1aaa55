"""The edXML library (`lgsp.core.edxml`) as adapters and plugins may use it: parse, build, convert,
bound untrusted markup. See docs/edxml.md."""

from __future__ import annotations

from lgsp.core.edxml import (
    AttachmentMeta,
    Base64Decoder,
    EdxmlError,
    EdxmlInvalid,
    EdxmlJsonConverter,
    JsonEdxmlConverter,
    MarkupScanner,
    NotAnEdoc,
    Packet,
    PacketConverter,
    ParseLimits,
    append_trace_header,
    build_packet,
    crowded,
    format_timestamp,
    load_json,
    parse_packet,
)

__all__ = [
    "AttachmentMeta", "Base64Decoder", "EdxmlError", "EdxmlInvalid", "EdxmlJsonConverter", "JsonEdxmlConverter",
    "MarkupScanner", "NotAnEdoc", "Packet", "PacketConverter", "ParseLimits", "append_trace_header", "build_packet",
    "crowded", "format_timestamp", "load_json", "parse_packet",
]
