"""`lgsp account ...` end to end: the first operator, listing, reset, lockout lift, the audit trail."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli_support import CliResult, run_cli
from tests.test_cli import Env


def _run(cli: Env, *args: str, stdin: str = "", lang: str = "en") -> CliResult:
    return run_cli(*args, "-c", str(cli.config), stdin=stdin, env=cli.env, cwd=cli.tmp, lang=lang)


def test_first_operator_and_account_administration(tmp_path: Path) -> None:
    cli = Env(tmp_path)
    res = _run(cli, "account", "add", "quan.tri", "--role", "operator", "--name", "Quản trị viên",
               stdin="mot-mat-khau-dai\n", lang="vi")
    assert res.returncode == 0, res.stderr
    assert "đã tạo tài khoản quan.tri (operator)" in res.stdout
    assert "mot-mat-khau-dai" not in res.stdout

    cli.run("unit", "add", "000.00.00.H23", "Sở Kế hoạch và Đầu tư", config=True)
    res = _run(cli, "account", "add", "so.kh", "--role", "unit_admin", "--unit", "000.00.00.H23", "--generate")
    assert res.returncode == 0, res.stderr
    temporary = res.stdout.strip().splitlines()[-1]
    assert len(temporary) >= 12

    listed = json.loads(_run(cli, "account", "list", "--json").stdout)
    assert [(a["username"], a["role"], a["unit"]) for a in listed] == [
        ("quan.tri", "operator", None), ("so.kh", "unit_admin", "000.00.00.H23")]

    res = _run(cli, "account", "reset-password", "so.kh")
    assert res.returncode == 0 and res.stdout.strip().splitlines()[-1] != temporary
    assert _run(cli, "account", "unlock", "so.kh").returncode == 0
    assert _run(cli, "account", "disable", "so.kh").returncode == 0

    trail = json.loads(_run(cli, "account", "audit", "--json").stdout)
    assert [e["action"] for e in trail][:4] == ["account.disabled", "account.unlocked", "account.password_reset",
                                                "account.created"]
    assert all(e["address"] == "cli" and e["actor"] is None for e in trail)


def test_bad_input_is_one_line_and_a_non_zero_exit(tmp_path: Path) -> None:
    cli = Env(tmp_path)
    for args, stdin, expected in (
            (("account", "add", "x", "--role", "operator"), "long-enough-password\n", "Username"),
            (("account", "add", "good.name", "--role", "operator"), "short\n", "at least"),
            (("account", "add", "good.name", "--role", "operator"), "\n", "no password"),
            (("account", "add", "good.name", "--role", "unit_admin"), "long-enough-password\n", "needs a unit"),
            (("account", "reset-password", "nobody"), "", "No account nobody")):
        res = _run(cli, *args, stdin=stdin)
        assert res.returncode == 1, (args, res.stdout)
        assert len(res.stderr.strip().splitlines()) == 1 and expected in res.stderr, (args, res.stderr)
    res = _run(cli, "account", "add", "good.name", "--role", "king", stdin="long-enough-password\n")
    assert res.returncode == 2  # argparse: not a role
