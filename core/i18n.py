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

import errno
import functools
import gettext as _gettext
import io
import os
import re
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


# A message kept as its English text (a delivery's `reason` and `last_error`, the reason of a packet's
# event) is stored as written, the same for every reader and for the API; each reader sees it in their
# language by matching it against the catalogue's msgids when it is shown (`render_stored`).
_FIELD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(![rsa])?(?::[^{}]*)?\}")
#: A msgid needs this many letters outside its placeholders to be matched (`{a}: {b}` says nothing).
_MIN_LETTERS = 6
_MAX_DEPTH = 4


def _literal(piece: str) -> str:
    return piece.replace("{{", "{").replace("}}", "}")


@cache
def _stored_patterns() -> tuple[tuple[str, str, int, re.Pattern[str]], ...]:
    """(msgid, its longest literal piece, its letter count, its pattern), the most telling first."""
    from babel.messages.pofile import read_po

    with catalogue_path("en").open("rb") as fh:
        catalog = read_po(fh, locale="en", domain=DOMAIN)
    out = []
    for entry in catalog:
        msgid = entry.id
        if not isinstance(msgid, str) or not msgid or not _FIELD.search(msgid):
            continue
        pieces = [_literal(p) for p in _FIELD.split(msgid)[::3]]
        letters = sum(ch.isalpha() for piece in pieces for ch in piece)
        if letters < _MIN_LETTERS:
            continue
        pattern, seen = [re.escape(pieces[0])], set()
        for index, field in enumerate(_FIELD.finditer(msgid)):
            # A name shown twice (once with !r) is captured each time, by name and conversion.
            key = field.group(1) + (field.group(2) or "").replace("!", "__")
            group = key if key not in seen else f"{key}___{index}"
            seen.add(key)
            pattern.append(f"(?P<{group}>.+?)" + re.escape(pieces[index + 1]))
        out.append((msgid, max(pieces, key=len), letters, sum(map(len, pieces)), re.compile("".join(pattern), re.S)))
    # The msgid that explains most of the text wins: most letters, then most literal characters.
    return tuple((m, piece, n, p) for m, piece, n, _chars, p in sorted(out, key=lambda p: (-p[2], -p[3])))


@functools.lru_cache(maxsize=4096)
def _render_stored(text: str, lang: str, depth: int = 0) -> str:
    exact = translations(lang).gettext(text)
    if exact != text or depth >= _MAX_DEPTH:
        return exact
    for msgid, piece, _letters, pattern in _stored_patterns():
        if piece not in text:
            continue
        match = pattern.fullmatch(text)
        if match is None:
            continue
        values = {name: _render_stored(value, lang, depth + 1) for name, value in match.groupdict().items()
                  if "___" not in name}
        translated = translations(lang).gettext(msgid)
        out, at = [], 0
        for field in _FIELD.finditer(translated):
            key = field.group(1) + (field.group(2) or "").replace("!", "__")
            out += [_literal(translated[at:field.start()]), values.get(key, values.get(field.group(1), field.group(0)))]
            at = field.end()
        return "".join([*out, _literal(translated[at:])])
    return text


def render_stored(text: str | None, lang: str | None = None) -> str:
    """A message stored as its English text, in `lang` (the current language when None): the msgid it
    was written from is found by its literal words, its values rendered the same way; what no msgid
    matches (a library's or a remote server's own words) stays as it is."""
    if not text:
        return ""
    if isinstance(text, Text):
        return text.render(lang)
    return _render_stored(str(text), normalise(lang) or current())


#: The OS errors an operator meets most, by errno: in the catalogues, so the sentence reads in the
#: reader's language (any other keeps the OS's own words, after a translated lead-in).
_ERRNO_TEXTS = {
    errno.ENOENT: N_("no such file or folder"),
    errno.EACCES: N_("permission denied"),
    errno.EPERM: N_("operation not permitted"),
    errno.ENOSPC: N_("no space left on the device"),
    errno.EEXIST: N_("already exists"),
    errno.ENOTDIR: N_("not a folder"),
    errno.EISDIR: N_("is a folder"),
    errno.EROFS: N_("read-only file system"),
    errno.EADDRINUSE: N_("address already in use"),
    errno.EADDRNOTAVAIL: N_("address not available on this machine"),
    errno.ECONNREFUSED: N_("connection refused"),
    errno.ETIMEDOUT: N_("timed out"),
    errno.EHOSTUNREACH: N_("host unreachable"),
    errno.ENETUNREACH: N_("network unreachable"),
}


def os_reason(exc: BaseException) -> str:
    """Why an OS call failed, as a person reads it: a `Text` for the common errnos, else the OS's own
    words (`strerror`) or the exception's text."""
    number = getattr(exc, "errno", None)
    if isinstance(number, int) and number in _ERRNO_TEXTS:
        return Text(_ERRNO_TEXTS[number])
    return getattr(exc, "strerror", None) or str(exc)
