"""pyproject.toml ships every package, and the data files the hub reads at run time."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_python_package_is_listed() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    listed = set(config["packages"])
    found = set()
    for name, folder in config["package-dir"].items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            found.add(".".join([name, *rel.parts]) if rel.parts else name)
    # Folders of data files the hub reads at run time (XSDs, WSDL) are listed too: setuptools ships a
    # folder only when it is a listed package, though these hold no Python.
    for folder in (ROOT / "schemas").iterdir():
        if folder.is_dir() and not (folder / "__init__.py").exists() and folder.name != "__pycache__":
            found.add(f"lgsp.schemas.{folder.name}")
    assert found - listed == set(), "add these to [tool.setuptools] packages"
    assert listed - found == set(), "listed packages that do not exist"


def test_runtime_data_files_are_declared() -> None:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]["package-data"]
    assert "*.yaml" in data["lgsp.schemas"]
    assert (resources.files("lgsp.schemas") / "openapi.yaml").is_file()
    assert (resources.files("lgsp.schemas") / "edxml" / "edoc.xsd").is_file()
    assert (resources.files("lgsp.schemas") / "soap" / "edxml.wsdl").is_file()
    migrations = resources.files("lgsp.core.store") / "migrations"
    assert (migrations / "env.py").is_file() and (migrations / "script.py.mako").is_file()
