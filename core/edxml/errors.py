"""Errors raised by the edXML library.

Every failure the hub must distinguish carries a stable ``code`` (the hub maps it to its own
API errors and to edXML status replies) plus a human ``detail``. Validation errors also name
the element ``path`` and the ``rule`` broken, so a sender can fix the packet without access
to our logs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from .model import AttachmentInfo

__all__ = [
    "EdxmlError",
    "EdxmlInvalid",
    "EdxmlMalformed",
    "EdxmlTooLarge",
    "EdxmlUnsafe",
]


class EdxmlError(Exception):
    """Base class; ``code`` is one of ``edxml.invalid|malformed|unsafe|too_large``.

    ``attachments`` lists the attachments already handed to the caller's sink (closed) when
    the failure happened, so the caller can delete what it stored.
    """

    code: ClassVar[str] = "edxml.error"

    def __init__(self, detail: str, *, path: str | None = None, rule: str | None = None) -> None:
        self.detail = detail
        self.path = path
        self.rule = rule
        self.attachments: Sequence[AttachmentInfo] = ()
        super().__init__(self.message)

    @property
    def message(self) -> str:
        """One line for logs and API replies: ``code: path: detail``."""
        where = f"{self.path}: " if self.path else ""
        return f"{self.code}: {where}{self.detail}"

    def to_dict(self) -> dict[str, str]:
        """A JSON-ready form for API error bodies."""
        out = {"code": self.code, "detail": self.detail}
        if self.path:
            out["path"] = self.path
        if self.rule:
            out["rule"] = self.rule
        return out


class EdxmlInvalid(EdxmlError):
    """Well-formed XML (or JSON) that breaks the schema or an edXML rule."""

    code = "edxml.invalid"


class NotAnEdoc(EdxmlInvalid):
    """An operation only edoc packets allow (a TraceHeader) was asked of a status packet."""


class EdxmlMalformed(EdxmlError):
    """Not well-formed XML (or not JSON at all)."""

    code = "edxml.malformed"


class EdxmlUnsafe(EdxmlError):
    """A DTD, entity declaration or external reference: refused before anything is resolved."""

    code = "edxml.unsafe"


class EdxmlTooLarge(EdxmlError):
    """A configured size, depth or count limit was exceeded."""

    code = "edxml.too_large"
