"""`lgsp report`: a unit's statistics from the CLI, as a table, JSON and .xlsx; bad input in one line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import openpyxl

from tests.cli_support import CliResult, run_cli
from tests.test_cli import Env


def _run(cli: Env, *args: str) -> CliResult:
    return run_cli(*args, "-c", str(cli.config), env=cli.env, cwd=cli.tmp, lang="vi")


def test_report_of_a_unit(tmp_path: Path) -> None:
    cli = Env(tmp_path)
    assert _run(cli, "unit", "add", "000.00.00.H23", "Sở A").returncode == 0
    res = _run(cli, "report", "--unit", "000.00.00.H23", "--period", "year", "--json")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["sent"] == {"packets": 0, "bytes": 0} and data["unit"] == "000.00.00.H23"
    res = _run(cli, "report", "--unit", "000.00.00.H23", "-o", str(tmp_path / "r.xlsx"))
    assert res.returncode == 0, res.stderr
    rows = list(openpyxl.load_workbook(tmp_path / "r.xlsx").active.iter_rows(values_only=True))
    assert ("Tổng hợp", "Gói tin gửi", 0) in rows
    for args in (("--unit", "000.00.99.H23"), ("--unit", "000.00.00.H23", "--day", "2026-13-01"),
                 # past the calendar's ends a period overflowed (a traceback), or not YYYY-MM-DD at all
                 ("--unit", "000.00.00.H23", "--day", "9999-12-31"),
                 ("--unit", "000.00.00.H23", "--day", "0001-01-01", "--period", "day"),
                 ("--unit", "000.00.00.H23", "--day", "2026-W49-1")):
        res = _run(cli, "report", *args)
        assert res.returncode == 1 and len(res.stderr.strip().splitlines()) == 1, res.stderr


def test_report_exports_and_table_in_english_with_lgsp_lang_en(tmp_path: Path) -> None:
    """LGSP_LANG=en: the table, the .xlsx and the .csv name their sections and rows in English."""
    cli = Env(tmp_path)

    def run_en(*args: str) -> CliResult:
        return run_cli(*args, "-c", str(cli.config), env=cli.env, cwd=cli.tmp, lang="en")

    assert run_en("unit", "add", "000.00.00.H23", "Sở A").returncode == 0
    res = run_en("report", "--unit", "000.00.00.H23", "--period", "year")
    assert res.returncode == 0, res.stderr
    assert "Packets sent" in res.stdout and "Summary" in res.stdout and "Gói tin" not in res.stdout
    res = run_en("report", "--unit", "000.00.00.H23", "-o", str(tmp_path / "r.xlsx"))
    assert res.returncode == 0, res.stderr
    sheet = openpyxl.load_workbook(tmp_path / "r.xlsx").active
    rows = list(sheet.iter_rows(values_only=True))
    assert sheet.title == "Report" and ("Section", "Item", "Value") in rows and ("Summary", "Packets sent", 0) in rows
    assert not any(isinstance(v, str) and "Tổng hợp" in v for row in rows for v in row)
    res = run_en("report", "--unit", "000.00.00.H23", "-o", str(tmp_path / "r.csv"))
    assert res.returncode == 0, res.stderr
    lines = (tmp_path / "r.csv").read_text(encoding="utf-8-sig").splitlines()
    assert lines[0] == "Section,Item,Value" and "Summary,Packets sent,0" in lines
    # The default stays Vietnamese.
    res = _run(cli, "report", "--unit", "000.00.00.H23", "-o", str(tmp_path / "vi.csv"))
    assert (tmp_path / "vi.csv").read_text(encoding="utf-8-sig").splitlines()[0] == "Mục,Chỉ tiêu,Giá trị"


async def test_a_unit_reads_its_own_stats_over_the_signed_api(make_actor: Any) -> None:
    source = await make_actor("000.00.00.H23")
    await make_actor("000.00.01.H23")
    await source.client.send(b"12345", ["000.00.01.H23"], subject="Báo cáo")
    status, _, body = await source.raw("GET", "/v1/stats?period=year")
    assert status == 200, body
    assert body["unit"] == "000.00.00.H23" and body["sent"] == {"packets": 1, "bytes": 5}
    assert body["by_partner"] == {"000.00.01.H23": {"sent": 1}}
    status, headers, body = await source.raw("GET", "/v1/stats?period=week")
    assert status == 422 and body["code"] == "request.invalid" and "problem+json" in headers["Content-Type"]
    status, _, body = await source.raw("GET", "/v1/stats", sign=False)
    assert status == 401
