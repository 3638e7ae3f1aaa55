"""The `lgsp` command end to end, in-process through `main(argv)`: administration, a running hub,
and the README walkthrough (tests/test_cli_smoke.py runs it as a real process)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from lgsp.core.config import load_config
from lgsp.core.hub import Hub

from .cli_support import CliResult, arun_cli, run_cli, run_cli_serving
from .conftest import free_port

ROOT = Path(__file__).resolve().parents[1]


class Env:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.config = tmp / "lgsp.yaml"
        self.config.write_text(
            f"hub:\n  data_dir: {tmp / 'var'}\nserver:\n  port: {self.port}\nblobs:\n  fsync: false\n"
            "security:\n  rsa_key_bits: 2048\n", encoding="utf-8")
        self.env = {"LGSP_PROFILES_FILE": str(tmp / "profiles.yaml")}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def argv(self, args: tuple[str, ...], config: bool) -> list[str]:
        return [*args] + (["-c", str(self.config)] if config else [])

    def check(self, args: tuple[str, ...], res: CliResult, ok: bool) -> CliResult:
        if ok:
            assert res.returncode == 0, f"{args}: {res.stderr}"
        return res

    def run(self, *args: str, ok: bool = True, config: bool = False, lang: str = "en",
            env: dict[str, str] | None = None) -> CliResult:
        res = run_cli(*self.argv(args, config), env=self.env | (env or {}), cwd=self.tmp, lang=lang)
        return self.check(args, res, ok)

    async def arun(self, *args: str, ok: bool = True, config: bool = False, lang: str = "en") -> CliResult:
        res = await arun_cli(*self.argv(args, config), env=self.env, cwd=self.tmp, lang=lang)
        return self.check(args, res, ok)


@pytest.fixture
def cli(tmp_path: Path) -> Env:
    return Env(tmp_path)


def test_admin_commands(cli: Env) -> None:
    out = cli.run("unit", "add", "000.00.00.H23", "Sở Kế hoạch và Đầu tư", config=True).stdout
    assert "added unit 000.00.00.H23" in out
    cli.run("unit", "add", "000.00.01.H23", "Phòng A", "--parent", "000.00.00.H23", config=True)
    bad = cli.run("unit", "add", "28.22.H17", "Xã cũ", config=True, ok=False)
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "request.invalid" in bad.stderr
    cli.run("unit", "add", "28.22.H17", "Xã cũ", "--legacy", config=True)
    cli.run("unit", "add", "vxp.saas.02", "Hệ thống VXP", "--legacy", config=True)  # another system's code
    for bad in ("vxp saas", "vxp/saas", "x" * 36):
        refused = cli.run("unit", "add", bad, "Sai", "--legacy", config=True, ok=False)
        assert refused.returncode == 1 and refused.stderr.count("\n") == 1 and "request.invalid" in refused.stderr
    twice = cli.run("unit", "add", "VXP.SAAS.02", "again", "--legacy", config=True, ok=False)
    assert twice.returncode == 1 and "conflict" in twice.stderr
    dup = cli.run("unit", "add", "000.00.00.H23", "again", config=True, ok=False)
    assert dup.returncode == 1 and "conflict" in dup.stderr

    listing = cli.run("unit", "list", "--json", config=True).stdout
    units = {u["id"]: u for u in json.loads(listing)}
    assert set(units) == {"000.00.00.H23", "000.00.01.H23", "28.22.H17", "vxp.saas.02"}
    assert units["000.00.01.H23"]["parent"] == "000.00.00.H23"

    app_out = cli.run("app", "add", "000.00.00.H23", "vbql", config=True).stdout
    app_id = re.search(r"id ([0-9a-f-]{36})", app_out).group(1)  # type: ignore[union-attr]
    issued = cli.run("key", "issue", "--app", "vbql", "--unit", "000.00.00.H23", config=True).stdout
    access_key = re.search(r"access key (AK\w+)", issued).group(1)  # type: ignore[union-attr]
    secret = issued.strip().splitlines()[-1]
    assert len(secret) >= 32 and secret not in cli.run("key", "list", config=True).stdout
    rsa = cli.run("key", "issue", "--app", app_id, "--algorithm", "RSA-SHA256", config=True).stdout
    assert "BEGIN PRIVATE KEY" in rsa

    shown = json.loads(cli.run("unit", "show", "000.00.00.H23", config=True).stdout)
    assert [a["name"] for a in shown["applications"]] == ["vbql"]
    assert {k["algorithm"] for k in shown["keys"]} == {"HMAC-SHA256", "RSA-SHA256"}

    assert "revoked" in cli.run("key", "revoke", access_key, config=True).stdout
    keys = cli.run("key", "list", "--unit", "000.00.00.H23", config=True).stdout
    assert re.search(rf"{access_key}.*revoked", keys)
    missing = cli.run("key", "revoke", "AKNOPE", config=True, ok=False)
    assert missing.returncode == 1 and "not_found" in missing.stderr
    no_app = cli.run("key", "issue", "--app", "nope", config=True, ok=False)
    assert no_app.returncode == 1 and "not_found" in no_app.stderr

    cli.run("secret", "set", "sftp-h23", "--from-file", str(cli.config), config=True)
    assert "sftp-h23" in cli.run("secret", "list", config=True).stdout
    assert "hub:" not in cli.run("secret", "list", config=True).stdout
    assert "deleted" in cli.run("secret", "delete", "sftp-h23", config=True).stdout
    upgraded = cli.run("db", "upgrade", config=True).stdout
    assert re.search(r"revision \d{4}", upgraded)


def test_vietnamese_is_the_default(cli: Env) -> None:
    out = cli.run("unit", "add", "000.00.00.H23", "Sở A", config=True, lang="vi").stdout
    assert out.startswith("đã thêm đơn vị")
    err = cli.run("unit", "show", "000.00.09.H23", config=True, lang="vi", ok=False).stderr
    assert err.startswith("lỗi: ")


async def test_walkthrough_with_a_running_hub(cli: Env) -> None:
    """The README's first exchange, command for command, against a hub serving in this process."""
    async with Hub(load_config(cli.config, env={})):
        await walkthrough(cli)


