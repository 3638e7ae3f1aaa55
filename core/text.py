"""Text from outside, checked once at the edge, so no store, log line or answer meets what it cannot hold.

Every adapter hands what a client sent (headers, path and query parameters, JSON bodies, SOAP
fields, SFTP manifests) through these checks before anything else looks at it:

- valid UTF-8: bytes are decoded strictly, and a `\\ud800`-style escape (a lone surrogate, which no
  UTF-8 encoder and no PostgreSQL text column accepts) is refused like a bad byte;
- no NUL anywhere (PostgreSQL text cannot hold one) and no other C0 control characters where they
  make no sense (identifiers, single-line values); free text keeps tab, line feed and return;
- bounded: lengths per field, JSON nesting depth (Python's parser recurses and would raise
  RecursionError on `[[[[…`), digits of a number (`int()` of 5000 digits is refused by Python, and
  costly before that).

A value that cannot be parsed at all is `request.malformed`; a parsed value that breaks a rule is
`request.invalid` naming the field. Headers of the signed-request protocol are ASCII by definition;
`ascii_header_problem` says why one is not, for `auth.missing`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from itertools import accumulate
from typing import Any
from urllib.parse import unquote_to_bytes

from lgsp.core.errors import Problem
from lgsp.core.i18n import Text

#: Deepest JSON nesting accepted (objects and arrays); requests and manifests need a handful.
MAX_JSON_DEPTH = 64
#: Longest number literal accepted in JSON (digits, sign, dot, exponent).
MAX_NUMBER_CHARS = 40
#: Longest header value of the signed-request protocol (an RSA-4096 signature is 690 characters).
MAX_HEADER = 2048

# Control characters and lone surrogates: every C0 control and DEL for single-line values; free
# text (multiline) keeps tab, line feed and carriage return.
_BAD_LINE = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")
_BAD_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
# What no store can hold in any JSON string: NUL and lone surrogates.
_BAD_JSON_STRING = re.compile("[\x00\ud800-\udfff]")
_PRINTABLE_ASCII = re.compile(r"^[\x20-\x7e]*$")
# For the depth scan: escapes first (so `\\"` ends no string), then string literals (brackets
# inside strings do not nest). Two linear passes; one pattern for both backtracks quadratically.
_JSON_ESCAPE = re.compile(rb"\\.", re.DOTALL)
_JSON_STRING = re.compile(rb'"[^"]*"')
_BRACKETS = b"[]{}"
_NOT_BRACKETS = bytes(b for b in range(256) if b not in _BRACKETS)
_STEP = [0] * 256
_STEP[ord("[")] = _STEP[ord("{")] = 1
_STEP[ord("]")] = _STEP[ord("}")] = -1


def text_problem(value: str, *, multiline: bool = False) -> str | None:
    """Why `value` is not acceptable text (a sentence without the field name, a `Text` read in the
    reader's language), or None."""
    found = (_BAD_TEXT if multiline else _BAD_LINE).search(value)
    if found is None:
        return None
    char = found.group()
    if char == "\x00":
        return Text("must not contain NUL characters")
    if "\ud800" <= char <= "\udfff":
        return Text("must be valid Unicode text (it holds a lone surrogate)")
    return Text("must not contain control characters (U+{code})", code=format(ord(char), "04X"))


def check_text(value: Any, field: str, *, max_length: int, multiline: bool = False, min_length: int = 1) -> str:
    """`value` if it is a string of `min_length`..`max_length` acceptable characters; else
    `request.invalid` naming `field`."""
    if not isinstance(value, str):
        raise Problem("request.invalid", Text("{field}: must be a string", field=field), field=field)
    if not min_length <= len(value) <= max_length:
        raise Problem("request.invalid", Text("{field}: must be {min_length} to {max_length} characters long",
                                              field=field, min_length=min_length, max_length=max_length),
                      field=field)
    why = text_problem(value, multiline=multiline)
    if why is not None:
        raise Problem("request.invalid", Text("{field}: {why}", field=field, why=why), field=field)
    return value


def ascii_header_problem(value: str, *, max_length: int = MAX_HEADER) -> str | None:
    """Why a signed-request header value is unacceptable (not printable ASCII, too long), or None; a
    `Text` finishing "header {name} ...", so the problem's detail reads whole in the reader's language."""
    if len(value) > max_length:
        return Text("is longer than {n} characters", n=max_length)
    if not _PRINTABLE_ASCII.match(value):
        return Text("must be printable ASCII")
    return None


def printable(text: str) -> str:
    """`text` with control characters and lone surrogates replaced by U+FFFD, for answers and logs
    that repeat something a client sent (a SOAP fault cannot carry them, UTF-8 cannot encode them)."""
    return _BAD_TEXT.sub("\ufffd", text)


def url_text(raw: str) -> str | None:
    """A raw path or query component percent-decoded as UTF-8, or None when its bytes are not UTF-8."""
    try:
        return unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        return None


# -- JSON ---------------------------------------------------------------------------------------

class _Refused(ValueError):
    """Raised from inside the JSON parser's hooks; becomes `request.malformed`."""


def _parse_int(literal: str) -> int:
    if len(literal) > MAX_NUMBER_CHARS:
        raise _Refused(f"a number has more than {MAX_NUMBER_CHARS} characters")
    return int(literal)


def _parse_float(literal: str) -> float:
    if len(literal) > MAX_NUMBER_CHARS:
        raise _Refused(f"a number has more than {MAX_NUMBER_CHARS} characters")
    value = float(literal)
    if value in (float("inf"), float("-inf")):
        raise _Refused(f"the number {literal} is out of range")
    return value


def _parse_constant(name: str) -> Any:
    raise _Refused(f"{name} is not JSON")


# Built once: json.loads with hooks builds a decoder per call, most of the cost of a small body.
_DECODER = json.JSONDecoder(parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_constant)


def json_depth(raw: bytes) -> int:
    """The deepest nesting of objects and arrays in `raw` (brackets inside strings excluded).

    Counting every bracket is exact enough when there are few of them (the common case costs two
    `bytes.count`); otherwise strings are removed and the running depth is computed in C
    (`accumulate`), never by the recursive parser.
    """
    opens = raw.count(b"[") + raw.count(b"{")
    if opens <= MAX_JSON_DEPTH:
        return opens
    brackets = _JSON_STRING.sub(b"", _JSON_ESCAPE.sub(b"", raw)).translate(None, _NOT_BRACKETS)
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)


