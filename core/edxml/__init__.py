"""edXML (QCVN 102:2016) packets: schemas, safe streaming parsing and validation, conversions.

The hub calls:

* :func:`parse_packet` to validate an incoming packet and stream its attachments to a sink;
* :func:`append_trace_header` to copy an edoc with the hub's TraceHeader added;
* :func:`build_packet` to write a packet from the JSON form plus attachment files;
* :class:`EdxmlJsonConverter` / :class:`JsonEdxmlConverter` as format-converter plugins.

See docs/edxml.md for the JSON form, the schema's lenient choices, limits and error codes.
"""

from .bounds import MarkupScanner, ScanFinding, crowded
from .build import AttachmentOpener, build_packet, envelope_from_json
from .converters import (
    CONVERTERS,
    AttachmentStore,
    DirectoryAttachmentStore,
    EdxmlJsonConverter,
    JsonEdxmlConverter,
    PacketConverter,
    canonical_json,
    check_json,
    dump_json,
    load_json,
)
from .errors import EdxmlError, EdxmlInvalid, EdxmlMalformed, EdxmlTooLarge, EdxmlUnsafe, NotAnEdoc
from .limits import ParseLimits
from .model import (
    JSON_FORMAT,
    AttachmentInfo,
    AttachmentMeta,
    DocumentCode,
    DocumentIdParts,
    DocumentType,
    Packet,
    ResponseFor,
    TraceHeader,
    content_key,
    parse_document_id,
)
from .schema import schema_path
from .spec import DSIG_NS, NS
from .stream import (
    VIETNAM_TZ,
    AttachmentSink,
    Base64Decoder,
    BinaryWriter,
    Source,
    append_trace_header,
    format_timestamp,
    parse_packet,
)

__all__ = [
    "CONVERTERS",
    "DSIG_NS",
    "JSON_FORMAT",
    "NS",
    "VIETNAM_TZ",
    "AttachmentInfo",
    "AttachmentMeta",
    "AttachmentOpener",
    "AttachmentSink",
    "AttachmentStore",
    "Base64Decoder",
    "BinaryWriter",
    "DirectoryAttachmentStore",
    "DocumentCode",
    "DocumentIdParts",
    "DocumentType",
    "EdxmlError",
    "EdxmlInvalid",
    "EdxmlJsonConverter",
    "EdxmlMalformed",
    "EdxmlTooLarge",
    "EdxmlUnsafe",
    "JsonEdxmlConverter",
    "MarkupScanner",
    "NotAnEdoc",
    "Packet",
    "PacketConverter",
    "ParseLimits",
    "ResponseFor",
    "ScanFinding",
    "Source",
    "TraceHeader",
    "append_trace_header",
    "build_packet",
    "canonical_json",
    "check_json",
    "content_key",
    "crowded",
    "dump_json",
    "envelope_from_json",
    "format_timestamp",
    "load_json",
    "parse_document_id",
    "parse_packet",
    "schema_path",
]
