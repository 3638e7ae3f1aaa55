"""Hook `lgsp_signature_algorithms`: a plugin adds an algorithm the hub then verifies requests with."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from typing import Any

import pytest

from lgsp.core.hub import Hub
from lgsp.core.signing import Signer
from lgsp.plugins.hookspecs import hookimpl
from lgsp.plugins.manager import PluginError, create_plugin_manager, signature_algorithms

from ..conftest import raw_request
from .support import SRC, config


class HmacSha512:
    name = "HMAC-SHA512"
    shared_secret = True

    def new_secret(self) -> str:
        return "k" * 48

    def sign(self, signing_key: str | bytes, message: bytes) -> bytes:
        key = signing_key.encode() if isinstance(signing_key, str) else signing_key
        return hmac.new(key, message, hashlib.sha512).digest()

    def verify(self, verification_key: str | bytes, message: bytes, signature: bytes) -> bool:
        return hmac.compare_digest(self.sign(verification_key, message), signature)


class Sha512Plugin:
    @hookimpl
    def lgsp_signature_algorithms(self) -> list[Any]:
        return [HmacSha512()]


async def test_an_algorithm_from_a_plugin_signs_requests_the_hub_accepts(tmp_path: Path) -> None:
    async with Hub(config(tmp_path), extra_plugins=(Sha512Plugin(),)) as hub:
        assert "HMAC-SHA512" in hub.algorithms
        await hub.directory.add_unit(SRC, "A")
        app = await hub.directory.add_application(SRC, "x")
        key = await hub.directory.issue_key(app.id, "HMAC-SHA512")
        good = Signer(key.access_key, HmacSha512(), key.secret or "")
        status, _, body = await raw_request(hub.url, "GET", "/v1/inbox", signer=good)
        assert status == 200 and body == {"items": [], "next": None}
        forged = Signer(key.access_key, HmacSha512(), "not-the-secret" * 3)
        status, _, body = await raw_request(hub.url, "GET", "/v1/inbox", signer=forged)
        assert status == 401 and body["code"].startswith("auth.")


async def test_without_the_plugin_the_algorithm_is_unknown(tmp_path: Path) -> None:
    async with Hub(config(tmp_path)) as hub:
        assert "HMAC-SHA512" not in hub.algorithms


def test_two_plugins_with_one_name_are_refused() -> None:
    class Again(Sha512Plugin):
        pass

    with pytest.raises(PluginError, match="HMAC-SHA512"):
        signature_algorithms(create_plugin_manager(["rest"], extra=[Sha512Plugin(), Again()]))
