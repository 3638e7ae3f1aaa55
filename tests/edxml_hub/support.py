"""Builders and helpers for the hub-side edXML tests (REST and SOAP).

Packets are built with the edXML library from the JSON form, so each test states exactly who
sends what to whom; the real-world-shaped fixtures of tests/edxml/fixtures are used as they are.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import zipfile
from pathlib import Path
from typing import Any

from lgsp.core.edxml import build_packet, parse_packet
from lgsp.core.hub import Hub

FIXTURES = Path(__file__).resolve().parents[1] / "edxml" / "fixtures"
PLUGINS = "[rest, edxml, soap_edxml]"
HUB_ID = "000.00.99.H45"

# Units of the fixtures: the provincial People's Committee sends, departments and a legacy commune receive.
A = "000.00.00.H45"   # UBND tỉnh (From of edoc_new)
B = "000.02.31.H45"   # Sở TT&TT (To; From of the status fixtures)
C = "28.22.H17"       # legacy code, must be registered as legacy
D = "000.00.00.H41"   # UBND tỉnh Nghệ An


def fixture(name: str) -> bytes:
    return (FIXTURES / f"{name}.edxml").read_bytes()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def organisation(organ_id: str, name: str | None = None) -> dict[str, str]:
    return {"organ_id": organ_id, "organization_in_charge": name or f"Đơn vị {organ_id}",
            "organ_name": name or f"Đơn vị {organ_id}", "organ_add": "Tam Kỳ, Quảng Nam", "email": "",
            "telephone": "", "fax": "", "website": ""}


def edoc_json(sender: str, recipients: list[str], *, number: str = "125", notation: str = "UBND-VP",
              subject: str = "V/v triển khai chuyển đổi số năm 2024", document_id: str | None = None,
              business: str = "0", response_for: list[dict[str, str]] | None = None,
              replaces: list[str] | None = None, priority: str = "1", due_date: str = "2024/06/30",
              files: dict[str, bytes] | None = None) -> tuple[dict[str, Any], dict[str, bytes]]:
    """An edoc in the JSON form and its attachment files (ContentId -> bytes)."""
    files = files if files is not None else {"cid:1": "Nội dung công văn — bản thử nghiệm.\n".encode()}
    document_id = document_id or f"{sender},2024/03/15,{number}/{notation}"
    bussiness: dict[str, Any] = {"bussiness_doc_type": business, "bussiness_doc_reason": "Văn bản điện tử mới",
                                 "paper": "0", "staff_info": {"department": "Văn thư", "staff": "Trần Thị B",
                                                              "email": "", "mobile": ""}}
    if business in ("0", "2"):
        bussiness = {"document_id": document_id, **bussiness}
    if replaces:
        bussiness["replacement_info_list"] = [{"document_id": d, "organ_id_list": recipients} for d in replaces]
    document = {
        "format": "edxml-json/1", "kind": "edoc",
        "message_header": {
            "from": organisation(sender), "to": [organisation(r) for r in recipients],
            "document_id": document_id, "code": {"code_number": number, "code_notation": notation},
            "promulgation_info": {"place": "Quảng Nam", "promulgation_date": "2024/03/15"},
            "document_type": {"type": "1", "type_detail": "0", "type_name": "Công văn"},
            "subject": subject, "content": "Đề nghị các đơn vị triển khai & báo cáo.",
            "signer_info": {"competence": "TL. CHỦ TỊCH", "position": "Chánh Văn phòng", "full_name": "Nguyễn Văn A"},
            "due_date": due_date,
            "other_info": {"priority": priority, "sphere_of_promulgation": "Liên thông văn bản quốc gia",
                           "typer_notation": "TTH", "promulgation_amount": "1", "page_amount": "1"},
            "response_for": response_for or [],
            "steering_type": "1", "to_places": ["Như trên"],
        },
        "trace_header_list": {"trace_header": [{"organ_id": sender, "timestamp": "2024/03/15 08:15:30"}],
                              "bussiness": bussiness},
        "attachments": [{"content_id": cid, "attachment_name": f"tep-{i}.txt", "content_type": "text/plain",
                         "description": f"Tệp {i}"} for i, cid in enumerate(files, 1)],
    }
    return document, files


def edoc(sender: str, recipients: list[str], **kwargs: Any) -> bytes:
    """An edoc packet (edXML bytes)."""
    document, files = edoc_json(sender, recipients, **kwargs)
    out = io.BytesIO()
    build_packet(document, out, attachments={cid: io.BytesIO(data) for cid, data in files.items()})
    return out.getvalue()


def status_json(sender: str, other: str, document_id: str, code: str, description: str = "") -> dict[str, Any]:
    return {"format": "edxml-json/1", "kind": "status", "message_header": {
        "from": organisation(sender),
        "response_for": {"organ_id": other, "code": "125/UBND-VP", "document_id": document_id,
                         "promulgation_date": "2024/03/15"},
        "staff_info": {"department": "Văn thư", "staff": "Lê Văn C", "email": "", "mobile": ""},
        "status_code": code, "description": description or f"Trạng thái {code}",
        "timestamp": "2024/03/15 09:03:00"}}


def status(sender: str, other: str, document_id: str, code: str, description: str = "") -> bytes:
    out = io.BytesIO()
    build_packet(status_json(sender, other, document_id, code, description), out)
    return out.getvalue()


def bundle(document: dict[str, Any], files: dict[str, bytes]) -> bytes:
    """An edxml+json ZIP bundle: edxml.json plus one member per attachment, named by its `ref`."""
    document = copy.deepcopy(document)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for entry in document.get("attachments", []):
            name = f"files/{entry['attachment_name']}"
            entry["ref"] = name
            zf.writestr(name, files[entry["content_id"]])
        zf.writestr("edxml.json", json.dumps(document, ensure_ascii=False))
    return buf.getvalue()


def document_id_of(data: bytes) -> str:
    return parse_packet(data).document_id


async def add_units(hub: Hub) -> None:
    """The fixtures' units (C with its legacy code)."""
    for unit, legacy in ((A, False), (B, False), (C, True), (D, False)):
        if await hub.directory.get_unit(unit) is None:
            await hub.directory.add_unit(unit, f"Đơn vị {unit}", legacy=legacy)


def blob_files(hub: Hub) -> list[Path]:
    return sorted(p for p in hub.blobs.objects.rglob("*") if p.is_file())