async def walkthrough(cli: Env) -> None:
    for unit, name in (("000.00.00.H23", "Sở A"), ("000.00.01.H23", "Sở B")):
        await cli.arun("unit", "add", unit, name, config=True)
        await cli.arun("app", "add", unit, "vbql", config=True)
    await cli.arun("key", "issue", "--app", "vbql", "--unit", "000.00.00.H23", "--save-profile", "so-a",
                   "--url", cli.url, config=True)
    await cli.arun("key", "issue", "--app", "vbql", "--unit", "000.00.01.H23", "--save-profile", "so-b",
                   "--url", cli.url, config=True)
    assert oct((cli.tmp / "profiles.yaml").stat().st_mode & 0o777) == "0o600"

    doc = cli.tmp / "cong-van.pdf"
    doc.write_bytes(os.urandom(3 << 20))  # large enough for a progress bar
    sent = (await cli.arun("send", "--to", "000.00.01.H23", str(doc), "--subject", "Công văn số 1",
                           "--priority", "1", "--profile", "so-a")).stdout
    packet_id = re.search(r"sent packet ([0-9a-f-]{36})", sent).group(1)  # type: ignore[union-attr]

    inbox = (await cli.arun("inbox", "--json", "--profile", "so-b")).stdout
    assert [i["id"] for i in json.loads(inbox)] == [packet_id]
    assert packet_id in (await cli.arun("inbox", "--profile", "so-b")).stdout
    # Pages: the cursor of the next one goes to stderr, so stdout stays the list alone.
    note = cli.tmp / "ghi-chu.txt"
    note.write_text("ghi chú", encoding="utf-8")
    second = re.search(r"sent packet ([0-9a-f-]{36})", (await cli.arun(  # type: ignore[union-attr]
        "send", "--to", "000.00.01.H23", str(note), "--profile", "so-a")).stdout).group(1)
    page = await cli.arun("inbox", "--json", "--limit", "1", "--profile", "so-b")
    assert [i["id"] for i in json.loads(page.stdout)] == [packet_id]  # priority 1 before 0
    cursor = re.search(r"lgsp inbox --cursor (\S+)", page.stderr).group(1)  # type: ignore[union-attr]
    rest = await cli.arun("inbox", "--json", "--limit", "1", "--cursor", cursor, "--profile", "so-b")
    assert [i["id"] for i in json.loads(rest.stdout)] == [second] and rest.stderr == ""
    every = await cli.arun("inbox", "--json", "--all", "--limit", "1", "--profile", "so-b")
    assert [i["id"] for i in json.loads(every.stdout)] == [packet_id, second] and every.stderr == ""
    assert (await cli.arun("inbox", "--all", "--cursor", cursor, "--profile", "so-b", ok=False)).returncode == 2
    bad = await cli.arun("inbox", "--cursor", "xyz", "--profile", "so-b", ok=False)
    assert bad.returncode == 1 and "request.invalid" in bad.stderr

    fetched = (await cli.arun("fetch", packet_id, "-o", "nhan.pdf", "--profile", "so-b")).stdout
    assert hashlib.sha256(doc.read_bytes()).hexdigest() in fetched
    assert (cli.tmp / "nhan.pdf").read_bytes() == doc.read_bytes()
    assert "delivered" in (await cli.arun("ack", packet_id, "--file", "nhan.pdf", "--profile", "so-b")).stdout

    status = json.loads((await cli.arun("status", packet_id, "--json", "--profile", "so-a")).stdout)
    assert status["deliveries"][0]["state"] == "delivered" and status["content"] == "purged"
    readable = (await cli.arun("status", packet_id, "--profile", "so-a", lang="vi")).stdout
    assert readable.startswith(f"Gói tin {packet_id}") and "000.00.01.H23  đã giao" in readable
    assert "Diễn biến:" in readable and "tạo gói tin" in readable and "đã xóa sau khi giao" in readable
    english = (await cli.arun("status", packet_id, "--profile", "so-a")).stdout
    assert "000.00.01.H23  delivered" in english and "Timeline:" in english and "packet created" in english
    watched = (await cli.arun("watch", "--count", "1", "--profile", "so-b")).stdout
    assert json.loads(watched.splitlines()[0])["type"] == "hello"
    units = (await cli.arun("units", "-q", "000.00.0", "--profile", "so-a")).stdout
    assert "000.00.01.H23" in units

    # Errors are one line and a non-zero exit.
    nofile = await cli.arun("ack", packet_id, "--profile", "so-b", ok=False)
    assert nofile.returncode == 1 and len(nofile.stderr.strip().splitlines()) == 1
    gone = await cli.arun("fetch", packet_id, "--profile", "so-b", ok=False)
    assert gone.returncode == 1 and "content.gone" in gone.stderr
    other = await cli.arun("status", packet_id, "--profile", "so-b", "--access-key", "AKWRONG", ok=False)
    assert other.returncode == 1 and "auth.unknown_key" in other.stderr
    noprofile = await cli.arun("inbox", "--profile", "nobody", ok=False)
    assert noprofile.returncode == 1 and "no profile named 'nobody'" in noprofile.stderr
    down = await cli.arun("inbox", "--profile", "so-b", "--url", f"http://127.0.0.1:{free_port()}", ok=False)
    assert down.returncode == 1 and down.stderr.startswith("error: transport")


