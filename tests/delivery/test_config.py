"""Delivery settings: every key documented in config/lgsp.yaml, bad values reported with key and line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lgsp.core.config import ConfigError, leaf_paths, load_config
from lgsp.core.hub import Hub

from ..cli_support import run_cli


@pytest.fixture(autouse=True)
def _english(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests pin the config messages' English wording (tests/test_i18n.py: Vietnamese by default)."""
    monkeypatch.setenv("LGSP_LANG", "en")

ROOT = Path(__file__).resolve().parents[2]


def _flat(data: dict, prefix: str = "") -> set[str]:
    out: set[str] = set()
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else key
        out |= _flat(value, path) if isinstance(value, dict) and value else {path}
    return out


def test_shipped_yaml_lists_every_delivery_and_presence_setting_with_its_default() -> None:
    shipped = yaml.safe_load((ROOT / "config" / "lgsp.yaml").read_text(encoding="utf-8"))
    ours = {p for p in leaf_paths() if p.startswith(("delivery.", "presence."))}
    assert ours <= _flat(shipped)
    assert load_config(ROOT / "config" / "lgsp.yaml", env={}).delivery == load_config(None, env={}).delivery


def test_bad_delivery_values_name_key_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("""delivery:
  retry:
    jitter: 1.5
    factor: 0.5
  priorities:
    flash:
      max_attempts: 0
  scheduler:
    jobstore_url: postgresql+asyncpg://x/y
""", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    text = str(err.value)
    assert f"{path}:3: delivery.retry.jitter: must be between 0 and 1" in text
    assert f"{path}:4: delivery.retry.factor" in text
    assert f"{path}:7: delivery.priorities.flash.max_attempts" in text
    assert f"{path}:9: delivery.scheduler.jobstore_url" in text


def test_bad_push_targets_are_refused_at_start_and_by_config_check(tmp_path: Path) -> None:
    path = tmp_path / "targets.yaml"
    path.write_text(f"""hub:
  data_dir: {tmp_path / "hub"}
delivery:
  targets:
    "000.00.01.H23":
      protocol: rest
      url: ftp://nowhere
      concurrency: 0
      colour: red
    "000.00.02.H23":
      protocol: carrier-pigeon
""", encoding="utf-8")
    cfg = load_config(path, env={})
    with pytest.raises(ConfigError) as err:
        Hub(cfg).check_config()
    text = str(err.value)
    assert f"{path}:7: delivery.targets.000.00.01.H23.url: required" in text
    assert f"{path}:8: delivery.targets.000.00.01.H23.concurrency" in text
    assert f"{path}:9: delivery.targets.000.00.01.H23.colour: unknown key" in text
    assert f"{path}:11: delivery.targets.000.00.02.H23.protocol: no push adapter for protocol 'carrier-pigeon'" in text

    res = run_cli("config", "check", str(path))
    assert res.returncode == 1
    assert "delivery.targets.000.00.01.H23.url" in res.stderr


def test_push_targets_take_the_codes_of_other_systems_but_not_malformed_ones(tmp_path: Path) -> None:
    """`delivery.targets` keys follow the legacy identifier rule: `vxp.saas.02` is a unit, `vxp saas` is not."""
    path = tmp_path / "targets.yaml"
    path.write_text(f"""hub:
  data_dir: {tmp_path / "hub"}
delivery:
  targets:
    "vxp.saas.02":
      protocol: rest
      url: https://vxp.example/lgsp
    "vxp saas/03":
      protocol: rest
      url: https://vxp.example/lgsp
""", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        Hub(load_config(path, env={})).check_config()
    assert [(i.path, i.where) for i in err.value.issues] == [("delivery.targets.vxp saas/03", f"{path}:8")]


def unregistered_target_config(tmp_path: Path, unit: str = "000.00.07.H23") -> Path:
    path = tmp_path / "targets.yaml"
    path.write_text(f"""hub:
  data_dir: {tmp_path / "hub"}
server:
  port: 0
presence:
  sweep_interval_seconds: 0.2
delivery:
  probe_interval_seconds: 0.2
  targets:
    "{unit}":
      protocol: rest
      url: http://127.0.0.1:9/nowhere
logging:
  access_log: false
""", encoding="utf-8")
    return path


def test_config_check_refuses_a_target_naming_an_unregistered_unit(tmp_path: Path) -> None:
    path = unregistered_target_config(tmp_path)
    res = run_cli("config", "check", str(path))
    assert res.returncode == 1
    assert res.stderr.strip() == (
        f"error: {path}:10: delivery.targets.000.00.07.H23: unit 000.00.07.H23 is not registered, so nothing can "
        "be pushed to it: add it first (lgsp unit add 000.00.07.H23 NAME) or remove the target")
    assert not (tmp_path / "hub").exists()  # checking created no store
    assert run_cli("unit", "add", "000.00.07.H23", "Sở G", "-c", str(path)).returncode == 0
    ok = run_cli("config", "check", str(path))
    assert ok.returncode == 0 and "configuration is valid" in ok.stdout


async def test_start_up_warns_once_and_presence_never_fails_for_an_unregistered_target(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from ..conftest import wait_for

    caplog.set_level(logging.INFO)
    unit = "000.00.07.H23"
    async with Hub(load_config(unregistered_target_config(tmp_path, unit), env={})) as hub:
        await wait_for(lambda: unit in hub.presence._units, what="the target probed")
        for _ in range(3):  # flushes that would each have failed on the unknown unit
            await hub.presence.flush()
        await hub.housekeeping_round()
    warnings = [r.getMessage() for r in caplog.records if f"delivery.targets.{unit}" in r.getMessage()]
    assert len(warnings) == 1 and "is not registered" in warnings[0]
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info] == []
