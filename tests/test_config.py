"""Configuration: the shipped file matches the schema; every mistake names its key path and line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lgsp.core.config import Config, ConfigError, leaf_paths, load_config
from lgsp.core.hub import Hub

from . import cli_support
from .cli_support import CliResult

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "config" / "lgsp.yaml"


@pytest.fixture(autouse=True)
def _english(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests pin the messages' English wording; tests/test_i18n.py checks the Vietnamese default."""
    monkeypatch.setenv("LGSP_LANG", "en")


def test_shipped_file_is_valid_and_equals_the_defaults() -> None:
    cfg = load_config(SHIPPED, env={})
    defaults = Config()
    def get(obj: object, path: str) -> object:
        for part in path.split("."):
            obj = getattr(obj, part)
        return obj

    for path in leaf_paths():
        value, default = get(cfg, path), get(defaults, path)
        assert value == default, f"{path}: file says {value!r}, schema default is {default!r}"


def test_shipped_file_lists_and_comments_every_setting() -> None:
    lines = SHIPPED.read_text(encoding="utf-8").splitlines()
    cfg = load_config(SHIPPED, env={})
    for path in leaf_paths():
        where = cfg.where(path)
        assert where.startswith(str(SHIPPED)), f"{path} is missing from config/lgsp.yaml"
        lineno = int(where.rsplit(":", 1)[1])
        parent = cfg.where(path.rpartition(".")[0]) if "." in path else where
        parent_line = int(parent.rsplit(":", 1)[1]) if parent.startswith(str(SHIPPED)) else lineno
        # A comment above the key, or above its parent when the parent is one row of a table of
        # like records (delivery.priorities.normal.max_attempts is explained at `normal:`).
        documented = lines[lineno - 2].strip().startswith("#") or (
            path.count(".") >= 3 and lines[parent_line - 2].strip().startswith("#"))
        assert documented, f"{path} (line {lineno}) has no comment above it"


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "cfg.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def issues_of(path: Path, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as err:
        load_config(path, env=env or {})
    return [str(i) for i in err.value.issues]


def test_unknown_key_names_path_and_line(tmp_path: Path) -> None:
    p = write(tmp_path, "server:\n  host: 127.0.0.1\n  prot: 80\n")
    assert issues_of(p) == [f"{p}:3: server.prot: unknown key (did you mean 'port'?)"]


def test_unknown_section(tmp_path: Path) -> None:
    p = write(tmp_path, "hub: {}\nserverr:\n  port: 1\n")
    (issue,) = issues_of(p)
    assert issue.startswith(f"{p}:2: serverr: unknown key")


def test_wrong_types_and_bad_values_all_reported(tmp_path: Path) -> None:
    p = write(tmp_path, """
server:
  port: "eighty"
security:
  clock_skew_seconds: -5
  rsa_key_bits: 1024
limits:
  max_packet_size: 2 lightyears
database:
  sqlite_synchronous: sometimes
  url: mysql://x
logging:
  access_log: "yes"
""")
    found = issues_of(p)
    expected = {
        "server.port": (3, "must be an integer"),
        "security.clock_skew_seconds": (5, "must be greater than 0"),
        "security.rsa_key_bits": (6, "must be 2048, 3072 or 4096"),
        "limits.max_packet_size": (8, "must be a size"),
        "database.sqlite_synchronous": (10, "must be one of"),
        "database.url": (11, "must start with"),
        "logging.access_log": (13, "must be true or false"),
    }
    assert len(found) == len(expected), found
    for key, (line, text) in expected.items():
        assert any(f.startswith(f"{p}:{line}: {key}: ") and text in f for f in found), (key, found)


def test_sizes_and_env_overrides(tmp_path: Path) -> None:
    p = write(tmp_path, "limits:\n  max_packet_size: 512MiB\n  max_json_body: 64KiB\nserver:\n  port: 9000\n")
    cfg = load_config(p, env={"LGSP_SERVER_PORT": "9100", "LGSP_DATABASE_URL": "postgresql+asyncpg://u@h/db",
                              "LGSP_PLUGINS_ENABLED": "[rest]", "LGSP_URL": "ignored (a client setting)"})
    assert cfg.limits.max_packet_size == 512 << 20
    assert cfg.limits.max_json_body == 64 << 10
    assert cfg.server.port == 9100
    assert cfg.database_url == "postgresql+asyncpg://u@h/db"
    assert cfg.where("server.port") == "environment variable LGSP_SERVER_PORT"
    assert cfg.where("limits.max_packet_size") == f"{p}:2"


def test_bad_env_override_names_the_variable(tmp_path: Path) -> None:
    found = issues_of(write(tmp_path, "{}\n"), env={"LGSP_SERVER_PORT": "many", "LGSP_SERVER_PROT": "1"})
    assert "environment variable LGSP_SERVER_PORT: server.port: must be an integer, got 'many'" in found
    assert "environment: LGSP_SERVER_PROT: no such setting" in found