def test_bad_input_is_one_line_and_a_non_zero_exit(cli: Env) -> None:
    """Bad flags, credentials, key files, profiles and stores: one line each, never a traceback."""
    junk = cli.tmp / "junk.pem"
    junk.write_bytes(bytes(range(256)))
    binary = cli.tmp / "binary.pub"
    binary.write_bytes(b"\x9e\xff" * 40)
    (cli.tmp / "profiles.yaml").write_text("a: [unclosed\n", encoding="utf-8")
    (cli.tmp / "profiles.yaml").chmod(0o600)
    down = f"http://127.0.0.1:{free_port()}"
    cases = [
        (["unit", "list", "--bogus"], 2, "unrecognized arguments: --bogus"),
        (["nosuch"], 2, "invalid choice: 'nosuch'"),
        (["inbox", "--access-key", "X", "--algorithm", "FOO", "--secret-key", "s", "--url", down],
         1, "unknown algorithm 'FOO'"),
        (["inbox", "--access-key", "X", "--url", down, "--profile", "a"], 1, "profiles.yaml: not a readable YAML"),
        (["inbox", "--access-key", "X", "--url", down, "--secret-key", ""], 1, "needs the secret key"),
        (["inbox", "--access-key", "X", "--algorithm", "RSA-SHA256", "--private-key-file", str(junk), "--url", down],
         1, "not an unencrypted PEM private key"),
        (["inbox", "--access-key", "X", "--secret-key", "s", "--url", "http://[bad"], 1, "error: "),
        (["key", "issue", "--unit", "000.00.00.H23", "--app", "x", "--algorithm", "RSA-SHA256",
          "--public-key", str(binary), "-c", str(cli.config)], 1, "error: "),
    ]
    env = {"LGSP_PROFILES_FILE": str(cli.tmp / "none.yaml")}
    for args, code, expect in cases:
        res = cli.run(*args, ok=False, env=env | ({"LGSP_PROFILES_FILE": str(cli.tmp / "profiles.yaml")}
                                                   if "--profile" in args else {}))
        assert res.returncode == code, (args, res.stderr)
        assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr, (args, res.stderr)
        assert expect in res.stderr, (args, res.stderr)
    pg = cli.run("unit", "list", "-c", str(cli.config), ok=False,
                 env=env | {"LGSP_DATABASE_URL": "postgresql+asyncpg://nouser@127.0.0.1:1/nodb"})
    assert pg.returncode == 1 and len(pg.stderr.strip().splitlines()) == 1 and pg.stderr.startswith("error: "), \
        pg.stderr


