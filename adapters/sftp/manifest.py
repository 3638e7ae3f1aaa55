"""File naming on the SFTP servers and the two manifest formats (hub → unit, unit → hub).

One rule both ways: a data file `F` is complete when `F.manifest.json` sits beside it. Writers put
the data first and the manifest last (each under a temporary name, then renamed), so a reader that
only takes files with a manifest never sees a partial upload.
"""

from __future__ import annotations

import dataclasses
import json
import re
import secrets
from datetime import UTC, datetime
from typing import Any

from lgsp.core.api import NewPacket, PacketInfo, Problem, Text, i18n, iso, load_json, parse_new_packet

MANIFEST_SUFFIX = ".manifest.json"
ERROR_SUFFIX = ".error.json"
PART_SUFFIX = ".part"
MANIFEST_VERSION = 1
MAX_MANIFEST_SIZE = 64 * 1024
# Names a writer uses while a file is still being written: never taken as data.
TEMPORARY_SUFFIXES = (".part", ".tmp", ".temp", ".filepart", ".partial", ".crdownload", ".swp")
CLAIM_RE = re.compile(r"^\.(?P<file>.+)\.claim-(?P<claim>[0-9a-f]{24})\.json$")

# Fields a unit may put in the manifest of a file it sends (unit → hub).
SUBMISSION_FIELDS = ("to", "subject", "sha256", "size", "priority", "data_type", "deadline", "file")
REQUIRED_FIELDS = ("to", "subject", "sha256")
DEFAULT_DATA_TYPE = "binary"


# -- names ----------------------------------------------------------------------------------------

def is_data_name(name: str) -> bool:
    """Could `name` be a unit's data file? Hidden, temporary and manifest-like names are not."""
    lowered = name.lower()
    return (not name.startswith(".") and not lowered.endswith(TEMPORARY_SUFFIXES)
            and not lowered.endswith((MANIFEST_SUFFIX, ERROR_SUFFIX)))


def manifest_name(file: str) -> str:
    return file + MANIFEST_SUFFIX


def temporary_name(file: str) -> str:
    """Where `file` is written before the rename that makes it visible (hidden, `.part`)."""
    return f".{file}{PART_SUFFIX}"


def new_claim(now: datetime) -> str:
    """A claim id: when it was taken (8 hex digits of Unix time) and 16 random hex digits."""
    return f"{int(now.timestamp()) & 0xFFFFFFFF:08x}{secrets.token_hex(8)}"


def claim_time(claim: str) -> datetime:
    return datetime.fromtimestamp(int(claim[:8], 16), UTC)


def claim_name(file: str, claim: str) -> str:
    return f".{file}.claim-{claim}.json"


def parse_claim_name(name: str) -> tuple[str, str] | None:
    match = CLAIM_RE.match(name)
    return (match.group("file"), match.group("claim")) if match else None


def alternative_name(file: str, claim: str) -> str:
    """The name `file` gets in done/ or failed/ when an older file of that name is already there."""
    tag = claim[8:16]
    stem, dot, ext = file.rpartition(".")
    return f"{stem}.{tag}.{ext}" if dot and stem else f"{file}.{tag}"


def delivery_file_name(packet: PacketInfo) -> str:
    """The deterministic name of a pushed packet, so every retry converges on the same file."""
    return f"{packet.id}.{packet.data_type}"


# -- hub → unit -------------------------------------------------------------------------------------

#: Fields of the manifest that may differ between attempts of one delivery (an attempt that finds an
#: earlier attempt's manifest compares the rest).
PER_ATTEMPT_FIELDS = ("request_id",)


def delivery_manifest(packet: PacketInfo, unit: str, idempotency_key: str, file_name: str,
                      request_id: str | None = None) -> bytes:
    """The manifest written beside a pushed file; the same on every attempt but for `request_id`.

    `request_id` is the id of the request that accepted the packet (the `X-Request-Id` REST and
    SOAP pushes carry), so the receiver's log and the hub's can be matched.
    """
    doc: dict[str, Any] = {
        "lgsp_manifest": MANIFEST_VERSION,
        "id": packet.id,
        "idempotency_key": idempotency_key,
        "from": packet.source,
        "to": unit,
        "subject": packet.subject,
        "priority": packet.priority,
        "data_type": packet.data_type,
        "file": file_name,
        "size": packet.size,
        "sha256": packet.sha256,
        "created_at": iso(packet.created_at),
        "deadline": iso(packet.deadline) if packet.deadline else None,
    }
    source_file = packet.meta.get("sftp_file") if isinstance(packet.meta, dict) else None
    if isinstance(source_file, str):
        doc["source_file"] = source_file
    if request_id:
        doc["request_id"] = request_id
    return (json.dumps(doc, ensure_ascii=False, indent=2) + "\n").encode("utf-8")


