"""`lgsp doctor`: does this node see the same hub as the others?

Nodes of one cluster must share the database, the blob folder, the master key and so the hub's
signing key. Each check here is something an operator could get wrong when adding a node (a
blob folder that is a local directory instead of the shared mount, a master key file copied from
another installation, a database URL pointing at a replica). The store holds a cluster identifier
sealed with the master key, and the blob folder holds the same identifier in a file: a node that
can unseal it and finds it in its folder shares both with the node that wrote them.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy.engine import make_url

from lgsp.core.errors import Problem
from lgsp.core.i18n import N_, Text, os_reason
from lgsp.core.masterkey import MasterKeyError

if TYPE_CHECKING:
    from lgsp.core.hub import Hub

CLUSTER_SECRET = "hub.cluster-id"  # noqa: S105 (the name of a sealed secret, not a secret)
MARKER = "cluster-id"


@dataclass(frozen=True)
class Check:
    """One line of `lgsp doctor`: `name` a msgid (`N_`), `detail` a `Text` (the CLI renders both)."""

    name: str
    ok: bool
    detail: str


async def _cluster_id(hub: Hub) -> str:
    await hub.secrets.add(CLUSTER_SECRET, secrets.token_hex(16))  # the first node to look makes it
    return await hub.secrets.reveal(CLUSTER_SECRET)


def _blob_marker(hub: Hub, cluster_id: str) -> Check:
    folder = hub.config.blob_path
    marker = folder / MARKER
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".doctor-{secrets.token_hex(4)}"
        probe.write_bytes(b"")
        probe.unlink()
        with contextlib.suppress(FileExistsError):
            fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            with os.fdopen(fd, "w", encoding="ascii") as fh:
                fh.write(cluster_id + "\n")
        found = marker.read_text(encoding="ascii").strip()
    except OSError as exc:
        return Check(N_("blobs"), False, Text("{folder}: {reason}", folder=folder, reason=os_reason(exc)))
    if not secrets.compare_digest(found, cluster_id):
        return Check(N_("blobs"), False, Text("{folder} belongs to another hub's store (its {marker} differs): mount "
                                              "the folder the other nodes share", folder=folder, marker=MARKER))
    return Check(N_("blobs"), True, Text("{folder} (shared with the store's other nodes, writable)", folder=folder))


async def node_checks(hub: Hub) -> list[Check]:
    """Checks for a hub whose store is open (`Hub.open_store`); every failure says what to fix."""
    from lgsp.core.backup import master_key_fingerprint

    checks: list[Check] = []
    url = make_url(hub.config.database_url)
    shown = url.render_as_string(hide_password=True)
    current, head = await hub.db.current_revision(), hub.db.head_revision()
    if current == head:
        checks.append(Check(N_("database"), True, Text("{url}, schema {revision}", url=shown, revision=current)))
    else:
        checks.append(Check(N_("database"), False, Text("{url}, schema {revision} (expected {head})", url=shown,
                                                        revision=current, head=head)))
    try:
        cluster_id = await _cluster_id(hub)
    except MasterKeyError:
        checks.append(Check(N_("master key"), False, Text("{path} cannot open what the store holds: copy the master "
                                                          "key of the other nodes", path=hub.config.master_key_path)))
        return checks
    checks.append(Check(N_("master key"), True, Text("{path}, fingerprint {fingerprint}",
                                                     path=hub.config.master_key_path,
                                                     fingerprint=master_key_fingerprint(hub.master_key))))
    checks.append(_blob_marker(hub, cluster_id))
    try:
        key = await hub.identity.key()
        checks.append(Check(N_("signing key"), True, Text("{key} (unit {unit})", key=key.access_key, unit=key.unit)))
    except Problem as exc:
        checks.append(Check(N_("signing key"), False, exc.detail or exc.code))
    except (MasterKeyError, RuntimeError) as exc:
        checks.append(Check(N_("signing key"), False, exc.args[0] if len(exc.args) == 1 else str(exc)))
    checks.append(Check(N_("cluster"), True, Text("identifier {id}…", id=cluster_id[:12])))
    return checks
