"""Converter objects the hub can register as plugins, and a file-system attachment store.

Interface (structural, see :class:`PacketConverter`): ``source_format`` and ``target_format``
name the formats; ``convert(src, dst, *, store=None)`` reads a binary stream, writes a binary
stream and returns the :class:`~lgsp.core.edxml.model.Packet` it read or wrote. Attachments
never travel inside the JSON form: ``store`` receives them when leaving edXML and supplies them
when building edXML.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any, BinaryIO, ClassVar, Protocol, runtime_checkable

from .build import build_packet
from .errors import EdxmlInvalid, EdxmlMalformed, EdxmlTooLarge
from .limits import ParseLimits
from .model import AttachmentMeta, Packet
from .stream import BinaryWriter, parse_packet

__all__ = [
    "CONVERTERS",
    "AttachmentStore",
    "DirectoryAttachmentStore",
    "EdxmlJsonConverter",
    "JsonEdxmlConverter",
    "PacketConverter",
    "canonical_json",
    "check_json",
    "dump_json",
    "load_json",
]


@runtime_checkable
class AttachmentStore(Protocol):
    """Where attachment bytes live while a packet is in JSON form.

    ``writer(meta)`` is an attachment sink (see ``parse_packet``): it returns a writable binary
    object whose ``close()`` may return a string reference, recorded as the entry's ``ref``.
    ``reader(entry)`` opens the bytes of a JSON attachment entry for reading.
    """

    def writer(self, meta: AttachmentMeta) -> BinaryWriter: ...

    def reader(self, entry: Mapping[str, Any]) -> BinaryIO | IO[bytes]: ...


@runtime_checkable
class PacketConverter(Protocol):
    """The plugin interface: one direction between two formats."""

    source_format: ClassVar[str]
    target_format: ClassVar[str]

    def convert(
        self, src: BinaryIO | IO[bytes], dst: BinaryIO | IO[bytes], *, store: AttachmentStore | None = None
    ) -> Packet: ...


def canonical_json(obj: Any) -> str:
    """Sorted keys, no whitespace, non-ASCII kept: equal information gives equal text."""
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def dump_json(obj: Any, dst: BinaryIO | IO[bytes]) -> None:
    """Write the JSON form as readable UTF-8."""
    dst.write(json.dumps(obj, ensure_ascii=False, indent=2).encode("utf-8"))
    dst.write(b"\n")


def load_json(src: BinaryIO | IO[bytes], limits: ParseLimits | None = None) -> Any:
    """Read a JSON form within ``limits``: size, number of values, depth, keys per object, string length.

    ``json.loads`` runs in C without releasing the GIL, for a time that grows with the number of
    values, so that number is bounded on the raw bytes first: every value but the first of an
    array or object follows a ``,`` or a ``:``, and a form holds about as many values as its
    edXML has elements (at most ``4 * max_elements`` separators, strings included).
    """
    limits = limits or ParseLimits()
    raw = src.read(limits.max_json_bytes + 1)
    if len(raw) > limits.max_json_bytes:
        raise EdxmlTooLarge(f"JSON form exceeds {limits.max_json_bytes} bytes", rule="max_json_bytes")
    if raw.count(b",") + raw.count(b":") > 4 * limits.max_elements:
        raise EdxmlTooLarge(f"JSON form has more than {4 * limits.max_elements} ',' and ':' separators "
                            f"(a packet has at most {limits.max_elements} elements)", path="$", rule="max_elements")
    try:
        document = json.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EdxmlMalformed(f"not valid UTF-8 JSON: {exc}", rule="RFC 8259") from None
    except RecursionError:
        raise EdxmlTooLarge("JSON nested too deeply", rule="max_depth") from None
    check_json(document, limits)
    return document


def check_json(document: Any, limits: ParseLimits) -> None:
    """Bound a decoded JSON form as the XML parser bounds a tree: depth, keys per object, string length.

    Raises :class:`EdxmlTooLarge` naming the JSON path (``$.message_header.subject``) and the limit.
    """
    # (value, depth, path) with the path kept as (parent path, key) pairs, formatted on error only.
    stack: list[tuple[Any, int, Any]] = [(document, 0, None)]
    while stack:
        value, depth, where = stack.pop()
        if isinstance(value, str):
            if len(value) > limits.max_text_length:
                raise EdxmlTooLarge(f"string longer than {limits.max_text_length} characters",
                                    path=_json_path(where), rule="max_text_length")
        elif isinstance(value, dict | list):
            if depth >= limits.max_depth:
                raise EdxmlTooLarge(f"JSON nested deeper than {limits.max_depth}", path=_json_path(where),
                                    rule="max_depth")
            if isinstance(value, dict):
                if len(value) > limits.max_json_keys:
                    raise EdxmlTooLarge(f"object with more than {limits.max_json_keys} keys",
                                        path=_json_path(where), rule="max_json_keys")
                for key, item in value.items():
                    if len(key) > limits.max_attribute_length:
                        raise EdxmlTooLarge(f"key longer than {limits.max_attribute_length} characters",
                                            path=_json_path(where), rule="max_attribute_length")
                    stack.append((item, depth + 1, (where, key)))
            else:
                stack.extend((item, depth + 1, (where, i)) for i, item in enumerate(value))


def _json_path(where: Any) -> str:
    parts: list[str] = []
    while where is not None:
        where, key = where
        parts.append(f"[{key}]" if isinstance(key, int) else f".{key[:64]}")
    return "$" + "".join(reversed(parts))


class _HashingFileWriter:
    """Writes to a temporary file and renames it to its SHA-256 on close (content addressing)."""

    def __init__(self, directory: Path) -> None:
        self._dir = directory
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".partial-")
        self._tmp = Path(tmp)
        self._fh = os.fdopen(fd, "wb")
        self._sha = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self._sha.update(data)
        return self._fh.write(data)

    def close(self) -> str:
        self._fh.close()
        ref = self._sha.hexdigest()
        os.replace(self._tmp, self._dir / ref)
        return ref

    def abort(self) -> None:
        self._fh.close()
        self._tmp.unlink(missing_ok=True)


class DirectoryAttachmentStore:
    """Attachment files in one directory, named by their SHA-256 (the ``ref``).

    For tools, tests and small deployments; the hub plugs its blob store in the same place.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def writer(self, meta: AttachmentMeta) -> _HashingFileWriter:
        return _HashingFileWriter(self.directory)

    def reader(self, entry: Mapping[str, Any]) -> BinaryIO:
        ref = entry.get("ref") or entry.get("sha256")
        if not isinstance(ref, str) or not ref or Path(ref).name != ref or ref.startswith("."):
            raise EdxmlInvalid(
                f"attachment {entry.get('content_id')!r} has no usable ref/sha256 for this store",
                path="$.attachments",
                rule="DirectoryAttachmentStore refs are plain file names",
            )
        path = self.directory / ref
        if not path.is_file():
            raise EdxmlInvalid(
                f"attachment file {ref!r} not found in the store", path="$.attachments", rule="attachment source"
            )
        return open(path, "rb")


