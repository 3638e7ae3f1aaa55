"""Electronic identifiers of agencies ("mã định danh").

Two official forms exist side by side: QCVN 102:2016 (`000.00.00.H23`) and QĐ 20/2020/QĐ-TTg
(uppercase letters, digits and dots, at most 35 characters, first group a letter A–Y followed by
two digits). Real traffic also carries irregular codes (`28.22.H17`), so a unit registered as
*legacy* may keep any code made of the QĐ 20 character set.
"""

from __future__ import annotations

import re
import unicodedata

QCVN_102 = re.compile(r"^\d{3}\.\d{2}\.\d{2}\.[A-Z]\d{2}$")
QD_20 = re.compile(r"^[A-Y]\d{2}(\.[A-Z0-9]+)*$")
_LEGACY = re.compile(r"^[A-Z0-9]+(\.[A-Z0-9]+)*$")
MAX_LENGTH = 35


class InvalidIdentifier(ValueError):
    pass


def identifier_form(code: str) -> str | None:
    """`qcvn102`, `qd20`, or None when the code follows neither official form."""
    if QCVN_102.match(code):
        return "qcvn102"
    if len(code) <= MAX_LENGTH and QD_20.match(code):
        return "qd20"
    return None


def check_identifier(code: str, *, legacy: bool = False) -> str:
    """Return the code if acceptable, else raise InvalidIdentifier saying why."""
    if not isinstance(code, str) or not code:
        raise InvalidIdentifier("identifier must be a non-empty string")
    if identifier_form(code):
        return code
    if legacy:
        if len(code) <= MAX_LENGTH and _LEGACY.match(code):
            return code
        raise InvalidIdentifier(
            f"{code!r}: even a legacy identifier must be uppercase letters, digits and dots, "
            f"at most {MAX_LENGTH} characters")
    raise InvalidIdentifier(
        f"{code!r} follows neither QCVN 102:2016 (e.g. 000.00.00.H23) nor QĐ 20/2020 "
        f"(e.g. H23.01.02); register it as a legacy unit if it is a known irregular code")


def fold(text: str) -> str:
    """Case- and accent-insensitive form for directory search ("sở kế hoạch" finds "SỞ KẾ HOẠCH")."""
    text = text.replace("đ", "d").replace("Đ", "D")
    decomposed = unicodedata.normalize("NFD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
