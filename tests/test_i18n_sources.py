"""Nothing a person reads bypasses the catalogues: a scan of the source for messages written as plain
literals where they reach a reader, and the CLI's error paths run in the default language and read for
English msgids (docs/i18n.md)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from lgsp.core.i18n_catalogues import SOURCE_FOLDERS, read
from tests.cli_support import run_cli
from tests.test_cli import Env

ROOT = Path(__file__).resolve().parent.parent

#: The marking and rendering functions: a literal inside one of these goes through the catalogues.
MARKERS = {"_", "t", "Text", "N_", "gettext", "ngettext", "render", "said"}

#: Where a message reaches a reader, and which argument holds it (None: every positional one):
#: printed by the CLI, a problem's detail, the exceptions the CLI prints as its error line, and the
#: lines of `lgsp doctor` (`Check`, `Found`).
SINKS: dict[str, int | None] = {"print": None, "CliError": 0, "Problem": 1, "TlsError": 0, "PolicyError": 0,
                                "MasterKeyError": 0, "ProfileError": 0, "PluginError": 0, "BackupError": 0,
                                "WorkersError": 0, "Finding": 3,
                                "ConfigError": 0, "Check": None, "Found": None,
                                # A delivery's reason and last error, a push's receipt: stored as their English
                                # text and shown in the reader's language (`render_stored`) by `lgsp status`,
                                # `lgsp deliveries` and the console, so they must be msgids.
                                "SftpError": 0, "SftpTooLarge": 0, "AxisError": 1, "PushFailure": 0,
                                "end_delivery": 3, "_release": 2, "_requeue_sending": 0, "_abandon": 1,
                                "PushReceipt": 0}

#: Keyword arguments that hold such a message, for every sink.
SINK_KEYWORDS = {"detail", "reason", "desc"}
#: Calls whose message is only in a keyword: a delivery's move (its reason), an operator's cancel, a
#: packet's event (the "reason" of its detail, shown by `lgsp status` and the console).
KEYWORD_SINKS = {"move": "reason", "move_rows": "reason", "operator_cancel": "reason", "record": "detail"}

#: Files whose findings are known and why they stay (a finding elsewhere fails the test; an entry that no
#: longer has findings fails it too, so the list only shrinks).
KNOWN: dict[str, str] = {
    "core/i18n_catalogues.py": "`make messages` output, a developer's tool",
    "cli/main.py": "the refusal of an unknown LGSP_LANG is in both languages on purpose: no language is known",
}

_WORD = re.compile(r"[A-Za-z]{3,}")
_VIETNAMESE = re.compile(r"[àáảãạăằắẳẵặâầấẩẫậđèéẻẽẹêềếểễệìíỉĩịòóỏõọôồốổỗộơờớởỡợùúủũụưừứửữựỳýỷỹỵ]", re.I)


def _name(func: ast.expr) -> str | None:
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None


def _bare_words(node: ast.expr) -> list[str]:
    """The literal words in an expression that do not pass through a marking function."""
    if isinstance(node, ast.Call) and _name(node.func) in MARKERS:
        return []
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value] if _WORD.search(node.value) else []
    if isinstance(node, ast.JoinedStr):
        return [v.value for v in node.values if isinstance(v, ast.Constant) and _WORD.search(str(v.value))]
    if isinstance(node, ast.BinOp):
        return _bare_words(node.left) + _bare_words(node.right)
    if isinstance(node, ast.IfExp):
        return _bare_words(node.body) + _bare_words(node.orelse)
    if isinstance(node, ast.Subscript):  # f"..."[:300]
        return _bare_words(node.value)
    if isinstance(node, ast.Dict):  # an event's detail: its "reason" is shown
        return [w for k, v in zip(node.keys, node.values, strict=True)
                if isinstance(k, ast.Constant) and k.value == "reason" for w in _bare_words(v)]
    return []


def unmarked_messages(root: Path = ROOT) -> dict[str, list[str]]:
    """file → `line: sink: words` for every message literal passed to a sink without a marking function."""
    found: dict[str, list[str]] = {}
    for folder in SOURCE_FOLDERS:
        for path in sorted((root / folder).rglob("*.py")):
            rel = str(path.relative_to(root))
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not isinstance(node, ast.Call):
                    continue
                if _name(node.func) in KEYWORD_SINKS:
                    args = [k.value for k in node.keywords if k.arg == KEYWORD_SINKS[_name(node.func) or ""]]
                elif _name(node.func) in SINKS:
                    index = SINKS[_name(node.func) or ""]
                    args = list(node.args) if index is None else node.args[index:index + 1]
                    args += [k.value for k in node.keywords if k.arg in SINK_KEYWORDS]
                else:
                    continue
                for arg in args:
                    words = _bare_words(arg)
                    if words:
                        found.setdefault(rel, []).append(f"{node.lineno}: {_name(node.func)}: {words}")
    return found


_SENTENCE = re.compile(r"[A-Za-z]{2,}\s+[A-Za-z]{2,}")


def _key_like(node: ast.expr) -> bool:
    """A configuration key path: a name, an attribute, an f-string or concatenation, or a literal without spaces."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str) and " " not in node.value
    if isinstance(node, ast.BinOp):  # "a." + name, never 1 << 30
        return isinstance(node.op, ast.Add)
    return isinstance(node, (ast.Name, ast.Attribute, ast.JoinedStr, ast.Subscript, ast.Call))