class EdxmlJsonConverter:
    """edXML packet -> JSON form; attachments go to ``store`` (or are only checked and hashed)."""

    source_format: ClassVar[str] = "edxml"
    target_format: ClassVar[str] = "json"

    def __init__(self, limits: ParseLimits | None = None) -> None:
        self.limits = limits or ParseLimits()

    def convert(
        self, src: BinaryIO | IO[bytes], dst: BinaryIO | IO[bytes], *, store: AttachmentStore | None = None
    ) -> Packet:
        packet = parse_packet(src, attachment_sink=store.writer if store else None, limits=self.limits)
        dump_json(packet.to_json(), dst)
        return packet


class JsonEdxmlConverter:
    """JSON form (+ attachment bytes from ``store``) -> edXML packet, streamed."""

    source_format: ClassVar[str] = "json"
    target_format: ClassVar[str] = "edxml"

    def __init__(self, limits: ParseLimits | None = None) -> None:
        self.limits = limits or ParseLimits()

    def convert(
        self, src: BinaryIO | IO[bytes], dst: BinaryIO | IO[bytes], *, store: AttachmentStore | None = None
    ) -> Packet:
        document = load_json(src, self.limits)
        return build_packet(document, dst, attachments=store.reader if store else None, limits=self.limits)


#: Built-in converters, for registration by the hub.
CONVERTERS: tuple[type[PacketConverter], ...] = (EdxmlJsonConverter, JsonEdxmlConverter)
