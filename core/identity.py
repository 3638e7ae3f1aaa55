"""The hub's own signing key: how receivers know a push (or a proxied call) really comes from the hub.

The hub is a unit of its own directory (`hub.identifier`) with an application `lgsp-hub` holding
one RSA-SHA256 access key. Like any RSA key, only the public half is in the keys table; the
private half is sealed with the master key in the secret store (`hub.signing-key`). It is made
on first use, so a hub that never pushes never generates one.

Receivers verify a request the hub signed either with `POST /v1/verify` (like any signed request)
or locally with the public key from `GET /v1/hub` / `lgsp hub key`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass

from lgsp.core.directory import Directory
from lgsp.core.errors import Problem
from lgsp.core.secretstore import SecretStore
from lgsp.core.signing import Signer

log = logging.getLogger(__name__)

SECRET_NAME = "hub.signing-key"  # noqa: S105 (the name of a sealed secret, not a secret)
APPLICATION = "lgsp-hub"
ALGORITHM = "RSA-SHA256"


@dataclass(frozen=True)
class HubKey:
    unit: str
    access_key: str
    public_key_pem: str
    signer: Signer

    def public(self) -> dict[str, str]:
        return {"unit": self.unit, "access_key": self.access_key, "algorithm": ALGORITHM,
                "public_key_pem": self.public_key_pem}


class HubIdentity:
    def __init__(self, directory: Directory, secrets: SecretStore, identifier: str, name: str) -> None:
        self.directory = directory
        self.secrets = secrets
        self.identifier = identifier
        self.name = name
        self._key: HubKey | None = None
        self._lock = asyncio.Lock()

    async def key(self) -> HubKey:
        """The hub's key, created (unit, application, key pair) on first use."""
        if self._key is not None:
            return self._key
        async with self._lock:
            if self._key is None:
                self._key = await self._load_or_create()
        return self._key

    async def _load_or_create(self) -> HubKey:
        if await self.directory.get_unit(self.identifier) is None:
            try:
                await self.directory.add_unit(self.identifier, self.name, zone="hub", legacy=True)
            except Problem as exc:
                if exc.code != "conflict":  # another node made it meanwhile
                    raise
        stored = await self._stored()
        if stored is not None:
            return stored
        try:
            app = await self.directory.find_application(APPLICATION, self.identifier)
        except Problem:
            try:
                app = await self.directory.add_application(self.identifier, APPLICATION)
            except Problem:
                app = await self.directory.find_application(APPLICATION, self.identifier)
        issued = await self.directory.issue_key(app.id, ALGORITHM)
        assert issued.private_key_pem is not None
        # Create-if-absent: of nodes starting together, exactly one stores its key; the others
        # withdraw theirs and use the winner's (an overwrite here would leave two nodes signing
        # with two keys, each revoking the other's).
        sealed = json.dumps({"access_key": issued.access_key, "private_key_pem": issued.private_key_pem})
        won = await self.secrets.add(SECRET_NAME, sealed)
        if not won:
            if await self._stored() is not None:
                await self.directory.revoke_key(issued.access_key)
            else:  # the stored secret names a key that is gone or revoked: replace it
                await self.secrets.set(SECRET_NAME, sealed)
                won = True
        stored = await self._stored()
        if stored is None:
            raise RuntimeError("the hub's signing key could not be stored")
        if won:
            for key in await self.directory.list_keys(application_id=app.id):
                if key.id != stored.access_key and key.revoked_at is None:
                    await self.directory.revoke_key(key.id)  # an orphan of an interrupted first start
            log.info("created the hub's signing key %s", stored.access_key)
        return stored

    async def _stored(self) -> HubKey | None:
        try:
            raw = await self.secrets.reveal(SECRET_NAME)
        except Problem:
            return None
        data = json.loads(raw)
        material = await self.directory.key_material(data["access_key"])
        if material is None or material.revoked:
            return None
        alg = self.directory.algorithms[ALGORITHM]
        return HubKey(self.identifier, material.access_key, material.verification_key,
                      Signer(material.access_key, alg, data["private_key_pem"]))
