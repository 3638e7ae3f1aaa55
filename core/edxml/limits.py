"""Resource limits for parsing untrusted packets.

Packets come from other agencies' software over the network; the limits bound what one packet
can cost us in memory and CPU. Attachment payloads are streamed and never held in memory, so
they are bounded separately from the metadata that is kept. Every dimension of the kept XML is
bounded while it is read, before any validation (see bounds.py): real packets stay far below the
defaults (at most 1 attribute and 2 namespace declarations per element, texts of a few hundred
characters, depth 9), while the cost of some later steps grows faster than linearly with them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

__all__ = ["ParseLimits"]


@dataclass(frozen=True, slots=True)
class ParseLimits:
    """Limits for one packet. The defaults suit the hub; tests pass tiny ones.

    * ``max_packet_bytes``: raw bytes read from the source (XML or JSON).
    * ``max_depth``: element nesting; real packets stay below 10.
    * ``max_elements``: elements kept in memory (everything except attachment payload text).
    * ``max_metadata_bytes``: bytes of markup and text handed to the XML parser and kept in
      memory, i.e. the packet minus its attachment payloads.
    * ``max_attributes``: attributes of one element (namespace declarations not counted).
    * ``max_attribute_length``: characters of one attribute value (and of one namespace name).
    * ``max_text_length``: characters of one text node (attachment payloads are streamed, not
      counted); also the longest string of a JSON form.
    * ``max_namespaces_per_element``: namespace declarations (``xmlns``, ``xmlns:p``) on one element.
    * ``max_namespaces``: namespace declarations in the whole packet.
    * ``max_attachments``: Attachment elements per packet.
    * ``max_attachment_bytes``: decoded bytes of one attachment.
    * ``max_json_bytes``: size of a JSON form read by the converters (payloads are not inlined).
    * ``max_json_keys``: members of one JSON object (the largest object of the form has 23).
    * ``read_chunk_bytes``: how much is read from the source at a time (memory per step).
    """

    max_packet_bytes: int = 1 << 30
    max_depth: int = 32
    max_elements: int = 20_000
    max_metadata_bytes: int = 4 << 20
    max_attributes: int = 32
    max_attribute_length: int = 8_192
    max_text_length: int = 1 << 20
    max_namespaces_per_element: int = 16
    max_namespaces: int = 1_000
    max_attachments: int = 1_000
    max_attachment_bytes: int = 1 << 30
    max_json_bytes: int = 16 << 20
    max_json_keys: int = 64
    read_chunk_bytes: int = 1 << 20

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"ParseLimits.{f.name} must be a positive int, got {value!r}")
