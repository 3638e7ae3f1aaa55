"""Checks of single values shared by the forms and the configuration.

They answer yes or no (or why, in a word) and leave the wording to the caller: the forms speak
Vietnamese to the person filling them in, the configuration English to the operator.
"""

from __future__ import annotations

import re
import unicodedata

import phonenumbers
from email_validator import EmailNotValidError, validate_email

# Invisible characters that reorder text on screen and print (a "Trojan source" spoofing aid).
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
# What a person types into a phone field: digits and the usual separators, an optional leading +.
_PHONE_CHARS = re.compile(r"^\+?[(0-9][0-9 .()\-]{5,28}[0-9]$")
# Abbreviations of bodies in document symbols: SYT, UBND, SKHCN-VP, QĐ-UBND.
_ABBREVIATION = re.compile(r"^[^\W_]+(?:-[^\W_]+)*$")


def text_problem(value: object) -> str | None:
    """Why `value` is not one line of printable text, in a word ('type', 'utf-8', 'control'), or None.

    A Python str may still hold lone surrogates (from JSON escapes or surrogateescape decoding) that
    no UTF-8 file or .docx can carry, so encodability is checked as well as control characters."""
    if not isinstance(value, str):
        return "type"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "utf-8"
    for ch in value:
        if ch in _BIDI_CONTROLS or unicodedata.category(ch) == "Cc":
            return "control"
    return None


def normalize_text(value: str) -> str:
    """NFC (composed diacritics: text typed on some systems arrives decomposed and prints badly) and trimmed."""
    return unicodedata.normalize("NFC", value).strip()


def is_valid_email(value: str) -> bool:
    """Syntax only: no DNS look-up (agencies' mail domains need not resolve from the hub)."""
    try:
        validate_email(value, check_deliverability=False)
    except EmailNotValidError:
        return False
    return True


def normalize_email(value: str) -> str:
    return validate_email(value, check_deliverability=False).normalized


def is_valid_phone(value: str) -> bool:
    """A number that exists in the numbering plan; Vietnamese unless written with a + country code."""
    if not _PHONE_CHARS.match(value):
        return False
    try:
        number = phonenumbers.parse(value, "VN")
    except phonenumbers.NumberParseException:
        return False
    return phonenumbers.is_valid_number(number)


def is_valid_abbreviation(value: str) -> bool:
    return bool(_ABBREVIATION.match(value))