def test_yaml_syntax_error_and_duplicate_keys(tmp_path: Path) -> None:
    (issue,) = issues_of(write(tmp_path, "server:\n  port: [1\n"))
    assert re.match(rf"{re.escape(str(tmp_path))}/cfg.yaml:\d+: \(top level\): not valid YAML", issue)
    (dup,) = issues_of(write(tmp_path, "server:\n  port: 1\n  port: 2\n"))
    assert dup.endswith("server.port: duplicate key") and ":3:" in dup


def test_env_names_do_not_collide() -> None:
    from lgsp.core.config import env_name

    names = [env_name(p) for p in leaf_paths()]
    assert len(names) == len(set(names))


def test_unknown_plugin_and_push_protocol_are_config_errors(tmp_path: Path) -> None:
    p = write(tmp_path, "plugins:\n  enabled: [rest, nosuch]\n")
    with pytest.raises(ConfigError) as err:
        Hub(load_config(p, env={}))
    (issue,) = err.value.issues
    assert str(issue).startswith(f"{p}:2: plugins.enabled: no plugin named 'nosuch'")
    p = write(tmp_path, "delivery:\n  targets:\n    000.00.01.H23:\n      protocol: carrier-pigeon\n")
    with pytest.raises(ConfigError) as err:
        Hub(load_config(p, env={})).check_config()
    assert "no push adapter for protocol 'carrier-pigeon'" in str(err.value)
    assert f"{p}:4" in str(err.value)


def test_hub_identity_and_data_dir_are_checked(tmp_path: Path) -> None:
    found = issues_of(write(tmp_path, 'hub:\n  identifier: "not an id!"\n  name: ""\n  data_dir: ""\n'))
    assert len(found) == 3, found
    assert found[0].startswith(f"{tmp_path}/cfg.yaml:2: hub.identifier: 'not an id!' follows neither")
    assert found[1].startswith(f"{tmp_path}/cfg.yaml:3: hub.name: must not be empty")
    assert found[2].startswith(f"{tmp_path}/cfg.yaml:4: hub.data_dir: must not be empty")


def test_text_settings_from_the_environment_stay_text(tmp_path: Path) -> None:
    for raw in ("2024", "true", "~", "null", "[a, b]"):
        cfg = load_config(write(tmp_path, "{}\n"), env={"LGSP_HUB_NAME": raw})
        assert cfg.hub.name == raw


def test_adapter_sections_and_target_units_must_mean_something(tmp_path: Path) -> None:
    p = write(tmp_path, "adapters:\n  nosuch:\n    x: 1\n  sftp:\n    poll_interval_seconds: 5\n"
                        "delivery:\n  targets:\n    bad unit:\n      protocol: rest\n      url: http://x\n")
    with pytest.raises(ConfigError) as err:
        Hub(load_config(p, env={})).check_config()
    found = [str(i) for i in err.value.issues]
    assert any(i.startswith(f"{p}:2: adapters.nosuch: no loaded plugin named 'nosuch'") for i in found), found
    # sftp exists but is not enabled: its settings would be silently ignored
    assert any(i.startswith(f"{p}:4: adapters.sftp: no loaded plugin named 'sftp'") for i in found), found
    assert any(i.startswith(f"{p}:8: delivery.targets.bad unit: 'bad unit': even a legacy") for i in found), found
    assert len(found) == 3, found


def run_cli(*args: str) -> CliResult:
    """In-process, in the default language (Vietnamese): the caller's LGSP_* settings do not leak in."""
    return cli_support.run_cli(*args, lang="vi")


def test_cli_config_check(tmp_path: Path) -> None:
    ok = run_cli("config", "check", str(SHIPPED))
    assert ok.returncode == 0, ok.stderr
    bad = write(tmp_path, "server:\n  port: 99999\n")
    res = run_cli("config", "check", str(bad))
    assert res.returncode == 1
    assert res.stderr.strip().splitlines() == [
        f"lỗi: {bad}:2: server.port: phải là cổng TCP từ 0 đến 65535 (nhận được 99999)"]
    missing = run_cli("config", "check", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 1 and "không đọc được" in missing.stderr


def test_date_like_values_are_read_by_the_schema_not_by_yaml(tmp_path: Path) -> None:
    # PyYAML would make 2024-01-01 a date (refused as a name) and stop the whole load on 2030-02-30
    # with a bare ValueError and no line.
    cfg = load_config(write(tmp_path, "hub:\n  name: 2030-02-30\n"), env={})
    assert cfg.hub.name == "2030-02-30"
    p = write(tmp_path, "hub:\n  name: 2024-01-01\nregistration:\n  decision:\n    issued_on: 2030-02-30\n")
    assert issues_of(p) == [f"{p}:5: registration.decision.issued_on: 2030-02-30 is not a day of the calendar"]
