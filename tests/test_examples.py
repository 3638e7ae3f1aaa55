"""The guide's Java and JavaScript examples are real programs: the guide quotes them verbatim, and
they complete an exchange against a live hub (compiled with javac, run with Node).

CI has JDK 17 and Node 20, so a missing `javac`, `java` or `node` fails these tests; a developer
without them sets `LGSP_SKIP_EXAMPLES=1` to skip the runs (the guide check still runs).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from pathlib import Path

import pytest

from lgsp.core.hub import Hub

from .conftest import MakeActor

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "integrator-guide.md"
JAVA = ROOT / "docs" / "examples" / "java" / "LgspExample.java"
JS = ROOT / "docs" / "examples" / "js" / "lgsp-example.mjs"
EXAMPLES = (JAVA, JS)

INCLUDE_RE = re.compile(r"<!-- include: (?P<path>[^#\s]+)(?:#(?P<region>[\w-]+))? -->\n+"
                        r"```(?P<lang>\w+)\n(?P<body>.*?)\n```", re.S)
FENCE_RE = re.compile(r"^```(\w+)$", re.M)
REGION_RE = re.compile(r"^[ \t]*// \[start:(?P<name>[\w-]+)\]\n(?P<body>.*?)\n[ \t]*// \[end:(?P=name)\]$", re.S | re.M)
STEPS = ["self-test", "stream", "create", "upload", "event", "inbox", "ready", "download", "ack", "status"]


def regions(path: Path) -> dict[str, str]:
    """`// [start:name]` ... `// [end:name]` blocks of an example, without the marker lines."""
    found: dict[str, str] = {}
    for match in REGION_RE.finditer(path.read_text(encoding="utf-8")):
        assert match["name"] not in found, f"{path.name}: region {match['name']} twice"
        found[match["name"]] = match["body"]
    return found


def dedent(text: str) -> str:
    lines = text.split("\n")
    margin = min((len(line) - len(line.lstrip(" ")) for line in lines if line.strip()), default=0)
    return "\n".join(line[margin:] for line in lines)


# -- the guide quotes the files -------------------------------------------------------------------

def test_the_guides_code_blocks_are_the_example_files() -> None:
    guide = GUIDE.read_text(encoding="utf-8")
    includes = list(INCLUDE_RE.finditer(guide))
    assert includes, "the guide includes no example excerpt"
    quoted: set[tuple[str, str | None]] = set()
    for match in includes:
        path = ROOT / match["path"]
        assert path in EXAMPLES, f"the guide includes {match['path']}, which is not one of the examples"
        if match["region"] is None:
            expected = path.read_text(encoding="utf-8").rstrip("\n")
        else:
            found = regions(path)
            assert match["region"] in found, f"{path.name} has no region {match['region']}"
            expected = dedent(found[match["region"]])
        assert match["body"] == expected, (
            f"docs/integrator-guide.md's copy of {match['path']}#{match['region']} differs from the file: "
            "copy the region again")
        quoted.add((match["path"], match["region"]))
    for path in EXAMPLES:
        relative = str(path.relative_to(ROOT))
        for name in regions(path):
            assert (relative, name) in quoted or (relative, None) in quoted, \
                f"region {name} of {relative} is not in the guide"


def test_every_java_or_javascript_block_of_the_guide_is_an_include() -> None:
    """Hand-written Java or JavaScript in the guide could drift from the protocol: there is none."""
    guide = GUIDE.read_text(encoding="utf-8")
    included = {m.start("lang") - 3 for m in INCLUDE_RE.finditer(guide)}
    for fence in FENCE_RE.finditer(guide):
        if fence[1] in ("java", "js", "javascript", "mjs"):
            line = guide.count("\n", 0, fence.start()) + 1
            assert fence.start() in included, f"docs/integrator-guide.md:{line}: a {fence[1]} block, not an include"


# -- the programs run against a live hub ----------------------------------------------------------

def tool(name: str) -> str:
    if os.environ.get("LGSP_SKIP_EXAMPLES") == "1":
        pytest.skip("LGSP_SKIP_EXAMPLES=1: the Java and JavaScript examples are not run")
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"`{name}` is not on PATH: the examples need JDK 17 (javac, java) and Node 20 (node); "
                    "set LGSP_SKIP_EXAMPLES=1 to skip them on a machine without")
    return path


async def run(*argv: str, env: dict[str, str] | None = None, cwd: Path | None = None,
              timeout: float = 30.0) -> tuple[int, str, str]:
    """A subprocess that does not block the event loop (the hub under test runs on it)."""
    proc = await asyncio.create_subprocess_exec(*argv, env=env, cwd=cwd, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"{argv[0]} did not finish within {timeout} s") from None
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def exchange_env(hub: Hub, make_actor: MakeActor) -> dict[str, str]:
    a = await make_actor("000.00.00.H23", "Sở Kế hoạch và Đầu tư")
    b = await make_actor("000.00.01.H23", "Sở Tài chính")
    assert a.key.secret and b.key.secret
    for n in range(10):  # ahead of the example's packet (priority 0): it is found on the inbox's second page
        await a.client.send(f"tệp {n}".encode(), [b.unit], subject=f"Tệp khẩn {n}", priority=1)
    return {**{k: v for k, v in os.environ.items() if not k.startswith("LGSP_")},
            "LGSP_URL": hub.url, "LGSP_SOURCE_KEY": a.key.access_key, "LGSP_SOURCE_SECRET": a.key.secret,
            "LGSP_DEST_UNIT": b.unit, "LGSP_DEST_KEY": b.key.access_key, "LGSP_DEST_SECRET": b.key.secret}


async def check_exchange(hub: Hub, code: int, out: str, err: str) -> None:
    """Exit 0, one `ok` line per step in order, and the hub agrees: the packet was delivered."""
    assert code == 0, f"stdout:\n{out}\nstderr:\n{err}"
    lines = out.splitlines()
    assert [line.split()[1] for line in lines] == STEPS and all(line.startswith("ok ") for line in lines), out
    packet_id = re.search(r"packet ([0-9a-f-]{36}) to", out).group(1)  # type: ignore[union-attr]
    view = await hub.exchange.packet(packet_id)
    assert view is not None and view.state == "completed" and view.content_state == "purged"
    assert "SHA-256 verified" in out and "found on page 2" in out  # the cursor was followed
    assert "10 waiting" in out


async def test_java_example_completes_an_exchange(hub: Hub, make_actor: MakeActor, tmp_path: Path) -> None:
    javac, java = tool("javac"), tool("java")
    code, out, err = await run(javac, "--release", "17", "-Xlint:all", "-Werror", "-d", str(tmp_path), str(JAVA))
    assert code == 0, err
    env = await exchange_env(hub, make_actor)
    code, out, err = await run(java, "-cp", str(tmp_path), "LgspExample", env=env)
    await check_exchange(hub, code, out, err)
    assert "opened with signed headers" in out

    # A wrong secret: the hub's own code on one FAIL line, exit status 1, nothing sent.
    code, out, err = await run(java, "-cp", str(tmp_path), "LgspExample",
                               env=env | {"LGSP_DEST_SECRET": "not-the-secret"})
    assert code == 1 and out.splitlines()[0].startswith("ok   self-test"), (out, err)
    assert err.startswith("FAIL stream") and "401 auth.bad_signature" in err, err
    code, out, err = await run(java, "-cp", str(tmp_path), "LgspExample", env=env | {"LGSP_URL": ""})
    assert code == 1 and out == "" and "FAIL config" in err and "LGSP_URL" in err, err


async def test_javascript_example_completes_an_exchange(hub: Hub, make_actor: MakeActor) -> None:
    node = tool("node")
    env = await exchange_env(hub, make_actor)
    code, out, err = await run(node, "--experimental-websocket", str(JS), env=env)
    await check_exchange(hub, code, out, err)
    assert "opened with a ticket" in out  # the browser's way in

    code, out, err = await run(node, "--experimental-websocket", str(JS),
                               env=env | {"LGSP_SOURCE_SECRET": "not-the-secret"})
    assert code == 1 and err.startswith("FAIL create") and "401 auth.bad_signature" in err, (out, err)
    code, out, err = await run(node, str(JS), env=env | {"LGSP_DEST_KEY": ""})
    assert code == 1 and out == "" and "FAIL config" in err and "LGSP_DEST_KEY" in err, err
