"""One complete, valid submission of each form, as a web form or JSON would send it."""

from __future__ import annotations

from typing import Any

CONTACT = {"name": "Nguyễn Thị Ánh Tuyết", "position": "Chuyên viên", "department": "Văn phòng Sở",
           "email": "tuyet.nta@syt.example.gov.vn", "phone": "0251 3822 456"}
SUPPORT = {"name": "Trần Quốc Hưng", "department": "Phòng Hạ tầng số", "phone": "0912 345 678"}
REQUEST = {"number": "125/SYT-VP", "issued_on": "2026-03-02"}
AGENCY_HEAD = {"agency": "Sở Y tế", "parent_body": "UBND tỉnh Đồng Nai", "abbreviation": "SYT-VP",
               "number": "125", "place": "Đồng Nai", "issued_on": "2026-03-02",
               "signer": {"title": "Giám đốc", "name": "Phạm Văn Đức"},
               "copies_to": ["Ban Giám đốc Sở"], "archive_unit": "VP"}
REPLY_HEAD = {"agency": "Sở Y tế", "request": REQUEST, "number": "45", "issued_on": "2026-03-06",
              "signer": {"title": "Phó Giám đốc", "on_behalf_of": "Giám đốc", "name": "Lê Thị Hồng Nhung"},
              "copies_to": ["Trung tâm (để thực hiện)"], "archive_unit": "KHTC"}

SAMPLES: dict[str, dict[str, Any]] = {
    "01": {**AGENCY_HEAD, "contact": CONTACT,
           "legal_bases": ["Quyết định số 456/QĐ-UBND ngày 10/01/2025 phê duyệt dự án Hệ thống quản lý văn bản"],
           "application_name": "Hệ thống quản lý văn bản và điều hành", "application_abbreviation": "QLVBĐH",
           "developer": "Công ty Cổ phần Phần mềm Đồng Xanh"},
    "02": {**REPLY_HEAD, "support_contact": SUPPORT},
    "03": {**AGENCY_HEAD, "contact": CONTACT, "legal_bases": ["Kế hoạch số 12/KH-SYT ngày 05/01/2026 của Sở Y tế"]},
    "04": {**REPLY_HEAD, "support_contact": SUPPORT},
    "05": {"number": "7", "form_04": {"number": "45/TTCNTT", "issued_on": "2026-03-06"}, "form_03": REQUEST,
           "handover_at": "2026-03-09T09:30", "handover_place": "Phòng họp tầng 3, Trung tâm",
           "party_a": {"name": "Trần Quốc Hưng", "position": "Trưởng phòng Hạ tầng số"},
           "party_b": {"name": "Nguyễn Thị Ánh Tuyết", "position": "Chuyên viên", "representing": "Sở Y tế"}},
    "06": {**AGENCY_HEAD, "contact": CONTACT, "application_name": "Cổng dịch vụ cũ",
           "application_abbreviation": "CDV"},
    "07": dict(REPLY_HEAD),
}
