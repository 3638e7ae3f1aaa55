"""Keeping the catalogues in step with the source: extract the marked strings, update, check.

`make messages` (python -m lgsp.core.i18n_catalogues) adds every newly marked string to both
catalogues (English: the msgid itself; Vietnamese: empty until translated) and drops strings no
longer marked; tests/test_i18n.py fails while a string lacks a translation or a placeholder
differs. Catalogues are written sorted and without source locations, so two branches adding
strings rarely touch the same lines.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po, write_po

from lgsp.core.i18n import DOMAIN, LANGUAGES

#: The repository's code folders (installed as lgsp.<folder>) whose strings are extracted.
SOURCE_FOLDERS = ("core", "plugins", "adapters", "client", "cli")

#: The marking functions the extractor knows (core/i18n.py; `t` is the CLI's name for `_`).
KEYWORDS: dict[str, tuple[int, ...] | None] = {"_": None, "N_": None, "Text": None, "t": None, "gettext": None,
                                                "ngettext": (1, 2)}

METHOD_MAP = [("**/templates/**.html", "jinja2.ext:babel_extract"), ("**.py", "python")]
OPTIONS_MAP = {"**/templates/**.html": {"trimmed": "true", "trim_blocks": "true", "lstrip_blocks": "true"}}

# The headers carry no moving date, so updating the catalogues changes only the entries.
_FIXED_DATE = datetime(2026, 1, 1, tzinfo=UTC)

_PLACEHOLDER = re.compile(r"\{[A-Za-z_][A-Za-z0-9_]*(?:![rsa])?(?::[^{}]*)?\}|%\([A-Za-z_][A-Za-z0-9_]*\)[sdr]|%[sdr]")


def repository_root() -> Path:
    return Path(__file__).resolve().parent.parent


def po_path(lang: str, root: Path | None = None) -> Path:
    return (root or repository_root()) / "core" / "locale" / lang / "LC_MESSAGES" / f"{DOMAIN}.po"


def extract(root: Path | None = None) -> dict[str, list[str]]:
    """Every marked string of the source: msgid → the places (`file:line`) that use it."""
    base = root or repository_root()
    found: dict[str, list[str]] = {}
    for folder in SOURCE_FOLDERS:
        for filename, lineno, message, _comments, _context in extract_from_dir(
                base / folder, METHOD_MAP, OPTIONS_MAP, keywords=KEYWORDS):
            for msgid in message if isinstance(message, tuple) else (message,):
                if msgid:
                    found.setdefault(msgid, []).append(f"{folder}/{filename}:{lineno}")
    return found


def read(lang: str, root: Path | None = None) -> Catalog:
    path = po_path(lang, root)
    if not path.exists():
        return Catalog(locale=lang, domain=DOMAIN)
    with path.open("rb") as fh:
        return read_po(fh, locale=lang, domain=DOMAIN)


def write(catalog: Catalog, lang: str, root: Path | None = None) -> None:
    path = po_path(lang, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        write_po(fh, catalog, width=120, no_location=True, sort_output=True, omit_header=False)


def placeholders(text: str) -> set[str]:
    return set(_PLACEHOLDER.findall(text))


def update(root: Path | None = None, seed: dict[str, dict[str, str]] | None = None) -> dict[str, int]:
    """Bring both catalogues in step with the source; `seed` gives translations to fill (lang → msgid → text)."""
    marked = extract(root)
    counts: dict[str, int] = {}
    for lang in LANGUAGES:
        old = read(lang, root)
        new = Catalog(locale=lang, domain=DOMAIN, project="lgsp", version="1", fuzzy=False,
                      copyright_holder="lgsp", msgid_bugs_address="-", creation_date=_FIXED_DATE,
                      revision_date=_FIXED_DATE, last_translator="lgsp", language_team=lang)
        for msgid in marked:
            kept = old.get(msgid)
            text = kept.string if kept is not None and not kept.fuzzy and isinstance(kept.string, str) else ""
            text = (seed or {}).get(lang, {}).get(msgid, text) or text
            if not text and lang == "en":
                text = msgid              # the source text is English
            new.add(msgid, text)
        write(new, lang, root)
        counts[lang] = sum(1 for m in new if m.id and not m.string)
    return counts


def problems(root: Path | None = None) -> list[str]:
    """What keeps the catalogues from covering the source: one line per missing, empty or mismatched entry."""
    marked = extract(root)
    out: list[str] = []
    for lang in LANGUAGES:
        catalog = read(lang, root)
        for msgid, where in sorted(marked.items()):
            entry = catalog.get(msgid)
            if entry is None:
                out.append(f"{lang}: missing {msgid!r} ({where[0]})")
            elif entry.fuzzy:
                out.append(f"{lang}: fuzzy {msgid!r} ({where[0]})")
            elif not isinstance(entry.string, str) or not entry.string.strip():
                out.append(f"{lang}: untranslated {msgid!r} ({where[0]})")
            elif placeholders(entry.string) != placeholders(msgid):
                out.append(f"{lang}: placeholders differ in {msgid!r}: {sorted(placeholders(entry.string))} "
                           f"for {sorted(placeholders(msgid))} ({where[0]})")
    return out


def main(argv: Iterable[str] = ()) -> int:
    args = list(argv)
    if args[:1] == ["check"]:
        found = problems()
        print("\n".join(found) or "the catalogues cover every marked string")
        return 1 if found else 0
    counts = update()
    for lang, missing in counts.items():
        print(f"{po_path(lang)}: {missing} strings to translate")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
