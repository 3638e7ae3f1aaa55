"""Fixtures of the conformance tests: one black-box hub per session and a client per unit."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from conformance_support import Hub, write_config
from spec_client import SpecClient


@pytest.fixture(scope="session")
def lgsp_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    """One hub for the whole conformance session, set up with the CLI and run as a subprocess."""
    directory = tmp_path_factory.mktemp("lgsp-conformance")
    hub = Hub(directory, write_config(directory))
    hub.set_up()
    hub.start()
    try:
        yield hub
    finally:
        hub.stop()


@pytest.fixture
def src(lgsp_hub: Hub) -> SpecClient:
    """The source unit's HMAC-SHA256 client."""
    return lgsp_hub.client("src")


@pytest.fixture
def dst1(lgsp_hub: Hub) -> SpecClient:
    """The first destination's HMAC-SHA256 client."""
    return lgsp_hub.client("dst1")


@pytest.fixture
def dst2(lgsp_hub: Hub) -> SpecClient:
    """The second destination's HMAC-SHA1 client."""
    return lgsp_hub.client("dst2")


@pytest.fixture
def outsider(lgsp_hub: Hub) -> SpecClient:
    """A third unit (RSA-SHA256 key), neither source nor destination of most test packets."""
    return lgsp_hub.client("outsider")
