"""Fixtures of the delivery tests (helpers live in helpers.py, imported relatively)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lgsp.core.config import Config

from .helpers import base_config


@pytest.fixture
def cfg(tmp_path: Path) -> Config:
    return base_config(tmp_path)