def unmarked_key_messages(root: Path = ROOT) -> dict[str, list[str]]:
    """file → `line: words` for every `(key, "message")` pair whose message is a plain literal: how
    configuration problems are reported (`lgsp_check_config`, `validate_target`, `config_issues`), shown
    by `lgsp config check` and at start-up after the key path."""
    found: dict[str, list[str]] = {}
    for folder in SOURCE_FOLDERS:
        for path in sorted((root / folder).rglob("*.py")):
            rel = str(path.relative_to(root))
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not isinstance(node, ast.Tuple) or len(node.elts) != 2 or not _key_like(node.elts[0]):
                    continue
                words = [w for w in _bare_words(node.elts[1]) if _SENTENCE.search(w)]
                if words:
                    found.setdefault(rel, []).append(f"{node.lineno}: {words}")
    return found


def test_every_configuration_message_goes_through_the_catalogues() -> None:
    found = unmarked_key_messages()
    assert not found, "(key, message) pairs not marked for the catalogues (use Text):\n" + \
        "\n".join(f"{f}:{line}" for f, lines in found.items() for line in lines)


def test_the_key_message_scan_finds_an_unmarked_pair(tmp_path: Path) -> None:
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "x.py").write_text(
        'def check(raw, key):\n'
        '    out = [("adapters.x.url", "must be an https URL")]\n'
        '    out.append((f"adapters.x.{key}", f"unknown key {key}"))\n'
        '    out.append(("adapters.x.port", Text("must be a port number")))\n'
        '    headers = [("Accept-Encoding", "identity")]\n'
        '    names = {"01": ("Đã đến", "arrived at the unit")}\n'
        '    return out\n', encoding="utf-8")
    found = unmarked_key_messages(tmp_path)
    assert [line.split(":")[0] for line in found["plugins/x.py"]] == ["2", "3"]


def test_every_message_a_reader_gets_goes_through_the_catalogues() -> None:
    found = unmarked_messages()
    new = {f: lines for f, lines in found.items() if f not in KNOWN}
    assert not new, "messages not marked for the catalogues (use _()/t()/Text with named placeholders):\n" + \
        "\n".join(f"{f}:{line}" for f, lines in new.items() for line in lines)
    stale = sorted(set(KNOWN) - set(found))
    assert not stale, f"no longer needed in KNOWN: {stale}"


def test_the_scan_finds_an_unmarked_message(tmp_path: Path) -> None:
    """The scan is not blind: an f-string problem detail and a printed literal are found, marked ones are not."""
    (tmp_path / "cli").mkdir()
    (tmp_path / "cli" / "x.py").write_text(
        'def f(unit):\n'
        '    raise Problem("not_found", f"unit {unit} does not exist")\n'
        'def g():\n'
        '    print("sent the packet")\n'
        'def h(unit):\n'
        '    print(t("sent {unit}", unit=unit)); raise CliError("--x: " + t("bad value"))\n', encoding="utf-8")
    (tmp_path / "adapters").mkdir()
    (tmp_path / "adapters" / "y.py").write_text(
        'def f(where, exc):\n'
        '    raise SftpError(f"{where} refused the connection", retryable=True)\n'
        'def g(exc):\n'
        '    raise PushFailure(f"national axis: {exc}"[:1000], retryable=False)\n'
        'async def h(conn, at):\n'
        '    await dv.move(conn, "p", None, "cancelled", at, reason="cancelled by the source")\n'
        '    await record(conn, "p", "x", at, detail={"reason": "unit now pulls", "mode": "pull"})\n'
        'def i(where):\n'
        '    raise SftpError(Text("{where} refused the connection", where=where), retryable=True)\n',
        encoding="utf-8")
    found = unmarked_messages(tmp_path)
    assert sorted(found) == ["adapters/y.py", "cli/x.py"]
    assert [line.split(":")[0] for line in found["cli/x.py"]] == ["2", "4"]
    assert sorted(line.split(":")[0] for line in found["adapters/y.py"]) == ["2", "4", "6", "7"]


