"""Fixtures for the edXML library tests (helpers live in edxml_support.py).

Fixture packets live in ``fixtures/`` (written for this project, modelled on the public
samples). The public samples themselves are read from the shared reference folder when it
exists; tests that need them skip with a reason otherwise.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from edxml_support import REFERENCE_SAMPLES, RecordingSink, RssProbe


@pytest.fixture
def reference_samples() -> Path:
    if not REFERENCE_SAMPLES.is_dir():
        pytest.skip(f"public reference samples not available at {REFERENCE_SAMPLES}")
    return REFERENCE_SAMPLES


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


@pytest.fixture
def rss_probe() -> RssProbe:
    return RssProbe()
