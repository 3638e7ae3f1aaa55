"""The layering contract: adapters and plugins use core only through `lgsp.core.api`.

Read from the source (AST), so an import inside a function or under TYPE_CHECKING counts as much
as one at the top. Adapters never import each other; built-in plugins import no adapter. Nor do
they reach past the hub's public services to its internals (`hub.blobs`, `hub.pm`,
`hub.engine`): the public API has a named use case or port for what they need.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import lgsp.core.api as api
import lgsp.core.api.edxml as api_edxml

ROOT = Path(__file__).resolve().parents[1]
#: What adapters and plugins may import of core.
PUBLIC = ("lgsp.core.api", "lgsp.core.api.edxml")
#: The plugin machinery itself (it loads adapters by name), not a plugin.
MACHINERY = {"plugins/manager.py"}
#: Adapter modules that are libraries other adapters may share (no hooks, no hub): the national
#: axis's wire protocol, spoken by its client and by the hub's own /vxp service.
SHARED_LIBRARIES = {"lgsp.adapters.national_axis.protocol", "lgsp.adapters.national_axis.shapes"}


def _imports(source: str, package: str) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in `source`, relative ones resolved against `package`."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append((node.lineno, module))
            # `from lgsp.core import exchange` imports the module lgsp.core.exchange
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names
                      if module in ("lgsp.core", "lgsp.adapters")]
    return found


def violations(rel: str, source: str) -> list[str]:
    """What the file at `rel` (relative to the repository) imports that the contract forbids."""
    parts = Path(rel).with_suffix("").parts
    package = "lgsp." + ".".join(parts[:-1])  # a module's package; an __init__'s is its own folder too
    own_adapter = f"lgsp.adapters.{parts[1]}" if parts[0] == "adapters" and len(parts) > 2 else None
    bad = []
    for line, module in _imports(source, package):
        if module in ("lgsp.core", "lgsp.adapters"):
            continue  # the names are checked one by one above
        if module.startswith("lgsp.core.") and module not in PUBLIC:
            bad.append(f"{rel}:{line} imports {module} (use lgsp.core.api)")
        elif module.startswith("lgsp.adapters.") and module not in SHARED_LIBRARIES:
            if own_adapter is None or not (module == own_adapter or module.startswith(own_adapter + ".")):
                bad.append(f"{rel}:{line} imports {module} (another adapter)")
        elif module.split(".")[0] in ("core", "adapters"):
            bad.append(f"{rel}:{line} imports {module} (a bare folder name)")
    return bad


#: Hub attributes that are core's internals: the blob store, the plugin manager, the delivery engine.
INTERNAL_HUB_ATTRIBUTES = frozenset({"blobs", "pm", "engine"})


def reaches(rel: str, source: str) -> list[str]:
    """Where the file reads an internal attribute of the hub (`hub.blobs`, `call.hub.engine`, ...),
    or the blob store through any other object (`job.service.blobs`)."""
    bad = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Attribute) or node.attr not in INTERNAL_HUB_ATTRIBUTES:
            continue
        owner = node.value
        name = owner.id if isinstance(owner, ast.Name) else owner.attr if isinstance(owner, ast.Attribute) else ""
        if name == "hub" or name.endswith("_hub") or node.attr == "blobs":
            bad.append(f"{rel}:{node.lineno} reads {name}.{node.attr} (use the public core API)")
    return bad


def _checked_files() -> list[str]:
    files = sorted(str(p.relative_to(ROOT)) for folder in ("adapters", "plugins")
                   for p in (ROOT / folder).rglob("*.py"))
    return [f for f in files if f not in MACHINERY]


def test_adapters_and_plugins_use_only_the_public_core_api() -> None:
    bad = [v for rel in _checked_files() for v in violations(rel, (ROOT / rel).read_text(encoding="utf-8"))]
    assert not bad, "\n".join(bad)


def test_adapters_and_plugins_do_not_reach_the_hub_internals() -> None:
    bad = [v for rel in _checked_files() for v in reaches(rel, (ROOT / rel).read_text(encoding="utf-8"))]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize(("source", "expected"), [
    ("async def f(hub):\n    return hub.blobs.tmp\n", "hub.blobs"),
    ("def f(call):\n    return call.hub.engine.protocol_of('x')\n", "hub.engine"),
    ("def f(self):\n    return self.hub.pm.list_name_plugin()\n", "hub.pm"),
    ("def f(console):\n    return console.hub.blobs\n", "hub.blobs"),
    ("def f(source_hub):\n    return source_hub.engine\n", "source_hub.engine"),
    ("def f(job):\n    return job.service.blobs\n", "service.blobs"),
])
def test_the_reach_check_catches(source: str, expected: str) -> None:
    bad = reaches("adapters/rest/x.py", source)
    assert len(bad) == 1 and expected in bad[0], bad


def test_the_reach_check_allows_the_public_services() -> None:
    source = ("async def f(hub, job):\n    await hub.exchange.forwarded('x', 1)\n    hub.content.scratch_dir\n"
              "    hub.plugin_names()\n    job.engine = 1\n")
    assert reaches("adapters/rest/x.py", source) == []


def test_the_contract_covers_every_adapter_and_the_built_in_plugins() -> None:
    files = _checked_files()
    for expected in ("adapters/rest/routes.py", "adapters/soap_edxml/service.py", "adapters/sftp/inbound.py",
                     "adapters/national_axis/client.py", "plugins/edxml.py", "plugins/signatures.py",
                     "plugins/hookspecs.py"):
        assert expected in files


@pytest.mark.parametrize(("rel", "source", "expected"), [
    ("adapters/rest/x.py", "from lgsp.core.store.tables import packets\n", "imports lgsp.core.store.tables"),
    ("adapters/rest/x.py", "from lgsp.core import exchange\n", "imports lgsp.core.exchange"),
    ("adapters/rest/x.py", "import lgsp.core.web\n", "imports lgsp.core.web"),
    ("plugins/x.py", "def f():\n    from lgsp.core.hub import Hub\n", "imports lgsp.core.hub"),
    ("plugins/x.py", "if TYPE_CHECKING:\n    from lgsp.core.exchange import PacketInfo\n", "lgsp.core.exchange"),
    ("adapters/sftp/x.py", "from lgsp.adapters.rest.push import RestPushAdapter\n", "another adapter"),
    ("adapters/sftp/x.py", "from ..rest import push\n", "another adapter"),
    ("adapters/sftp/x.py", "from lgsp.adapters import rest\n", "another adapter"),
    ("plugins/x.py", "from lgsp.adapters.rest import routes\n", "another adapter"),
    ("adapters/sftp/x.py", "from core.errors import Problem\n", "bare folder name"),
    ("adapters/vxp/x.py", "from lgsp.adapters.national_axis.client import AxisClient\n", "another adapter"),
])
def test_the_contract_catches(rel: str, source: str, expected: str) -> None:
    bad = violations(rel, source)
    assert len(bad) == 1 and expected in bad[0], bad


@pytest.mark.parametrize("source", [
    "from lgsp.core.api import Problem, hub_of\n",
    "from lgsp.core.api.edxml import parse_packet\n",
    "from lgsp.core.api import documents as docs\n",
    "from .push import SftpPushAdapter\nfrom lgsp.adapters.sftp.settings import parse_target\n",
    "from lgsp.plugins.hookspecs import hookimpl\n",
])
def test_the_contract_allows(source: str) -> None:
    assert violations("adapters/sftp/x.py", source) == []


def test_every_public_name_exists() -> None:
    for module in (api, api_edxml):
        missing = [name for name in module.__all__ if not hasattr(module, name)]
        assert not missing, f"{module.__name__} lists names it lacks: {missing}"
    assert api.Hub.__name__ == "Hub"