def test_run_creates_what_it_needs_serves_time_and_stops_on_a_signal(cli: Env) -> None:
    import urllib.request

    def work(line: str) -> None:
        assert cli.url in line
        with urllib.request.urlopen(cli.url + "/v1/time", timeout=10) as resp:
            assert json.loads(resp.read())["now"].endswith("Z")

    res, _ = run_cli_serving("run", "-c", str(cli.config), work=work, cwd=cli.tmp)
    assert res.returncode == 0 and "stopping" in res.stderr
    var = cli.tmp / "var"
    assert (var / "lgsp.db").is_file() and (var / "blobs" / "objects").is_dir()
    assert oct((var / "master.key").stat().st_mode & 0o777) == "0o600"


def test_run_refuses_a_bad_config(cli: Env) -> None:
    cli.config.write_text("server:\n  port: not-a-port\n", encoding="utf-8")
    res = cli.run("run", config=True, ok=False)
    assert res.returncode == 1
    assert res.stderr.strip() == f"error: {cli.config}:2: server.port: must be an integer, got 'not-a-port'"


@pytest.mark.skipif(not (ROOT / ".venv" / ".installed").exists(), reason="needs the .venv that `make` creates")
def test_make_run_serves_time(tmp_path: Path) -> None:
    """`make run` from the README: starts on the given config and prints its URL."""
    port = free_port()
    cfg = tmp_path / "lgsp.yaml"
    cfg.write_text(f"hub:\n  data_dir: {tmp_path / 'var'}\nserver:\n  port: {port}\n", encoding="utf-8")
    proc = subprocess.Popen(["make", "--no-print-directory", "run", f"CONFIG={cfg}"], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        seen = ""
        while f"http://127.0.0.1:{port}" not in seen and time.monotonic() < deadline:
            seen = proc.stdout.readline()
            assert seen or proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/time", timeout=10) as resp:
            assert resp.status == 200
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def test_every_state_and_event_type_the_hub_uses_has_a_readable_name() -> None:
    """A new state or event type without its Vietnamese and English names fails here."""
    from pathlib import Path as _Path

    import yaml

    from lgsp.cli.timeline import EVENTS, STATES

    root = _Path(__file__).parents[1]
    spec = yaml.safe_load((root / "schemas" / "openapi.yaml").read_text(encoding="utf-8"))
    schemas = spec["components"]["schemas"]
    view = next(part for part in schemas["PacketView"]["allOf"] if "properties" in part)["properties"]
    states = [*schemas["DeliveryState"]["enum"], *view["state"]["enum"], *view["content"]["enum"]]
    missing = sorted(state for state in states if state not in STATES)
    assert not missing, f"states without a readable name in cli/timeline.py: {missing}"
    from lgsp.core.events import EVENT_TYPES  # every type the hub records (tests/test_event_types.py)

    missing = sorted(set(EVENT_TYPES) - set(EVENTS))
    assert not missing, f"event types without a readable name in cli/timeline.py: {missing}"
    from lgsp.core.i18n import gettext

    assert all(gettext(m, "vi") != m for m in [*EVENTS.values(), *STATES.values()])


def test_an_unknown_language_is_refused_naming_the_ones_that_exist() -> None:
    for value in ("fr", "xx_YY.UTF-8"):
        res = run_cli("--help", lang=value)
        assert res.returncode == 2 and res.stderr.count("\n") == 1
        assert value in res.stderr and "vi" in res.stderr and "en" in res.stderr
    for value in ("vi", "en", "en_US.UTF-8", "vi-VN"):
        res = run_cli("notice", "list", "--help", lang=value)
        assert res.returncode == 0, (value, res.stderr)


def test_admin_commands_refuse_to_guess_a_store(cli: Env, tmp_path: Path) -> None:
    """Outside the hub's folder with no config named: one line, and no new ./var with a new master key."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for args in (["unit", "list"], ["key", "issue", "--app", "x"], ["db", "upgrade"], ["secret", "list"]):
        res = run_cli(*args, cwd=elsewhere)
        assert res.returncode == 1 and res.stdout == "", (args, res)
        assert res.stderr.strip() == ("error: no config file config/lgsp.yaml: an administration command must know "
                                      "which store to use; run it in the hub's folder, or give --config FILE "
                                      "(or LGSP_CONFIG)"), res.stderr
        assert list(elsewhere.iterdir()) == []
    vi = run_cli("unit", "list", cwd=elsewhere, lang="vi")
    assert vi.returncode == 1 and vi.stderr.startswith("lỗi: không thấy tệp cấu hình")
    # Named on purpose: the config by LGSP_CONFIG, or the store itself by LGSP_HUB_DATA_DIR.
    assert run_cli("unit", "list", cwd=elsewhere, env={"LGSP_CONFIG": str(cli.config)}).returncode == 0
    named = run_cli("unit", "list", cwd=elsewhere, env={"LGSP_HUB_DATA_DIR": str(tmp_path / "named")})
    assert named.returncode == 0 and (tmp_path / "named" / "lgsp.db").is_file()
    assert list(elsewhere.iterdir()) == []


def test_each_admin_command_says_which_store_it_used(cli: Env) -> None:
    store = f"store: SQLite {(cli.tmp / 'var' / 'lgsp.db').resolve()} (config: {cli.config})"
    added = cli.run("unit", "add", "000.00.00.H23", "Sở A", config=True)
    assert added.stderr.strip() == store and "000.00.00.H23" in added.stdout
    listed = cli.run("unit", "list", "--json", config=True)
    assert listed.stderr.strip() == store and json.loads(listed.stdout)  # stdout stays the JSON alone
    assert cli.run("db", "upgrade", config=True).stderr.strip() == store
    failed = cli.run("unit", "show", "000.00.09.H23", config=True, ok=False)
    assert failed.returncode == 1 and failed.stderr.count("\n") == 1  # a failure stays one line
    vi = cli.run("unit", "list", config=True, lang="vi")
    assert vi.stderr.startswith("kho dữ liệu: SQLite ")
    pg = cli.run("unit", "list", config=True, ok=False,
                 env={"LGSP_DATABASE_URL": "postgresql+asyncpg://lgsp:mat-khau@127.0.0.1:1/lgsp"})
    assert "mat-khau" not in pg.stderr


def test_saved_profiles_take_the_hub_url_from_the_config(cli: Env) -> None:
    import yaml

    cli.run("unit", "add", "000.00.00.H23", "Sở A", config=True)
    cli.run("app", "add", "000.00.00.H23", "vbql", config=True)
    cli.run("key", "issue", "--app", "vbql", "--unit", "000.00.00.H23", "--save-profile", "so-a", config=True)
    profiles = yaml.safe_load((cli.tmp / "profiles.yaml").read_text(encoding="utf-8"))
    assert profiles["so-a"]["url"] == f"http://127.0.0.1:{cli.port}"  # the configured port, not 8080
    text = cli.config.read_text(encoding="utf-8")
    cli.config.write_text(text.replace("server:\n", "server:\n  public_url: https://truc.tinh.gov.vn/\n"),
                          encoding="utf-8")
    cli.run("key", "issue", "--app", "vbql", "--unit", "000.00.00.H23", "--save-profile", "so-b", config=True)
    cli.run("key", "issue", "--app", "vbql", "--unit", "000.00.00.H23", "--save-profile", "so-c",
            "--url", "http://10.1.2.3:9000", config=True)
    profiles = yaml.safe_load((cli.tmp / "profiles.yaml").read_text(encoding="utf-8"))
    assert profiles["so-b"]["url"] == "https://truc.tinh.gov.vn"
    assert profiles["so-c"]["url"] == "http://10.1.2.3:9000"  # given on the command line: kept as given


def test_a_value_starting_with_a_dash_is_the_options_value() -> None:
    """A secret key starts with "-" once in 64 (token_urlsafe): `--secret-key -…` is that key, not an
    unknown option; a subject may start with "-" too. A forgotten value is still refused."""
    from lgsp.cli.args import values_joined
    from lgsp.cli.main import build_parser

    parser = build_parser()
    argv = ["inbox", "--url", "http://127.0.0.1:1", "--access-key", "AKX", "--secret-key", "-Ab_c-9"]
    assert parser.parse_args(values_joined(parser, argv)).secret_key == "-Ab_c-9"
    send = ["send", "--to", "000.00.01.H23", "--subject", "- báo cáo", "x.bin"]
    assert parser.parse_args(values_joined(parser, send)).subject == "- báo cáo"
    after_dashes = ["send", "--to", "000.00.01.H23", "--", "--subject", "-x.bin"]
    assert values_joined(parser, after_dashes) == after_dashes  # positional arguments only after "--"
    forgotten = ["inbox", "--secret-key", "--url", "http://127.0.0.1:1"]
    assert values_joined(parser, forgotten) == forgotten
    with pytest.raises(SystemExit) as refused:
        parser.parse_args(values_joined(parser, forgotten))
    assert refused.value.code == 2


def test_the_cli_takes_a_secret_starting_with_a_dash(tmp_path: Path) -> None:
    """End to end: the command line with such a secret reaches the hub (here: none listening, so the
    answer is the one-line connection error, not a usage error)."""
    res = run_cli("inbox", "--url", f"http://127.0.0.1:{free_port()}", "--access-key", "AKX",
                  "--secret-key", "-Ab_c-9")
    assert res.returncode == 1 and "expected one argument" not in res.stderr, res.stderr
