"""The plugin contract: documented hooks, strict registration, and plugins doing real work."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import inspect
import re
from pathlib import Path
from typing import Any

import pytest

from lgsp.core.config import load_config
from lgsp.core.hub import Hub
from lgsp.core.signing import Signer
from lgsp.plugins import hookspecs
from lgsp.plugins.hookspecs import hookimpl
from lgsp.plugins.manager import PluginError, create_plugin_manager

from .conftest import base_env, raw_request

DOCS = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"


def documented_hooks() -> dict[str, str]:
    """`### lgsp_name(arg, ...)` headings of docs/plugins.md → their argument list."""
    text = DOCS.read_text(encoding="utf-8")
    return {m.group(1): m.group(2) for m in re.finditer(r"^### `(lgsp_\w+)\(([^)]*)\)", text, re.M)}


def test_every_hook_is_documented_with_its_exact_signature() -> None:
    docs = documented_hooks()
    specs = hookspecs.hook_names()
    assert specs, "no hooks found"
    assert sorted(docs) == sorted(specs), "docs/plugins.md and plugins/hookspecs.py list different hooks"
    for name in specs:
        params = ", ".join(inspect.signature(getattr(hookspecs, name)).parameters)
        assert docs[name] == params, f"{name}: docs say ({docs[name]}), spec is ({params})"
        assert getattr(hookspecs, name).__doc__, f"{name} has no docstring"


HOOK_TESTS = Path(__file__).resolve().parent / "hooks"


def test_every_hook_has_a_test_named_for_it_that_a_test_plugin_exercises() -> None:
    """tests/hooks/test_<hook>.py exists for each hook, registers a plugin implementing that hook
    (in the file or a module of tests/hooks it imports), and has a test: a new hook in
    plugins/hookspecs.py fails here until it is tested."""
    missing, unexercised = [], []
    for name in hookspecs.hook_names():
        path = HOOK_TESTS / f"test_{name}.py"
        if not path.is_file():
            missing.append(path.name)
            continue
        text = path.read_text(encoding="utf-8")
        for helper in re.findall(r"^from \.(\w+) import", text, re.M):  # a test plugin kept beside it
            text += (HOOK_TESTS / f"{helper}.py").read_text(encoding="utf-8")
        implements = re.search(rf"@hookimpl\s+(?:async\s+)?def {name}\(", text)
        registers = "extra_plugins=" in text or "extra=" in text
        if not (implements and registers and re.search(r"^(async )?def test_", text, re.M)):
            unexercised.append(path.name)
    assert missing == [], f"hooks without a test file in tests/hooks: {missing}"
    assert unexercised == [], f"hook tests that register no plugin implementing their hook: {unexercised}"
    extra = {p.stem.removeprefix("test_") for p in HOOK_TESTS.glob("test_lgsp_*.py")} - set(hookspecs.hook_names())
    assert extra == set(), f"tests named for hooks that do not exist: {sorted(extra)}"


def test_implementation_matching_no_spec_is_rejected() -> None:
    class Typo:
        @hookimpl
        def lgsp_packet_acepted(self, hub: Any, packet: Any) -> None:  # misspelt on purpose
            pass

    with pytest.raises(PluginError, match="lgsp_packet_acepted"):
        create_plugin_manager(["rest"], extra=[Typo()])


def test_implementation_with_unknown_argument_is_rejected() -> None:
    class Wrong:
        @hookimpl
        def lgsp_startup(self, hub: Any, loop: Any) -> None:
            pass

    with pytest.raises(PluginError, match="loop"):
        create_plugin_manager(["rest"], extra=[Wrong()])


def test_duplicate_algorithm_names_are_rejected() -> None:
    from lgsp.plugins.manager import signature_algorithms
    from lgsp.plugins.signatures import HmacAlgorithm

    class Clash:
        @hookimpl
        def lgsp_signature_algorithms(self) -> list[Any]:
            return [HmacAlgorithm("HMAC-SHA256", hashlib.sha256)]

    with pytest.raises(PluginError, match="HMAC-SHA256"):
        signature_algorithms(create_plugin_manager(["rest"], extra=[Clash()]))


class Sha512:
    """A fourth algorithm, added the way an integrator would."""

    name = "HMAC-SHA512"
    shared_secret = True

    def new_secret(self) -> str:
        return "s" * 40

    def sign(self, signing_key: str | bytes, message: bytes) -> bytes:
        key = signing_key.encode() if isinstance(signing_key, str) else signing_key
        return hmac.new(key, message, hashlib.sha512).digest()

    def verify(self, verification_key: str | bytes, message: bytes, signature: bytes) -> bool:
        return hmac.compare_digest(self.sign(verification_key, message), signature)


class Sha512Plugin:
    @hookimpl
    def lgsp_signature_algorithms(self) -> list[Any]:
        return [Sha512()]


class Recorder:
    """Observes the lifecycle, sometimes asynchronously, sometimes by failing."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []
        self.started = False

    @hookimpl
    def lgsp_startup(self, hub: Hub) -> None:
        self.started = True

    @hookimpl
    def lgsp_packet_accepted(self, hub: Hub, packet: Any) -> None:
        self.seen.append(("accepted", packet.id, packet.source))

    @hookimpl
    async def lgsp_packet_delivered(self, hub: Hub, packet: Any, unit: str) -> None:
        await asyncio.sleep(0)
        self.seen.append(("delivered", packet.id, unit))

    @hookimpl
    def lgsp_packet_failed(self, hub: Hub, packet: Any, unit: str, state: str, reason: str) -> None:
        self.seen.append((state, packet.id, unit))
        raise RuntimeError("a broken observer must not hurt the packet")