def same_delivery(existing: bytes, manifest: bytes) -> bool:
    """Whether a manifest found on the server is this delivery's, written by an earlier attempt."""
    try:
        found, ours = json.loads(existing), json.loads(manifest)
    except ValueError:
        return False
    if not isinstance(found, dict):
        return False
    for name in PER_ATTEMPT_FIELDS:
        found.pop(name, None)
        ours.pop(name, None)
    return bool(found == ours)


# -- unit → hub -------------------------------------------------------------------------------------

def parse_submission(raw: bytes, file: str) -> dict[str, Any]:
    """The fields of a unit's manifest, or a Problem saying what is wrong with it."""
    try:
        text = raw.decode("utf-8-sig")  # tolerate the BOM Windows editors add
    except UnicodeDecodeError:
        raise Problem("request.malformed", Text("the manifest is not UTF-8 text")) from None
    try:  # the same bounded, strict reading as a JSON request body
        doc = load_json(text)
    except Problem as exc:
        raise Problem(exc.code, Text("the manifest: {detail}", detail=exc.detail), **exc.extra) from None
    if not isinstance(doc, dict):
        raise Problem("request.invalid", Text("the manifest must be a JSON object"))
    unknown = sorted(set(doc) - set(SUBMISSION_FIELDS))
    if unknown:
        raise Problem("request.invalid",
                      Text("unknown field(s) in the manifest: {unknown} (allowed: {SUBMISSION_FIELDS})",
                           unknown=", ".join(unknown), SUBMISSION_FIELDS=", ".join(SUBMISSION_FIELDS)),
                      field=unknown[0])
    missing = [f for f in REQUIRED_FIELDS if f not in doc]
    if missing:
        raise Problem("request.invalid", Text("the manifest lacks: {missing}", missing=', '.join(missing)),
                      field=missing[0])
    if "file" in doc and doc["file"] != file:
        raise Problem("request.invalid", Text("file: the manifest describes {file!r}, not {file2!r}",
                                              file=doc['file'], file2=file),
                      field="file")
    if isinstance(doc["sha256"], str):
        doc["sha256"] = doc["sha256"].strip().lower()  # PowerShell's Get-FileHash prints upper case
    return doc


def submission_packet(fields: dict[str, Any], size: int, *, max_size: int, max_recipients: int,
                      now: datetime, meta: dict[str, Any]) -> NewPacket:
    """The packet a valid manifest asks for, checked by the same rules as `POST /v1/packets`."""
    if "size" in fields and fields["size"] != size:
        raise Problem("content.size_mismatch",
                      Text("size: the manifest says {size!r} bytes, the file has {size2}", size=fields['size'],
                           size2=size), field="size")
    body: dict[str, Any] = {
        "to": fields["to"], "subject": fields["subject"], "sha256": fields["sha256"], "size": size,
        "priority": fields.get("priority", 0), "data_type": fields.get("data_type", DEFAULT_DATA_TYPE),
    }
    if fields.get("deadline") is not None:
        body["deadline"] = fields["deadline"]
    new = parse_new_packet(body, max_size=max_size, max_recipients=max_recipients, now=now)
    return dataclasses.replace(new, meta=meta)


def done_manifest(fields: dict[str, Any], *, packet: PacketInfo, claim: str, hub_id: str) -> bytes:
    """The unit's manifest as kept in done/, with the packet it became."""
    doc = dict(fields)
    doc["lgsp"] = {"packet_id": packet.id, "claim": claim, "hub": hub_id,
                   "accepted_at": iso(packet.accepted_at) if packet.accepted_at else None}
    return (json.dumps(doc, ensure_ascii=False, indent=2) + "\n").encode("utf-8")


def error_document(problem: Problem, *, file: str, unit: str, claim: str, hub_id: str, at: datetime) -> bytes:
    """`F.error.json` in failed/: why the hub did not take the file."""
    doc = {"file": file, "unit": unit, "code": problem.code, "title": problem.title("vi"),
           "reason": i18n.render(problem.detail, "vi"), "reason_en": i18n.render(problem.detail, "en"),
           "failed_at": iso(at), "claim": claim, "hub": hub_id}
    return (json.dumps(doc, ensure_ascii=False, indent=2) + "\n").encode("utf-8")


def claim_of(raw: bytes | None, *, nested: bool) -> str | None:
    """The claim recorded in a done/ manifest (`lgsp.claim`) or a failed/ error file (`claim`)."""
    if raw is None:
        return None
    try:
        doc = json.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if nested:
        doc = doc.get("lgsp") if isinstance(doc, dict) else None
    value = doc.get("claim") if isinstance(doc, dict) else None
    return value if isinstance(value, str) else None
