"""The SFTP adapter: push packets to units' SFTP servers.

Enable it with `plugins.enabled: [rest, sftp]`. Push targets are `delivery.targets.<unit>` entries
with `protocol: sftp`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from lgsp.adapters.sftp.push import SftpPushAdapter
from lgsp.adapters.sftp.settings import parse_adapter_section
from lgsp.plugins.hookspecs import hookimpl

if TYPE_CHECKING:
    from lgsp.core.hub import Hub
    from lgsp.core.push import PushAdapter


@hookimpl
def lgsp_push_adapters(hub: Hub) -> Iterable[PushAdapter]:
    return [SftpPushAdapter(hub)]


@hookimpl
def lgsp_check_config(hub: Hub) -> Iterable[tuple[str, str]]:
    return parse_adapter_section(hub.config.adapters.get("sftp"))[1]
