"""One language at a time: every word a person reads goes through gettext catalogues.

The source text (the msgid) is English, written where the message is raised or printed; the
catalogues `core/locale/{vi,en}/LC_MESSAGES/lgsp.po` translate it. Vietnamese is the default
language, English is chosen with `LGSP_LANG=en` (the CLI, logs a person reads) or per request
(`Accept-Language: en` for problem details and SOAP faults; the console's language switch).
The catalogues are read with Babel when first needed (no compiled `.mo` file to keep in step),
and `make messages` brings them up to date with the marked strings (docs/i18n.md).

Marking, so the extractor finds a string:
- `_("text {name}", name=value)`: translated now, into the current language;
- `Text("text {name}", name=value)`: translated later, into the language of whoever reads it (a
  problem's detail: the HTTP answer picks the request's language); a `str` whose own value is the
  English text, so code and logs that treat it as a string keep working;
- `N_("text")`: only marks a constant that is translated where it is shown.
Placeholders are `str.format` names; the catalogues must keep the same names.
"""

from __future__ import annotations

import gettext as _gettext
import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import cache
from importlib import resources
from typing import Any

#: The languages lgsp speaks, the default first.
LANGUAGES = ("vi", "en")
DEFAULT = "vi"
DOMAIN = "lgsp"

# The language of the request or session being served; None means "from LGSP_LANG".
_current: ContextVar[str | None] = ContextVar("lgsp_language", default=None)


def normalise(value: str | None) -> str | None:
    """`vi`/`en` for `vi`, `en_US.UTF-8`, `en-GB`, ...; None for an empty or unknown value."""
    base = (value or "").strip().lower().replace("-", "_").split("_", 1)[0].split(".", 1)[0]
    return base if base in LANGUAGES else None


def unknown_language() -> str | None:
    """The LGSP_LANG value when it names no language lgsp speaks, else None."""
    value = os.environ.get("LGSP_LANG", "").strip()
    return value if value and normalise(value) is None else None


def env_language() -> str:
    return normalise(os.environ.get("LGSP_LANG")) or DEFAULT


def current() -> str:
    """The language being spoken now: the request's or session's, else LGSP_LANG's, else Vietnamese."""
    return _current.get() or env_language()


@contextmanager
def speaking(lang: str | None) -> Iterator[str]:
    """Speak `lang` (normalised; the default when unknown) inside the block."""
    chosen = normalise(lang) or DEFAULT
    token = _current.set(chosen)
    try:
        yield chosen
    finally:
        _current.reset(token)


def from_accept_language(header: str | None) -> str:
    """The first language of an Accept-Language header lgsp speaks, by q-value; Vietnamese otherwise."""
    best, best_q = DEFAULT, -1.0
    for position, part in enumerate((header or "").split(",")):
        tag, _sep, params = part.strip().partition(";")
        lang = normalise(tag)
        if lang is None:
            continue
        q = 1.0
        for param in params.split(";"):
            name, _eq, value = param.strip().partition("=")
            if name.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if q > best_q and q > 0:
            best, best_q = lang, q - position * 1e-6
    return best


def catalogue_path(lang: str) -> resources.abc.Traversable:
    return resources.files("lgsp.core").joinpath("locale", lang, "LC_MESSAGES", f"{DOMAIN}.po")


@cache
def translations(lang: str) -> _gettext.NullTranslations:
    """The catalogue of `lang`, compiled in memory from its `.po` the first time it is needed."""
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    path = catalogue_path(lang)
    if not path.is_file():
        return _gettext.NullTranslations()
    with path.open("rb") as fh:
        catalog = read_po(fh, locale=lang, domain=DOMAIN)
    compiled = io.BytesIO()
    write_mo(compiled, catalog, use_fuzzy=False)
    compiled.seek(0)
    return _gettext.GNUTranslations(compiled)


def gettext(msgid: str, lang: str | None = None) -> str:
    """`msgid` in `lang` (the current language when None); the msgid itself when untranslated."""
    if not msgid:
        return msgid
    return translations(normalise(lang) or current()).gettext(msgid)


def ngettext(singular: str, plural: str, n: int, lang: str | None = None) -> str:
    return translations(normalise(lang) or current()).ngettext(singular, plural, n)


def _(msgid: str, /, **values: Any) -> str:
    """`msgid` translated into the current language, its `{names}` filled from `values` (a `Text` among
    them in the current language too)."""
    text = gettext(msgid)
    if not values:
        return text
    return text.format(**{k: v.render() if isinstance(v, Text) else v for k, v in values.items()})


def N_(msgid: str, /) -> str:
    """Marks `msgid` for the catalogues without translating it (it is translated where shown)."""
    return msgid


class Text(str):
    """A message translated when it is read, into the reader's language (see the module docstring)."""

    msgid: str
    values: dict[str, Any]

    def __new__(cls, msgid: str, /, **values: Any) -> Text:
        self = super().__new__(cls, msgid.format(**values) if values else msgid)
        self.msgid = msgid
        self.values = values
        return self

    def render(self, lang: str | None = None) -> str:
        text = gettext(self.msgid, lang)
        if not self.values:
            return text
        return text.format(**{k: v.render(lang) if isinstance(v, Text) else v for k, v in self.values.items()})


def render(text: str | None, lang: str | None = None) -> str:
    """A `Text` in `lang`; a plain string translated when it is a msgid of the catalogues, else as is."""
    if not text:
        return ""
    if isinstance(text, Text):
        return text.render(lang)
    return gettext(text, lang)
