"""Reading the simulator's systems and agency directory from the command line and files.

``ID:SECRET:AGENCY`` names a system. The secret may be given as ``env:NAME`` (an environment
variable) or ``file:PATH`` (the file's content, one trailing newline dropped) so it need not
appear in the process list. System ids and agency codes hold no colon, so the secret is whatever
lies between the first and the last colon. Errors name the spec or the file position.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from .sim_state import AgencyRecord, SimSystem

__all__ = ["SimConfigError", "load_agencies", "parse_system", "read_systems_file"]

_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}")
_MAX_FILE_BYTES: Final = 16 << 20
_TEXT_FIELDS: Final = ("id", "pid", "mail", "oldCode", "centerCode", "code102", "level", "modifyDate", "mobile",
                       "fax")
_SNAKE: Final = {"oldCode": "old_code", "centerCode": "center_code", "modifyDate": "modify_date",
                 "isAgency": "is_agency"}


class SimConfigError(ValueError):
    """A system spec or agency file the simulator cannot use; the message says where."""


def _secret(text: str, where: str, env: Mapping[str, str]) -> str:
    if text.startswith("env:"):
        name = text[4:]
        if name not in env:
            raise SimConfigError(f"{where}: environment variable {name} is not set")
        return env[name]
    if text.startswith("file:"):
        try:
            value = Path(text[5:]).read_text(encoding="utf-8")
        except OSError as exc:
            raise SimConfigError(f"{where}: cannot read the secret file: {exc.strerror or exc}") from None
        return value[:-1] if value.endswith("\n") else value
    return text


def parse_system(spec: str, *, where: str = "--system", env: Mapping[str, str] | None = None) -> SimSystem:
    """``ID:SECRET:AGENCY`` (SECRET literal, ``env:NAME`` or ``file:PATH``) as a SimSystem."""
    first, last = spec.find(":"), spec.rfind(":")
    if first < 0 or first == last:
        raise SimConfigError(f"{where}: expected ID:SECRET:AGENCY")
    system_id, secret_text, agency = spec[:first], spec[first + 1:last], spec[last + 1:]
    if not _ID.fullmatch(system_id):
        raise SimConfigError(f"{where}: system id {system_id!r} is not letters, digits, '.', '_' or '-'")
    if not _ID.fullmatch(agency):
        raise SimConfigError(f"{where}: agency code {agency!r} is not letters, digits, '.', '_' or '-'")
    secret = _secret(secret_text, where, os.environ if env is None else env)
    if not secret:
        raise SimConfigError(f"{where}: the secret of {system_id} is empty")
    return SimSystem(system_id=system_id, secret=secret, agency_code=agency)


def read_systems_file(path: Path, *, env: Mapping[str, str] | None = None) -> list[SimSystem]:
    """One ``ID:SECRET:AGENCY`` per line; blank lines and ``#`` comments skipped."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise SimConfigError(f"{path}: {getattr(exc, 'strerror', None) or exc}") from None
    return [parse_system(line.strip(), where=f"{path}:{n}", env=env)
            for n, line in enumerate(lines, 1) if line.strip() and not line.lstrip().startswith("#")]


def _agency(item: Any, where: str) -> AgencyRecord:
    if not isinstance(item, dict):
        raise SimConfigError(f"{where}: must be an object")
    for key in ("code", "name"):
        if not isinstance(item.get(key), str) or not item[key].strip():
            raise SimConfigError(f"{where}.{key}: must be a non-empty string")
    values: dict[str, Any] = {"code": item["code"].strip(), "name": item["name"]}
    for key in _TEXT_FIELDS:
        if key in item:
            if not isinstance(item[key], str):
                raise SimConfigError(f"{where}.{key}: must be a string")
            values[_SNAKE.get(key, key)] = item[key]
    if "version" in item:
        if not isinstance(item["version"], int) or isinstance(item["version"], bool) or item["version"] < 0:
            raise SimConfigError(f"{where}.version: must be a whole number")
        values["version"] = item["version"]
    for key in ("deleted", "isAgency"):
        if key in item:
            if not isinstance(item[key], bool):
                raise SimConfigError(f"{where}.{key}: must be true or false")
            values[_SNAKE.get(key, key)] = item[key]
    unknown = set(item) - {"code", "name", "version", "deleted", "isAgency", *_TEXT_FIELDS}
    if unknown:
        raise SimConfigError(f"{where}: unknown key {sorted(unknown)[0]!r}")
    return AgencyRecord(**values)


def load_agencies(path: Path) -> list[AgencyRecord]:
    """A JSON array of agencies in getSynchronizeUnit's field names (``code`` and ``name`` required)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SimConfigError(f"{path}: {exc.strerror or exc}") from None
    if len(raw) > _MAX_FILE_BYTES:
        raise SimConfigError(f"{path}: larger than {_MAX_FILE_BYTES} bytes")
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise SimConfigError(f"{path}:{exc.lineno}:{exc.colno}: not JSON: {exc.msg}") from None
    except (ValueError, RecursionError) as exc:
        raise SimConfigError(f"{path}: not JSON: {exc}") from None
    if not isinstance(data, list):
        raise SimConfigError(f"{path}: must be a JSON array of agencies")
    records = [_agency(item, f"{path}: [{i}]") for i, item in enumerate(data)]
    seen: set[str] = set()
    for i, record in enumerate(records):
        if record.code in seen:
            raise SimConfigError(f"{path}: [{i}].code: agency code {record.code} listed twice")
        seen.add(record.code)
    return records