def load_json(raw: bytes | str, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse a JSON document from outside: strict UTF-8, bounded depth and numbers, no NaN or
    Infinity, and no string (value or key) holding a NUL or a lone surrogate.

    `request.malformed` for what cannot be parsed under these bounds; `request.invalid` naming the
    top-level field for a string no store could hold.
    """
    if isinstance(raw, bytes):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise Problem("request.malformed", Text("not UTF-8 text (byte {start})", start=exc.start)) from None
    else:
        text, raw = raw, raw.encode("utf-8", "surrogatepass")
    depth = json_depth(raw)
    if depth > max_depth:
        raise Problem("request.malformed", Text("JSON nested deeper than {max_depth} levels", max_depth=max_depth))
    try:
        doc = _DECODER.decode(text)
    except _Refused as exc:
        raise Problem("request.malformed", Text("not acceptable JSON: {exc}", exc=exc)) from None
    except json.JSONDecodeError as exc:
        raise Problem("request.malformed",
                      Text("not valid JSON: {msg} (line {lineno}, column {colno})", msg=exc.msg, lineno=exc.lineno,
                           colno=exc.colno)) from None
    except (ValueError, RecursionError) as exc:  # bounded above; a last guard all the same
        raise Problem("request.malformed", Text("not valid JSON: {exc}", exc=exc)) from None
    if "\\u" in text or "\x00" in text:  # only escapes can put NUL or a lone surrogate in a string
        for path, top, value in _strings(doc, "$", None):
            found = _BAD_JSON_STRING.search(value)
            if found:
                # The reason is the character refused here (NUL, a lone surrogate), not an earlier
                # control character that a JSON string may hold.
                why = text_problem(found.group(), multiline=True) or Text("must be valid text")
                name = top or "body"
                where = printable(path[1:].lstrip(".") or name)[:200]
                raise Problem("request.invalid", Text("{where}: {why}", where=where, why=why), field=name)
    return doc


def _strings(node: Any, path: str, top: str | None) -> Iterator[tuple[str, str | None, str]]:
    """(JSON path, top-level field, string) for every key and string value under `node`."""
    if isinstance(node, str):
        yield path, top, node
    elif isinstance(node, dict):
        for key, value in node.items():
            here = f"{path}.{key}" if _BAD_JSON_STRING.search(key) is None else f"{path}.<key>"
            field = top if top is not None else (key if _BAD_JSON_STRING.search(key) is None else "body")
            yield here, field, key
            yield from _strings(value, here, field)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _strings(value, f"{path}[{index}]", top)