async def test_a_fourth_algorithm_and_lifecycle_hooks(tmp_path: Path) -> None:
    recorder = Recorder()
    config = load_config(None, env=base_env(tmp_path))
    async with Hub(config, extra_plugins=(Sha512Plugin(), recorder)) as hub:
        assert recorder.started
        assert "HMAC-SHA512" in hub.algorithms
        for unit in ("000.00.00.H23", "000.00.01.H23", "000.00.02.H23"):
            await hub.directory.add_unit(unit, unit)
        app = await hub.directory.add_application("000.00.00.H23", "x")
        key = await hub.directory.issue_key(app.id, "HMAC-SHA512")
        signer = Signer(key.access_key, Sha512(), key.secret or "")
        status, _, body = await raw_request(hub.url, "GET", "/v1/inbox", signer=signer)
        assert status == 200 and body == {"items": [], "next": None}

        from lgsp.client import Credentials, LgspClient

        apps = [await hub.directory.add_application(u, "y") for u in ("000.00.01.H23", "000.00.02.H23")]
        keys = [await hub.directory.issue_key(a.id, "HMAC-SHA256") for a in apps]
        b, c = (LgspClient(Credentials(hub.url, k.access_key, secret=k.secret)) for k in keys)
        sender_key = await hub.directory.issue_key(app.id, "HMAC-SHA256")
        a = LgspClient(Credentials(hub.url, sender_key.access_key, secret=sender_key.secret))
        try:
            packet_id = await a.send(b"x", ["000.00.01.H23", "000.00.02.H23"], subject="s")
            await b.ack(packet_id, hashlib.sha256(b"x").hexdigest())
            assert await c.fail(packet_id, "no") == "failed"  # the observer raised; the packet did not care
            await hub.exchange.drain()
        finally:
            for client in (a, b, c):
                await client.close()
    assert ("accepted", packet_id, "000.00.00.H23") in recorder.seen
    assert ("delivered", packet_id, "000.00.01.H23") in recorder.seen
    assert ("failed", packet_id, "000.00.02.H23") in recorder.seen


async def test_startup_failure_aborts_start(tmp_path: Path) -> None:
    class Broken:
        @hookimpl
        def lgsp_startup(self, hub: Hub) -> None:
            raise RuntimeError("listener could not bind")

    hub = Hub(load_config(None, env=base_env(tmp_path)), extra_plugins=(Broken(),))
    with pytest.raises(RuntimeError, match="could not bind"):
        await hub.start()
    await hub.stop()


async def test_web_routes_hook_mounts_an_adapter(tmp_path: Path) -> None:
    from aiohttp import web

    from lgsp.core.web import authenticate, json_response

    async def hello(request: web.Request) -> web.Response:
        principal = await authenticate(request)
        return json_response({"unit": principal.unit_id})

    class Adapter:
        @hookimpl
        def lgsp_web_routes(self, hub: Hub) -> list[web.RouteDef]:
            return [web.get("/x/hello", hello)]

    async with Hub(load_config(None, env=base_env(tmp_path)), extra_plugins=(Adapter(),)) as hub:
        await hub.directory.add_unit("000.00.00.H23", "A")
        app = await hub.directory.add_application("000.00.00.H23", "x")
        key = await hub.directory.issue_key(app.id, "HMAC-SHA1")
        from lgsp.plugins.signatures import HMAC_SHA1

        status, _, body = await raw_request(hub.url, "GET", "/x/hello",
                                            signer=Signer(key.access_key, HMAC_SHA1, key.secret or ""))
        assert (status, body) == (200, {"unit": "000.00.00.H23"})
        status, _, body = await raw_request(hub.url, "GET", "/x/hello")
        assert status == 401 and body["code"] == "auth.missing"


async def test_entry_point_plugins_are_discovered_and_enabled_by_name(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """An installed package declaring an `lgsp` entry point loads when (and only when) enabled."""
    package = tmp_path / "site"
    (package / "lgsp_demo_plugin").mkdir(parents=True)
    (package / "lgsp_demo_plugin" / "__init__.py").write_text(
        "from lgsp.plugins.hookspecs import hookimpl\n"
        "STARTED = []\n"
        "@hookimpl\n"
        "def lgsp_startup(hub):\n"
        "    STARTED.append(hub.config.hub.identifier)\n", encoding="utf-8")
    dist = package / "lgsp_demo_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: lgsp-demo-plugin\nVersion: 1.0\n", encoding="utf-8")
    (dist / "entry_points.txt").write_text("[lgsp]\ndemo = lgsp_demo_plugin\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(package))

    from lgsp.plugins.manager import available_plugins

    assert "demo" in available_plugins()
    import lgsp_demo_plugin  # type: ignore[import-not-found]

    async with Hub(load_config(None, env=base_env(tmp_path / "a"))):
        pass
    assert lgsp_demo_plugin.STARTED == []  # installed but not enabled: not loaded
    async with Hub(load_config(None, env=base_env(tmp_path / "b", LGSP_PLUGINS_ENABLED="[rest, demo]"))):
        pass
    assert lgsp_demo_plugin.STARTED == ["000.00.00.H99"]
