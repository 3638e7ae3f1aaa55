"""Builds the plugin manager: built-ins, enabled adapters, installed entry points, strict checks.

Like tox's `check_pending()`, a hook implementation that matches no spec is an error, so a typo
in a plugin fails loudly at start-up instead of silently never being called.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import re
from collections.abc import Iterable, Mapping
from types import ModuleType
from typing import Any

import pluggy

from lgsp.core.errors import CORE_CODES
from lgsp.core.i18n import Text, gettext
from lgsp.plugins import hookspecs

log = logging.getLogger(__name__)

# Always registered: the hub does not work without them.
CORE_PLUGINS: dict[str, str] = {
    "signatures": "lgsp.plugins.signatures",
}

# Built-in optional plugins, enabled by name in `plugins.enabled`.
BUILTIN_PLUGINS: dict[str, str] = {
    "rest": "lgsp.adapters.rest",
    "sftp": "lgsp.adapters.sftp",
    "edxml": "lgsp.plugins.edxml",  # edXML packets in the hub
    "soap_edxml": "lgsp.adapters.soap_edxml",  # SOAP service for VBQL systems; needs edxml
    "console": "lgsp.adapters.console",  # the web console under /console
    "vxp": "lgsp.adapters.vxp",  # the national axis protocol served at /vxp; needs edxml
    "national_axis": "lgsp.adapters.national_axis.plugin",  # the national document axis (VXP); needs edxml
    "peer": "lgsp.adapters.peer",  # hub-to-hub peering with another lgsp (a zone's route)
}

ENTRY_POINT_GROUP = hookspecs.PROJECT


#: What a plugin's problem code looks like: `soap.unsafe`, `service.timeout`.
_CODE = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*")


class PluginError(Exception):
    """A plugin could not be found or does not honour the contract."""


def installed_plugins() -> dict[str, importlib.metadata.EntryPoint]:
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def available_plugins() -> list[str]:
    return sorted(set(BUILTIN_PLUGINS) | set(installed_plugins()))


def create_plugin_manager(enabled: Iterable[str] = ("rest",), *, extra: Iterable[Any] = ()) -> pluggy.PluginManager:
    """A checked plugin manager with the core plugins, the `enabled` ones and `extra` objects.

    `extra` lets tests and embedders register plugin objects directly.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    for name, module in CORE_PLUGINS.items():
        pm.register(importlib.import_module(module), name=name)
    entry_points = installed_plugins()
    for name in enabled:
        if name in CORE_PLUGINS or pm.has_plugin(name):
            continue
        plugin: ModuleType | Any
        if name in BUILTIN_PLUGINS:
            plugin = importlib.import_module(BUILTIN_PLUGINS[name])
        elif name in entry_points:
            try:
                plugin = entry_points[name].load()
            except Exception as exc:  # a broken third-party package: say which one
                raise PluginError(Text("plugin {name!r} failed to load: {reason}", name=name, reason=exc)) from exc
        else:
            raise PluginError(Text("no plugin named {name!r} (available: {known})", name=name,
                                   known=", ".join(available_plugins())))
        _register(pm, plugin, name)
    for obj in extra:
        _register(pm, obj, None)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(str(exc)) from exc
    return pm


def _register(pm: pluggy.PluginManager, plugin: Any, name: str | None) -> None:
    try:
        pm.register(plugin, name=name)
    except (ValueError, pluggy.PluginValidationError) as exc:
        raise PluginError(Text("plugin {name!r} cannot be registered: {reason}", name=name or plugin,
                               reason=exc)) from exc


def signature_algorithms(pm: pluggy.PluginManager) -> dict[str, Any]:
    """Name → algorithm, from every plugin; a name provided twice is an error."""
    out: dict[str, Any] = {}
    for batch in pm.hook.lgsp_signature_algorithms():
        for alg in batch or ():
            if alg.name in out and out[alg.name] is not alg:
                raise PluginError(Text("signature algorithm {name} is provided by two plugins", name=alg.name))
            out[alg.name] = alg
    return out


def problem_codes(pm: pluggy.PluginManager) -> dict[str, tuple[int, str, str | None]]:
    """Code → (status, title, Vietnamese title or None) from every plugin's `lgsp_problem_codes`: a
    title is a msgid of lgsp's catalogues (`(status, N_("English title"))`, the built-in adapters), or
    a plugin's own pair `(status, Vietnamese title, English title)`.

    Checked here so a bad plugin is named at start-up: a malformed entry, or a code two plugins
    provide, or one of the hub's own codes, is a PluginError.
    """
    out: dict[str, tuple[int, str, str | None]] = {}
    owner: dict[str, str] = {}
    for impl in pm.hook.lgsp_problem_codes.get_hookimpls():
        name = impl.plugin_name
        codes = impl.function()
        if codes is None:
            continue
        if not isinstance(codes, Mapping):
            raise PluginError(Text("plugin {name!r}: lgsp_problem_codes must return a mapping of code to (status, "
                                   "title_vi, title_en), not {type}", name=name, type=type(codes).__name__))
        for code, kind in codes.items():
            if not (isinstance(code, str) and _CODE.fullmatch(code)):
                raise PluginError(Text("plugin {name!r}: problem code {code!r} is not lower-case words joined by dots",
                                       name=name, code=code))
            if not (isinstance(kind, tuple) and len(kind) in (2, 3) and type(kind[0]) is int and 400 <= kind[0] <= 599
                    and all(isinstance(t, str) and t.strip() for t in kind[1:])
                    and (len(kind) == 3 or gettext(kind[1], "vi") != kind[1])):
                raise PluginError(Text("plugin {name!r}: problem code {code!r} needs (HTTP status 400-599, Vietnamese "
                                       "title, English title), or (HTTP status, a title lgsp's catalogues translate), "
                                       "got {kind!r}", name=name, code=code, kind=kind))
            if code in CORE_CODES:
                raise PluginError(Text("plugin {name!r}: problem code {code!r} is one of the hub's own codes",
                                       name=name, code=code))
            if code in owner:
                raise PluginError(Text("problem code {code!r} is provided by two plugins: {first!r} and {name!r}",
                                       code=code, first=owner[code], name=name))
            owner[code] = name
            out[code] = (kind[0], kind[1], None) if len(kind) == 2 else (kind[0], kind[2], kind[1])
    return out
