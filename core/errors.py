"""The stable error codes every adapter reports.

One catalogue so REST problems, SOAP faults and CLI messages all speak the same codes; the HTTP
status and the title come from here, the detail from the place that raised it. A title is the
English msgid of the gettext catalogues (docs/i18n.md), translated for each reader.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lgsp.core.i18n import N_, current, gettext, normalise, render


@dataclass(frozen=True, slots=True)
class ErrorKind:
    """A code's HTTP status and title: a msgid of the catalogues, or, for a plugin that brings its own
    words (it cannot add to lgsp's catalogues), its English title with `title_vi` beside it."""

    status: int
    title: str
    title_vi: str | None = None

    def title_in(self, lang: str | None = None) -> str:
        if self.title_vi is not None:
            return self.title_vi if (normalise(lang) or current()) == "vi" else self.title
        return gettext(self.title, lang)


CATALOGUE: dict[str, ErrorKind] = {
    "auth.missing": ErrorKind(401, N_("Authentication header missing or malformed")),
    "auth.unknown_key": ErrorKind(401, N_("Unknown access key")),
    "auth.revoked_key": ErrorKind(401, N_("Access key revoked")),
    "auth.clock_skew": ErrorKind(401, N_("Request time outside the allowed clock skew")),
    "auth.replay": ErrorKind(401, N_("Nonce already used")),
    "auth.bad_signature": ErrorKind(401, N_("Signature does not verify")),
    "auth.bad_session": ErrorKind(401, N_("Session token invalid or expired")),
    "auth.bad_ticket": ErrorKind(401, N_("Event stream ticket invalid, already used or expired")),
    "auth.bad_certificate": ErrorKind(401, N_("Client certificate missing or not the one registered for the unit")),
    "auth.not_permitted": ErrorKind(403, N_("The communication policy does not let this source reach that "
                                            "destination")),
    "forbidden": ErrorKind(403, N_("Forbidden")),
    "not_found": ErrorKind(404, N_("Not found")),
    "method_not_allowed": ErrorKind(405, N_("Method not allowed")),
    "conflict": ErrorKind(409, N_("Conflict with the current state")),
    "transfer.expired": ErrorKind(410, N_("Transfer URL expired")),
    "content.gone": ErrorKind(410, N_("Content no longer held by the hub")),
    "content.hash_mismatch": ErrorKind(400, N_("Content SHA-256 does not match")),
    "content.size_mismatch": ErrorKind(400, N_("Content size does not match the declared size")),
    "content.range_not_satisfiable": ErrorKind(416, N_("Requested range not satisfiable")),
    "content.too_large": ErrorKind(413, N_("Content too large")),
    "request.malformed": ErrorKind(400, N_("Malformed request")),
    "request.invalid": ErrorKind(422, N_("Invalid request data")),
    "route.unknown_destination": ErrorKind(422, N_("Unknown destination")),
    "route.unsupported_data_type": ErrorKind(422, N_("The route to a destination cannot carry this data type")),
    "edxml.invalid": ErrorKind(422, N_("Invalid edXML packet")),
    "edxml.malformed": ErrorKind(400, N_("Malformed edXML (not well-formed)")),
    "edxml.unsafe": ErrorKind(400, N_("Unsafe XML construct (DTD or entity)")),
    "edxml.too_large": ErrorKind(413, N_("edXML packet exceeds limits")),
    "edxml.sender_mismatch": ErrorKind(403, N_("edXML sender is not the authenticated unit")),
    "edxml.destination_mismatch": ErrorKind(422, N_("edXML recipients (To) differ from the request's destinations")),
    "unavailable": ErrorKind(503, N_("Service temporarily unavailable")),
    "internal": ErrorKind(500, N_("Internal error")),
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

    def title(self, lang: str | None = None) -> str:
        """The code's title in `lang` (the current language when None)."""
        return CATALOGUE[self.code].title_in(lang)

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


def register_code(code: str, status: int, title: str, title_vi: str | None = None) -> None:
    """Add a plugin's code to the catalogue (the hub does it from `lgsp_problem_codes` at start-up).

    Idempotent for the same definition, so several hubs in one process can collect the same
    plugins; a core code, or a code already defined differently, is refused with ValueError.
    """
    if code in CORE_CODES:
        raise ValueError(f"problem code {code!r} is one of the hub's own codes")
    existing = CATALOGUE.get(code)
    if existing is not None and existing != ErrorKind(status, title, title_vi):
        raise ValueError(f"problem code {code!r} is already registered differently")
    CATALOGUE[code] = ErrorKind(status, title, title_vi)
