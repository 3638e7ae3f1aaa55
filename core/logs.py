"""Structured logs: JSON lines or text, UTC times, and who/what each line is about.

Every record carries, where it applies, the request id, the unit, the packet id and the problem
code, taken from context variables the HTTP layer and the delivery engine set (`bind`), so a log
call never has to pass them. The request id is the caller's `X-Request-Id` when it is a short token
(else one is made), is returned in the response, and follows the packet into its pushes
(`X-Request-Id` on REST pushes) while this process remembers which request accepted it.

Secrets never reach a record: the access log writes no headers, bodies or query strings, and code
logs identifiers, never keys, tokens or signatures (tests/test_logs.py scans a test run's log for
every secret the run created).
"""

from __future__ import annotations

import contextvars
import json
import logging
import random
import re
import sys
import time
import traceback
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TextIO

from aiohttp import web

if TYPE_CHECKING:
    from lgsp.core.config import LoggingConfig

REQUEST_ID_HEADER = "X-Request-Id"
#: What a caller's request id may be (else the hub makes its own): short, printable, no spaces.
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")
#: Packets whose accepting request this process remembers, for the request id of their pushes.
_REMEMBERED = 10_000

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("lgsp_request_id", default=None)
unit: contextvars.ContextVar[str | None] = contextvars.ContextVar("lgsp_unit", default=None)
packet_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("lgsp_packet_id", default=None)
problem: contextvars.ContextVar[str | None] = contextvars.ContextVar("lgsp_problem", default=None)
_FIELDS = (("request_id", request_id), ("unit", unit), ("packet_id", packet_id), ("code", problem))
_VARIABLES = dict(_FIELDS)

REQUEST_ID: web.RequestKey[str] = web.RequestKey("lgsp_request_id", str)


def new_request_id() -> str:
    """32 random hex digits, as a uuid4's hex was. Not a secret, only unique: drawn from `random`
    (seeded from the OS, re-seeded in a forked child), which spares every request a `getrandom`
    system call."""
    return f"{random.getrandbits(128):032x}"


def bind(**values: str | None) -> None:
    """Set context fields for the rest of this task (request_id, unit, packet_id, code)."""
    for name, value in values.items():
        _VARIABLES[name].set(value)


@contextmanager
def bound(**values: str | None) -> Iterator[None]:
    """Context fields for one block (a push attempt), restored after it."""
    tokens = [(_VARIABLES[name], _VARIABLES[name].set(value)) for name, value in values.items()]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


_accepted_by: OrderedDict[str, str] = OrderedDict()


def remember_packet(packet: str) -> None:
    """The current request accepted `packet`: its pushes carry the same request id."""
    rid = request_id.get()
    if rid is None:
        return
    _accepted_by[packet] = rid
    _accepted_by.move_to_end(packet)
    while len(_accepted_by) > _REMEMBERED:
        _accepted_by.popitem(last=False)


def request_id_for(packet: str) -> str:
    """The id of the request that accepted `packet` (if this process saw it), else a new one."""
    return _accepted_by.get(packet) or new_request_id()


# -- records --------------------------------------------------------------------------------------

class ContextFilter(logging.Filter):
    """Adds the context fields to every record (an explicit `extra=` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in _FIELDS:
            if getattr(record, name, None) is None:
                setattr(record, name, var.get())
        return True


#: The last whole second formatted and its text, swapped as one tuple (log calls come from threads too).
_last_second: tuple[int, str] = (-1, "")


def utc_time(created: float) -> str:
    global _last_second
    seconds = int(created)
    last = _last_second
    if last[0] != seconds:  # formatted once per second, not once per line
        last = _last_second = (seconds, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)))
    return f"{last[1]}.{int((created - seconds) * 1000):03d}Z"


#: One encoder for every line (json.dumps with options builds a new one per call).
_JSON = json.JSONEncoder(ensure_ascii=False, default=str)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC), level, logger, message, then the context fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {"time": utc_time(record.created), "level": record.levelname,
                               "logger": record.name, "message": record.getMessage()}
        for name, _ in _FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                out[name] = value
        if record.exc_info:
            out["error"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        elif record.exc_text:
            out["error"] = record.exc_text
        return _JSON.encode(out)


class TextFormatter(logging.Formatter):
    """`2026-12-06T01:02:03.456Z INFO lgsp.hub [request_id=… unit=…] message` (UTC)."""

    def format(self, record: logging.LogRecord) -> str:
        context = " ".join(f"{name}={getattr(record, name)}" for name, _ in _FIELDS
                           if getattr(record, name, None) is not None)
        line = f"{utc_time(record.created)} {record.levelname} {record.name}"
        line += f" [{context}] " if context else " "
        line += record.getMessage()
        if record.exc_info:
            line += "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip()
        return line


def formatter(fmt: str) -> logging.Formatter:
    return JsonFormatter() if fmt == "json" else TextFormatter()


_HANDLER_NAME = "lgsp"


def configure(cfg: LoggingConfig, stream: TextIO | None = None) -> logging.Handler:
    """The process's log: one handler on the root logger, in the configured format and level."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter(cfg.format))
    handler.addFilter(ContextFilter())
    handler.set_name(_HANDLER_NAME)
    root = logging.getLogger()
    for old in list(root.handlers):  # ours from an earlier call (an embedder's handlers stay)
        if old.get_name() == _HANDLER_NAME:
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(cfg.level)
    return handler


# -- HTTP -----------------------------------------------------------------------------------------

@web.middleware
async def request_id_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Takes or makes the request id, binds it for the request's logs, returns it in the response."""
    offered = request.headers.get(REQUEST_ID_HEADER, "")
    rid = offered if _REQUEST_ID.match(offered) else new_request_id()
    request[REQUEST_ID] = rid
    match = request.match_info
    packet = match.get("id") if request.path.startswith("/v1/packets/") else None
    # What `bound(...)` does, without a generator and a list per request.
    tokens = (request_id.set(rid), unit.set(None), packet_id.set(packet), problem.set(None))
    try:
        response: web.StreamResponse = await handler(request)
    except web.HTTPException as exc:
        exc.headers[REQUEST_ID_HEADER] = rid
        raise
    finally:
        problem.reset(tokens[3])
        packet_id.reset(tokens[2])
        unit.reset(tokens[1])
        request_id.reset(tokens[0])
    if not response.prepared:
        response.headers[REQUEST_ID_HEADER] = rid
    return response


def mount(app: web.Application) -> None:
    """First of the hub's own middlewares: every answer, problems included, carries the id."""
    app.middlewares.insert(0, request_id_middleware)
