"""Short-lived tokens in upload/download URLs, so `expires_at` is enforced, not advisory."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Callable, Sequence
from datetime import datetime

from lgsp.core.errors import Problem
from lgsp.core.i18n import Text

_EXPIRES_RE = re.compile(r"^[0-9]{1,12}$")  # Unix seconds; `str.isdigit` also takes "²", which int() refuses


class TransferTokens:
    """HMAC over action, packet, unit and expiry (key derived from the master key).

    `key` is one key, or a function giving the keys in force, the signing one first: after a master
    key rotation, URLs issued under the old key keep working until it is retired."""

    def __init__(self, key: bytes | Callable[[], Sequence[bytes]]) -> None:
        self._keys: Callable[[], Sequence[bytes]] = (lambda: (key,)) if isinstance(key, bytes) else key

    @staticmethod
    def _mac_with(key: bytes, action: str, packet_id: str, unit: str, expires: int) -> str:
        msg = f"{action}\n{packet_id}\n{unit}\n{expires}".encode()
        return base64.urlsafe_b64encode(hmac.new(key, msg, hashlib.sha256).digest()[:18]).decode()

    def _mac(self, action: str, packet_id: str, unit: str, expires: int) -> str:
        return self._mac_with(self._keys()[0], action, packet_id, unit, expires)

    def make(self, action: str, packet_id: str, unit: str, expires_at: datetime) -> str:
        expires = int(expires_at.timestamp())
        return f"expires={expires}&token={self._mac(action, packet_id, unit, expires)}"

    def check(self, action: str, packet_id: str, unit: str, expires: str | None, token: str | None,
              now: datetime) -> None:
        if not expires or not token or not _EXPIRES_RE.fullmatch(expires) or not token.isascii():
            raise Problem("forbidden", Text("this URL needs the expires and token parameters the hub issued"))
        matches = [hmac.compare_digest(self._mac_with(key, action, packet_id, unit, int(expires)), token)
                   for key in self._keys()]  # every key, always: the time taken says nothing
        if not any(matches):
            raise Problem("forbidden", Text("transfer token does not match this packet and unit"))
        if int(expires) < now.timestamp():
            raise Problem("transfer.expired", Text("this URL has expired; ask for a new one"))
