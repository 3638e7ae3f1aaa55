"""The national document axis (Trục liên thông văn bản quốc gia, VXP): protocol, client, simulator.

* :mod:`.protocol` — the wire protocol as data and pure functions (signing, verification,
  hash-file, sendEdoc bodies, error codes); :mod:`.shapes` — the JSON answers as records.
* :mod:`.client` — :class:`AxisClient`, the async client the hub's adapter will use.
* :mod:`.simulator` — :class:`AxisSimulator`, a real HTTP server with the SDK's exact behaviour and
  fault injection (``lgsp axis-sim``).

The hub does not load this package yet; docs/national-axis.md describes it.
"""

from .client import AxisClient, AxisError, TransportCode
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
    "AxisClient",
    "AxisCode",
    "AxisError",
    "MessageType",
    "Operation",
    "ProtocolError",
    "ReceivedItem",
    "SentItem",
    "SignatureError",
    "SyncUnit",
    "TransportCode",
    "VerifiedRequest",
    "verify_request",
]
