"""The stable error codes every adapter reports.

One catalogue so REST problems, SOAP faults and CLI messages all speak the same codes; the HTTP
status and the localised title come from here, the detail from the place that raised it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lgsp.core.i18n import render


@dataclass(frozen=True, slots=True)
class ErrorKind:
    status: int
    title_vi: str
    title_en: str


CATALOGUE: dict[str, ErrorKind] = {
    "auth.missing": ErrorKind(401, "Thiếu hoặc sai định dạng thông tin xác thực",
                              "Authentication header missing or malformed"),
    "auth.unknown_key": ErrorKind(401, "Khóa truy cập không tồn tại", "Unknown access key"),
    "auth.revoked_key": ErrorKind(401, "Khóa truy cập đã bị thu hồi", "Access key revoked"),
    "auth.clock_skew": ErrorKind(401, "Thời gian yêu cầu lệch quá giới hạn cho phép",
                                 "Request time outside the allowed clock skew"),
    "auth.replay": ErrorKind(401, "Nonce đã được sử dụng", "Nonce already used"),
    "auth.bad_signature": ErrorKind(401, "Chữ ký không hợp lệ", "Signature does not verify"),
    "auth.bad_session": ErrorKind(401, "Phiên làm việc không hợp lệ hoặc đã hết hạn",
                                  "Session token invalid or expired"),
    "auth.bad_ticket": ErrorKind(401, "Vé mở luồng sự kiện không hợp lệ, đã dùng hoặc đã hết hạn",
                                 "Event stream ticket invalid, already used or expired"),
    "auth.bad_certificate": ErrorKind(401, "Chứng thư số máy khách không đúng chứng thư đã đăng ký cho đơn vị",
                                      "Client certificate missing or not the one registered for the unit"),
    "auth.not_permitted": ErrorKind(403, "Chính sách liên thông không cho phép gửi tới đơn vị này",
                                    "The communication policy does not let this source reach that destination"),
    "forbidden": ErrorKind(403, "Không có quyền thực hiện", "Forbidden"),
    "not_found": ErrorKind(404, "Không tìm thấy", "Not found"),
    "method_not_allowed": ErrorKind(405, "Phương thức không được hỗ trợ", "Method not allowed"),
    "conflict": ErrorKind(409, "Xung đột trạng thái", "Conflict with the current state"),
    "transfer.expired": ErrorKind(410, "Địa chỉ tải lên/tải về đã hết hạn", "Transfer URL expired"),
    "content.gone": ErrorKind(410, "Nội dung không còn lưu trên trục", "Content no longer held by the hub"),
    "content.hash_mismatch": ErrorKind(400, "Mã băm nội dung không khớp",
                                       "Content SHA-256 does not match"),
    "content.size_mismatch": ErrorKind(400, "Kích thước nội dung không khớp",
                                       "Content size does not match the declared size"),
    "content.range_not_satisfiable": ErrorKind(416, "Khoảng dữ liệu yêu cầu không hợp lệ",
                                               "Requested range not satisfiable"),
    "content.too_large": ErrorKind(413, "Nội dung vượt quá kích thước cho phép", "Content too large"),
    "request.malformed": ErrorKind(400, "Yêu cầu sai định dạng", "Malformed request"),
    "request.invalid": ErrorKind(422, "Dữ liệu yêu cầu không hợp lệ", "Invalid request data"),
    "route.unknown_destination": ErrorKind(422, "Đơn vị nhận không tồn tại", "Unknown destination"),
    "route.unsupported_data_type": ErrorKind(422, "Tuyến đến đơn vị nhận không chuyển được loại dữ liệu này",
                                             "The route to a destination cannot carry this data type"),
    "edxml.invalid": ErrorKind(422, "Gói tin edXML không hợp lệ", "Invalid edXML packet"),
    "edxml.malformed": ErrorKind(400, "Gói tin edXML sai cú pháp XML", "Malformed edXML (not well-formed)"),
    "edxml.unsafe": ErrorKind(400, "Gói tin edXML chứa cấu trúc không an toàn",
                              "Unsafe XML construct (DTD or entity)"),
    "edxml.too_large": ErrorKind(413, "Gói tin edXML vượt quá giới hạn", "edXML packet exceeds limits"),
    "edxml.sender_mismatch": ErrorKind(403, "Đơn vị gửi trong gói tin không khớp với đơn vị xác thực",
                                       "edXML sender is not the authenticated unit"),
    "edxml.destination_mismatch": ErrorKind(422, "Đơn vị nhận trong gói tin không khớp với danh sách nhận của yêu cầu",
                                            "edXML recipients (To) differ from the request's destinations"),
    "unavailable": ErrorKind(503, "Dịch vụ tạm thời không sẵn sàng", "Service temporarily unavailable"),
    "internal": ErrorKind(500, "Lỗi hệ thống", "Internal error"),
}


class Problem(Exception):
    """An error the caller can act on, identified by a stable code from CATALOGUE.

    `detail` is best a `Text` (core/i18n.py): `to_dict(lang)` renders it in the reader's language."""

    def __init__(self, code: str, detail: str = "", **extra: Any) -> None:
        if code not in CATALOGUE:
            raise ValueError(f"unknown problem code {code!r}")
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.detail = detail
        self.extra = extra

    @property
    def status(self) -> int:
        return CATALOGUE[self.code].status

    def title(self, lang: str = "vi") -> str:
        kind = CATALOGUE[self.code]
        return kind.title_en if lang == "en" else kind.title_vi

    def to_dict(self, lang: str = "vi") -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": f"urn:lgsp:problem:{self.code}",
            "title": self.title(lang),
            "status": self.status,
            "code": self.code,
            "detail": render(self.detail, lang),
        }
        body.update(self.extra)
        return body


#: The hub's own codes; a plugin may not redefine them.
CORE_CODES = frozenset(CATALOGUE)


def register_code(code: str, status: int, title_vi: str, title_en: str) -> None:
    """Add a plugin's code to the catalogue (the hub does it from `lgsp_problem_codes` at start-up).

    Idempotent for the same definition, so several hubs in one process can collect the same
    plugins; a core code, or a code already defined differently, is refused with ValueError.
    """
    if code in CORE_CODES:
        raise ValueError(f"problem code {code!r} is one of the hub's own codes")
    existing = CATALOGUE.get(code)
    if existing is not None and existing != ErrorKind(status, title_vi, title_en):
        raise ValueError(f"problem code {code!r} is already registered differently")
    CATALOGUE[code] = ErrorKind(status, title_vi, title_en)