def test_the_cli_and_console_code_write_no_vietnamese_of_their_own() -> None:
    """Vietnamese in the CLI's or the console's Python code would show in English too: it belongs in the
    Vietnamese catalogue. The notification mail is Vietnamese by design; `lgsp` refusing an unknown
    LGSP_LANG speaks both languages."""
    allowed = {"adapters/console/mail.py", "cli/main.py"}
    found = []
    for folder in ("cli", "adapters/console"):
        for path in sorted((ROOT / folder).glob("*.py")):
            rel = str(path.relative_to(ROOT))
            if rel in allowed:
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))
            docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                          if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                          and n.body and isinstance(n.body[0], ast.Expr)}
            found += [f"{rel}:{n.lineno}: {n.value!r}" for n in ast.walk(tree)
                      if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings
                      and _VIETNAMESE.search(n.value)]
    assert not found, found


def _english_pieces() -> list[str]:
    """The literal parts (placeholders cut out) of every msgid the Vietnamese catalogue translates
    differently: long enough to be a phrase, never a name that stays as it is."""
    pieces = set()
    for entry in read("vi"):
        if not entry.id or not entry.string or entry.string == entry.id:
            continue
        for part in re.split(r"\{[^{}]*\}|%\([^)]*\)[sdr]", str(entry.id)):
            part = part.strip(" :;,.—()")
            if len(part) >= 14 and " " in part:
                pieces.add(part)
    return sorted(pieces)


def test_the_cli_error_paths_read_vietnamese_by_default(tmp_path: Path) -> None:
    """Typical mistakes an operator makes, in the default language: every line is Vietnamese (no piece of an
    English msgid the catalogue translates shows through)."""
    cli = Env(tmp_path)
    (tmp_path / "not-a-cert.pem").write_text("hello", encoding="utf-8")
    (tmp_path / "profiles.yaml").write_text("default: {}\n", encoding="utf-8")
    (tmp_path / "profiles.yaml").chmod(0o600)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x", encoding="utf-8")
    runs = [
        ("route", "explain", "không hợp lệ"),
        ("cert", "pin", "000.00.00.H23", "--cert", str(tmp_path / "not-a-cert.pem")),
        ("backup", str(tmp_path / "full")),
        ("restore", str(tmp_path / "full")),
        ("unit", "show", "000.00.99.H23"),
        ("policy", "add", "allow", "zone:a b", "*"),
        ("policy", "explain", "000.00.00.H23", "không hợp lệ"),
        ("secret", "delete", "khong-co"),
        ("deliveries", "cancel", "0" * 32),
        ("notice", "withdraw", "999"),
        ("report", "--unit", "000.00.99.H23"),
        ("doctor",),
        ("send", str(tmp_path / "missing.xml"), "--to", "000.00.01.H23"),
        ("send", str(tmp_path / "not-a-cert.pem"), "--to", "000.00.01.H23", "--url", "ftp://x", "--access-key", "AK1",
         "--secret-key", "s"),
        ("send", str(tmp_path / "not-a-cert.pem"), "--to", "000.00.01.H23", "--profile", "khong-co"),
        ("send", str(tmp_path / "not-a-cert.pem"), "--to", "000.00.01.H23", "--access-key", "AK1",
         "--algorithm", "RSA-SHA256"),
    ]
    pieces = _english_pieces()
    assert len(pieces) > 300
    english = []
    for args in runs:
        with_config = args[0] != "send"
        res = run_cli(*args, *(["-c", str(cli.config)] if with_config else []), env=cli.env, cwd=cli.tmp, lang="")
        out = res.stdout + res.stderr
        assert out.strip(), args
        english += [f"{' '.join(args)}: {piece!r} in {out!r}" for piece in pieces if piece in out]
    assert not english, "\n".join(english)
    # A master key file others can read: refused, in Vietnamese.
    (tmp_path / "var" / "master.key").chmod(0o644)
    res = run_cli("unit", "list", "-c", str(cli.config), env=cli.env, cwd=cli.tmp, lang="")
    assert res.returncode == 1 and "người dùng khác đọc được" in res.stderr and "readable" not in res.stderr


def test_an_unreachable_store_and_a_missing_file_read_vietnamese_by_default(tmp_path: Path) -> None:
    """An OS error's reason through the catalogues, the library's words (the address) kept after it."""
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = tmp_path / "pg.yaml"
    config.write_text(f"hub:\n  data_dir: {tmp_path / 'hub'}\ndatabase:\n"
                      f"  url: postgresql+asyncpg://postgres@127.0.0.1:{port}/lgsp\n", encoding="utf-8")
    res = run_cli("unit", "list", "-c", str(config), cwd=tmp_path, lang="")
    assert res.returncode == 1
    assert res.stderr.startswith("lỗi: bị từ chối kết nối (") and str(port) in res.stderr, res.stderr
    res = run_cli("unit", "list", "-c", str(config), cwd=tmp_path, lang="en")
    assert res.stderr.startswith("error: connection refused ("), res.stderr
    res = run_cli("send", str(tmp_path / "missing.xml"), "--to", "000.00.01.H23", "--url", "http://127.0.0.1:1",
                  "--access-key", "AK1", "--secret-key", "s", cwd=tmp_path, lang="")
    assert res.returncode == 1 and "không có tệp" in res.stderr and "No such file" not in res.stderr, res.stderr
