"""Faults the simulator can inject per operation, so tests see what the real axis may do to a client."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from .protocol import AxisCode, Operation

__all__ = ["Fault", "FaultKind", "FaultPlan"]


class FaultKind(StrEnum):
    HTTP_ERROR = "http_error"  # an HTTP 5xx with a non-JSON body (a proxy or a crashed server)
    DELAY = "delay"  # no answer for `seconds` (beyond the client's timeout); cut short on stop
    BAD_SIGNATURE = "bad_signature"  # refuse the signature whatever it is
    FETCH_FAIL = "fetch_fail"  # getEdoc/downloadEdoc answer FAIL with `code`
    DUPLICATES = "duplicates"  # getReceivedEdocList lists every item twice
    UNPARSABLE = "unparsable"  # HTTP 200 with an HTML body


@dataclass(frozen=True, slots=True)
class Fault:
    """One injected fault. ``after``: do the work first, then spoil the answer (HTTP_ERROR, DELAY,
    UNPARSABLE), which is how a client learns an operation may have happened though it failed."""

    kind: FaultKind
    status: int = 503
    seconds: float = 3600.0
    code: str = AxisCode.NOT_FOUND
    after: bool = False


class FaultPlan:
    """Faults waiting per operation, each for a number of calls (``times=None``: until cleared)."""

    def __init__(self) -> None:
        self._armed: dict[Operation, list[tuple[Fault, int | None]]] = {}
        self.fired: list[tuple[Operation, FaultKind]] = []

    def inject(self, operation: Operation | str, kind: FaultKind | str, *, times: int | None = 1,
               status: int = 503, seconds: float = 3600.0, code: str = AxisCode.NOT_FOUND,
               after: bool = False) -> Fault:
        if times is not None and times < 1:
            raise ValueError("times must be at least 1 (or None for every call)")
        if FaultKind(kind) is FaultKind.HTTP_ERROR and not 500 <= status <= 599:
            raise ValueError(f"HTTP error faults are 5xx, not {status}")
        fault = Fault(FaultKind(kind), status=status, seconds=seconds, code=code, after=after)
        self._armed.setdefault(Operation(operation), []).append((fault, times))
        return fault

    def take(self, operation: Operation) -> Fault | None:
        """The fault for this call, if any, counting it down."""
        queue = self._armed.get(operation)
        if not queue:
            return None
        fault, times = queue[0]
        if times is not None:
            if times <= 1:
                queue.pop(0)
            else:
                queue[0] = (fault, times - 1)
        self.fired.append((operation, fault.kind))
        return fault

    def clear(self, operation: Operation | str | None = None) -> None:
        if operation is None:
            self._armed.clear()
        else:
            self._armed.pop(Operation(operation), None)
