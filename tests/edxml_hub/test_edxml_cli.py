"""`lgsp format`: operators set the format a unit takes; mistakes are one line and a non-zero exit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lgsp.cli.main import main

from .support import B, C


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "lgsp.yaml"
    path.write_text(f"hub: {{data_dir: {tmp_path / 'var'}}}\nplugins: {{enabled: [rest, edxml]}}\n"
                    "blobs: {fsync: false}\n", encoding="utf-8")
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_format_set_list_and_reset(config: Path, capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LGSP_LANG", "en")
    assert run(capsys, "unit", "add", B, "Sở TT&TT", "-c", str(config))[0] == 0
    assert run(capsys, "unit", "add", C, "UBND xã Hòa Sơn", "--legacy", "-c", str(config))[0] == 0
    assert run(capsys, "format", "list", "-c", str(config))[1].strip() == "no unit has a format of its own"
    code, out, _ = run(capsys, "format", "set", C, "json", "-c", str(config))
    assert code == 0 and out.strip() == f"unit {C} takes edxml packets as json"
    code, out, _ = run(capsys, "format", "list", "--json", "-c", str(config))
    listed = json.loads(out)
    assert listed["formats"] == {"edxml": ["edxml", "json"]}
    assert [(u["unit"], u["format"]) for u in listed["units"]] == [(C, "json")]
    code, out, _ = run(capsys, "format", "set", C, "default", "-c", str(config))
    assert code == 0 and "default format (edxml)" in out
    assert json.loads(run(capsys, "format", "list", "--json", "-c", str(config))[1])["units"] == []


def test_format_mistakes(config: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                         tmp_path: Path) -> None:
    monkeypatch.setenv("LGSP_LANG", "en")
    run(capsys, "unit", "add", B, "Sở TT&TT", "-c", str(config))
    code, _, err = run(capsys, "format", "set", B, "pdf", "-c", str(config))
    assert code == 1 and err.strip() == "error: request.invalid: format must be one of edxml, json"
    code, _, err = run(capsys, "format", "set", "000.00.00.H99", "json", "-c", str(config))
    assert code == 1 and err.strip() == "error: not_found: unit 000.00.00.H99 does not exist"
    plain = tmp_path / "plain.yaml"  # the edxml plugin is not enabled: no formats exist
    plain.write_text(f"hub: {{data_dir: {tmp_path / 'var'}}}\nplugins: {{enabled: [rest]}}\n", encoding="utf-8")
    code, _, err = run(capsys, "format", "set", B, "json", "-c", str(plain))
    assert code == 1 and "no plugin handles the 'edxml' data types" in err
