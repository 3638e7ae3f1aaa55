"""Electronic identifiers of agencies ("mã định danh").

Two official forms exist side by side: QCVN 102:2016 (`000.00.00.H23`) and QĐ 20/2020/QĐ-TTg
(uppercase letters, digits and dots, at most 35 characters, first group a letter A–Y followed by
two digits). Real traffic also carries codes of other systems: irregular codes (`28.22.H17`,
`00.00.008.K99`), the national axis's system ids (`vxp.saas.02`) and vendors' own codes. A unit
registered as *legacy* may keep any such code: ASCII letters (either case) and digits in groups
joined by single dots, hyphens or underscores, at most 35 characters. What no system uses stays
refused even for legacy units: spaces, control characters, slashes, other punctuation, empty
groups (`A..B`, a leading or trailing dot) and anything longer.
"""

from __future__ import annotations

import re
import unicodedata

from lgsp.core.i18n import Text

# re.ASCII: `\d` must not match other scripts' digits; fullmatch: `$` would accept a trailing newline.
QCVN_102 = re.compile(r"\d{3}\.\d{2}\.\d{2}\.[A-Z]\d{2}", re.ASCII)
QD_20 = re.compile(r"[A-Y]\d{2}(\.[A-Z0-9]+)*", re.ASCII)
_LEGACY = re.compile(r"[A-Za-z0-9]+([._-][A-Za-z0-9]+)*", re.ASCII)
MAX_LENGTH = 35


class InvalidIdentifier(ValueError):
    @property
    def reason(self) -> str:
        """Why, as a `Text`: a config error or problem detail shows it in the reader's language."""
        text = self.args[0] if self.args else ""
        return text if isinstance(text, str) else str(text)


def identifier_form(code: str) -> str | None:
    """`qcvn102`, `qd20`, or None when the code follows neither official form."""
    if QCVN_102.fullmatch(code):
        return "qcvn102"
    if len(code) <= MAX_LENGTH and QD_20.fullmatch(code):
        return "qd20"
    return None


def check_identifier(code: str, *, legacy: bool = False) -> str:
    """Return the code if acceptable, else raise InvalidIdentifier saying why."""
    if not isinstance(code, str) or not code:
        raise InvalidIdentifier(Text("identifier must be a non-empty string"))
    if identifier_form(code):
        return code
    if legacy:
        if len(code) <= MAX_LENGTH and _LEGACY.fullmatch(code):
            return code
        raise InvalidIdentifier(Text(
            "{code!r}: even a legacy identifier must be groups of letters and digits joined by single "
            "dots, hyphens or underscores (e.g. 28.22.H17, vxp.saas.02), at most {most} characters",
            code=code, most=MAX_LENGTH))
    raise InvalidIdentifier(Text(
        "{code!r} follows neither QCVN 102:2016 (e.g. 000.00.00.H23) nor QĐ 20/2020 "
        "(e.g. H23.01.02); register it as a legacy unit if it is the code of another system "
        "(e.g. 28.22.H17, vxp.saas.02)", code=code))


def fold(text: str) -> str:
    """Case- and accent-insensitive form for directory search ("sở kế hoạch" finds "SỞ KẾ HOẠCH")."""
    text = text.replace("đ", "d").replace("Đ", "D")
    decomposed = unicodedata.normalize("NFD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
