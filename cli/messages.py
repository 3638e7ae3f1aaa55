"""Words the CLI shows people, through the gettext catalogues (core/i18n.py, docs/i18n.md).

Vietnamese by default, English with LGSP_LANG=en; the text in the code is the English msgid:
`t("unit {unit}: {status}", unit=..., status=...)`.
"""

from __future__ import annotations

from lgsp.core.i18n import LANGUAGES, N_, Text, current, gettext, ngettext, unknown_language
from lgsp.core.i18n import _ as t

__all__ = ["LANGUAGES", "N_", "Text", "gettext", "lang", "ngettext", "t", "unknown_language"]


def lang() -> str:
    """`vi` or `en`: the CLI's language (LGSP_LANG; Vietnamese when unset)."""
    return current()
