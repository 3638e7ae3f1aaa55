"""The national document axis (Trục liên thông văn bản quốc gia, VXP): protocol, client, simulator.

* :mod:`.protocol` — the wire protocol as data and pure functions (signing, verification,
  hash-file, sendEdoc bodies, error codes); :mod:`.shapes` — the JSON answers as records.

The hub does not load this package yet; docs/national-axis.md describes it.
"""

from .protocol import AxisCode, MessageType, Operation, ProtocolError, SignatureError, VerifiedRequest, verify_request
from .shapes import (
    Agency,
    AgencyQD20,
    AgencyRegistration,
    ReceivedItem,
    SentItem,
    SyncUnit,
)

__all__ = [
    "Agency",
    "AgencyQD20",
    "AgencyRegistration",
    "AxisCode",
    "MessageType",
    "Operation",
    "ProtocolError",
    "ReceivedItem",
    "SentItem",
    "SignatureError",
    "SyncUnit",
    "VerifiedRequest",
    "verify_request",
]
