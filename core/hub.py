"""The hub: wires configuration, store, auth, exchange, plugins and the HTTP server together.

`Hub.start()` brings everything up in dependency order: config checks; master key, store +
migrations, blob store and services (`open_store`); clean-up of what a crash left (temporary files,
blobs no packet needs, stale presence); the HTTP server; the background loops (housekeeping,
presence, audit chain); plugin start-up hooks (`lgsp_startup`); cross-node events; the delivery
engine last, so no push starts before every plugin is up. `Hub.stop()` takes it down in reverse.
Tests, the CLI and embedders all use this one entry point.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import secrets
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import pluggy
from aiohttp import web

from lgsp.core import audit, logs, statistics
from lgsp.core.audit import AuditChain
from lgsp.core.auth import Authenticator
from lgsp.core.clock import Clock, SystemClock
from lgsp.core.clockoffsets import OffsetPruner, OffsetSampler
from lgsp.core.cluster import ClusterEvents, Leadership, Nodes, node_name
from lgsp.core.config import Config, ConfigError, ConfigIssue
from lgsp.core.connections import ConnectionGuard
from lgsp.core.content import ContentService
from lgsp.core.content import collect as collect_content_plugins
from lgsp.core.contentkeys import ContentKeys
from lgsp.core.directory import Directory
from lgsp.core.documents import DocumentIndex
from lgsp.core.engine import DeliveryEngine
from lgsp.core.errors import register_code
from lgsp.core.events import EventBus
from lgsp.core.exchange import Exchange, TransferTokens
from lgsp.core.health import Health
from lgsp.core.i18n import Text
from lgsp.core.identifiers import InvalidIdentifier, check_identifier
from lgsp.core.identity import HubIdentity
from lgsp.core.masterkey import Kek, MasterKey
from lgsp.core.metrics import Metrics
from lgsp.core.notices import NoticeBoard
from lgsp.core.offline import OfflineReporter
from lgsp.core.policy import Policy
from lgsp.core.presence import Presence
from lgsp.core.push import PushAdapter, adapter_settings, engine_target_problems
from lgsp.core.routing import ROUTE_KEYS, Router, route_problems
from lgsp.core.secretstore import SecretStore
from lgsp.core.services import ServiceRegistry
from lgsp.core.store.blobs import BlobStore
from lgsp.core.store.database import Database
from lgsp.core.store.inline_blobs import InlineBlobs
from lgsp.core.tickets import StreamTickets
from lgsp.core.tls import TlsError, load_certificate, server_context
from lgsp.plugins.manager import PluginError, create_plugin_manager, problem_codes, signature_algorithms

TRANSFER_KEY_SECRET = "hub.transfer-key"  # noqa: S105 (the name of a sealed secret)

log = logging.getLogger("lgsp.hub")


def plugin_manager_for(config: Config, extra: tuple[Any, ...] = ()) -> pluggy.PluginManager:
    """The plugin manager a config asks for; a bad plugin name is reported at its YAML line."""
    try:
        return create_plugin_manager(config.plugins.enabled, extra=extra)
    except PluginError as exc:
        raise ConfigError([ConfigIssue("plugins.enabled", config.where("plugins.enabled"), str(exc))]) from exc


class Hub:
    def __init__(self, config: Config, pm: pluggy.PluginManager | None = None, *,
                 extra_plugins: tuple[Any, ...] = (), clock: Clock | None = None, node: str | None = None) -> None:
        self.config = config
        # One "now" for every time rule (core/clock.py); tests pass a ManualClock and advance it.
        self.clock: Clock = clock or SystemClock()
        self.pm = pm or plugin_manager_for(config, extra_plugins)
        self._register_problem_codes()
        self.db: Database
        self.blobs: BlobStore
        self.master_key: MasterKey
        self.directory: Directory
        self.presence: Presence
        self.auth: Authenticator
        self.policy: Policy
        self.tls_context: ssl.SSLContext | None = None
        self.audit: AuditChain
        self.tickets: StreamTickets
        self.bus = EventBus()
        self.exchange: Exchange
        self.content: ContentService
        self.documents: DocumentIndex
        self.algorithms: dict[str, Any] = {}
        self.app: web.Application | None = None
        self._runner: web.AppRunner | None = None
        self._server: asyncio.AbstractServer | None = None
        self._tasks: list[asyncio.Task[None]] = []
        #: Nodes the leader has seen dead (their leftover files reconciled once: `_files_dead_nodes_left`).
        self._dead_nodes_seen: set[str] = set()
        self._stopping = asyncio.Event()
        self.port: int | None = None
        #: A worker process shares its port with the other workers (SO_REUSEPORT, core/workers.py).
        self.reuse_port = False
        self.started = False
        self.secrets: SecretStore
        self.identity: HubIdentity
        self.services: ServiceRegistry
        self.push_adapters = self._collect_push_adapters()
        self.engine = DeliveryEngine(self)
        self.router = Router(self)
        self.offline: OfflineReporter
        self.notices: NoticeBoard
        #: This process among the nodes sharing the store (new at every start unless given).
        self.node = node or node_name()
        self.nodes: Nodes
        self.cluster: ClusterEvents | None = None
        self.leadership: Leadership
        self.health = Health(self)
        self.metrics = Metrics(self)
        self.bus.observers.append(self.metrics.observe_events)

    def _register_problem_codes(self) -> None:
        """Plugins' own problem codes join the catalogue before anything can raise them."""
        for code, (status, title, title_vi) in problem_codes(self.pm).items():
            try:
                register_code(code, status, title, title_vi)
            except ValueError as exc:  # another hub in this process defined it differently
                raise PluginError(str(exc)) from exc

    def _collect_push_adapters(self) -> dict[str, PushAdapter]:
        adapters: dict[str, PushAdapter] = {}
        for batch in self.pm.hook.lgsp_push_adapters(hub=self):
            for adapter in batch or ():
                if adapter.protocol in adapters:
                    raise PluginError(Text("two plugins provide the push protocol {protocol!r}",
                                           protocol=adapter.protocol))
                adapters[adapter.protocol] = adapter
        return adapters

    def check_config(self) -> None:
        """Settings only plugins can judge: push targets and adapter sections (raises ConfigError)."""
        cfg = self.config
        issues: list[ConfigIssue] = []
        for unit, target in cfg.delivery.targets.items():
            base = f"delivery.targets.{unit}"
            try:
                check_identifier(unit, legacy=True)
            except InvalidIdentifier as exc:
                issues.append(ConfigIssue(base, self._nearest_origin(base), exc.reason))
                continue
            protocol = target.get("protocol")
            adapter = self.push_adapters.get(protocol) if isinstance(protocol, str) else None
            if adapter is None:
                known = ", ".join(sorted(self.push_adapters)) or "-"
                issues.append(ConfigIssue(f"{base}.protocol", self._nearest_origin(f"{base}.protocol"),
                                          Text("no push adapter for protocol {protocol!r} ({known})",
                                               protocol=protocol, known=known)))
                continue
            problems = [*engine_target_problems(target), *adapter.validate_target(unit, adapter_settings(target))]
            for key, message in problems:
                path = f"{base}.{key}" if key else base
                issues.append(ConfigIssue(path, self._nearest_origin(path), message))
        for path, message in route_problems(cfg.routes, self.push_adapters):
            issues.append(ConfigIssue(path, self._nearest_origin(path), message))
        for zone, entry in cfg.routes.items():
            adapter = self.push_adapters.get(entry.get("adapter", "")) if isinstance(entry, dict) else None
            if adapter is not None:
                settings = {k: v for k, v in entry.items() if k not in ROUTE_KEYS} | {"protocol": entry["adapter"]}
                for key, message in adapter.validate_target(f"zone:{zone}", settings):
                    path = f"routes.{zone}.{key}" if key else f"routes.{zone}"
                    issues.append(ConfigIssue(path, self._nearest_origin(path), message))
        loaded = {name for name, _ in self.pm.list_name_plugin()}
        for name in cfg.adapters:
            if name not in loaded:  # a typo, or a plugin not in plugins.enabled: its settings would be ignored
                issues.append(ConfigIssue(f"adapters.{name}", self._nearest_origin(f"adapters.{name}"),
                                          Text("no loaded plugin named {name!r}; enable it in plugins.enabled "
                                               "(loaded: {loaded})", name=name, loaded=", ".join(sorted(loaded)))))
        for batch in self.pm.hook.lgsp_check_config(hub=self):
            for path, message in batch or ():
                issues.append(ConfigIssue(path, self._nearest_origin(path), message))
        if issues:
            raise ConfigError(issues)

    # -- wiring -------------------------------------------------------------------------------
    def _nearest_origin(self, path: str) -> str:
        """The line of `path`, or of its closest parent when the key itself is missing."""
        origins = self.config.origins
        probe = path
        while probe:
            if probe in origins:
                return origins[probe]
            probe = probe.rpartition(".")[0]
        return self.config.where(path)

    async def unregistered_targets(self) -> list[ConfigIssue]:
        """Push targets (`delivery.targets`) naming a unit the directory does not hold (store open).

        Such a target receives nothing: no packet can be addressed to the unit. `lgsp config check`
        refuses it; the hub warns once at start-up (units may be added while it runs), and presence
        drops what it observes of the unit instead of failing its writes.
        """
        from sqlalchemy import func, select

        from lgsp.core.store.tables import units

        targets = list(self.config.delivery.targets)
        if not targets:
            return []
        async with self.db.read() as conn:
            known = {str(u).lower() for u in (await conn.execute(
                select(units.c.id).where(func.lower(units.c.id).in_([t.lower() for t in targets])))).scalars()}
        return [self.unregistered_target(t) for t in targets if t.lower() not in known]

    def unregistered_target(self, unit: str) -> ConfigIssue:
        path = f"delivery.targets.{unit}"
        return ConfigIssue(path, self._nearest_origin(path),
                           f"unit {unit} is not registered, so nothing can be pushed to it: add it first "
                           f"(lgsp unit add {unit} NAME) or remove the target")

    async def open_store(self) -> None:
        """Master key, database (migrated) and blob store: what admin commands need, no server."""
        cfg = self.config
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        self.master_key = MasterKey.load_or_create(cfg.master_key_path, Kek.from_setting(cfg.security.master_key_kek))
        self.algorithms = signature_algorithms(self.pm)
        self.db = Database(cfg.database_url, pool_size=cfg.database.pool_size, echo=cfg.database.echo,
                           sqlite_synchronous=cfg.database.sqlite_synchronous)
        await self.db.upgrade()
        # Another node's temporary folder counts as dead once silent for ten housekeeping rounds (5 min at least).
        self.blobs = BlobStore(cfg.blob_path, chunk_size=cfg.limits.io_chunk_size, fsync=cfg.blobs.fsync,
                               owner_stale_seconds=max(300.0, 10 * cfg.presence.sweep_interval_seconds),
                               keys=ContentKeys(self.db, self.master_key), encrypt=cfg.blobs.encrypt,
                               cache_bytes=cfg.blobs.cache_bytes, inline_bytes=cfg.blobs.inline_bytes)
        self.blobs.open()
        self.blobs.keep_inline(InlineBlobs(self.db))  # also with inline_bytes 0: those kept stay readable
        self.directory = Directory(self.db, self.master_key, self.algorithms,
                                   rsa_key_bits=cfg.security.rsa_key_bits)
        self.secrets = SecretStore(self.db, self.master_key)
        self.presence = Presence(self.db, cfg.presence.online_window_seconds, clock=self.clock,
                                 offsets=OffsetSampler(cfg.presence.clock_offset_sample_seconds,
                                                       cfg.presence.clock_offset_jump_seconds))
        self.offset_pruner = OffsetPruner(self.db, cfg.presence.clock_offset_retention_days)
        self.auth = Authenticator(self.db, self.directory, self.algorithms, self.presence,
                                  clock_skew_seconds=cfg.security.clock_skew_seconds,
                                  session_ttl_seconds=cfg.security.session_ttl_seconds,
                                  key_cache_seconds=cfg.security.key_cache_seconds, clock=self.clock)
        self.policy = Policy(self.db, default=cfg.policy.default, config_rules=cfg.policy.rules,
                             cache_seconds=cfg.policy.cache_seconds, clock=self.clock)
        self.auth.policy = self.policy
        self.tickets = StreamTickets(self.db, self.auth, ttl_seconds=cfg.security.stream_ticket_seconds)
        priorities = cfg.delivery.priorities
        # Transfer URLs are signed with a key of their own, sealed in the store: a master-key rotation
        # re-seals it and URLs already handed out keep working (those signed with a key derived from
        # the master key, as before, still check until that key is retired).
        await self.secrets.add(TRANSFER_KEY_SECRET, secrets.token_hex(32))
        transfer_key = bytes.fromhex(await self.secrets.reveal(TRANSFER_KEY_SECRET))
        self.exchange = Exchange(self.db, self.blobs, self.directory, self.bus,
                                 tokens=TransferTokens(lambda: [transfer_key,
                                                                *self.master_key.derive_all("transfer-url")]),
                                 max_packet_size=cfg.limits.max_packet_size,
                                 max_recipients=cfg.limits.max_recipients,
                                 transfer_ttl_seconds=cfg.security.transfer_ttl_seconds,
                                 upload_stall_seconds=cfg.server.body_idle_timeout_seconds,
                                 call_hook=self.call_hook, push_protocol=self.engine.protocol_of,
                                 max_age=lambda p: priorities.for_priority(p).max_age_seconds, clock=self.clock)
        self.exchange.presence_overlay = self.presence.overlay
        self.exchange.not_destinations = frozenset({cfg.hub.identifier})
        self.exchange.carried_types = self.engine.data_types_of
        self.exchange.route_unknown = self.router.adopt
        self.identity = HubIdentity(self.directory, self.secrets, cfg.hub.identifier, cfg.hub.name)
        self.audit = AuditChain(self.db, self._audit_signer, self.algorithms, clock=self.clock)
        self.services = ServiceRegistry(self.db, self.directory)
        self.documents = DocumentIndex(self.db)
        self.auth.target_resolvers.append(self.services.resolve_target)
        self.auth.target_owners.append(self.services.owner_of)
        self.offline = OfflineReporter(self.db, self.bus, after_seconds=cfg.presence.offline_report_after_seconds,
                                       repeat_seconds=cfg.presence.offline_report_repeat_seconds,
                                       max_packets=cfg.presence.offline_report_max_packets, clock=self.clock)
        # Content inspectors and converters from plugins (edXML): see core/content.py.
        inspectors, converters = collect_content_plugins(self)
        self.content = ContentService(self.db, self.blobs, self.bus, inspectors=inspectors, converters=converters,
                                      clock=self.clock)
        self.content.check_reach = self.policy.check_named
        self.exchange.policy = self.policy
        self.exchange.use_content(self.content)
        self.notices = NoticeBoard(self.db, self.bus, clock=self.clock)
        self.leadership = Leadership(self.db)  # takes the lock only when a serving hub asks (try_lead)
        self.nodes = Nodes(self.db, self.node, heartbeat_seconds=cfg.cluster.heartbeat_interval_seconds,
                           timeout_seconds=cfg.cluster.node_timeout_seconds, clock=self.clock)
        self.presence.nodes = self.nodes

    async def start(self) -> None:
        from lgsp.core.web import AccessLogger, HubRunner, make_app  # the HTTP layer is only needed when serving

        self.check_config()
        await self.open_store()
        await self.nodes.register()  # a live node from now on: its claims and streams count
        self._tasks.append(asyncio.create_task(self._heartbeat(), name="lgsp-heartbeat"))
        for issue in await self.unregistered_targets():  # pushed to nobody until `lgsp unit add`: say so once
            log.warning("%s", issue)
        # Files a crash left behind: partial uploads of dead processes (this node's previous run at once),
        # then stored blobs no packet needs. A purged packet's files go whoever starts (a node killed
        # between a completion's commit and the deletion is usually this one's previous run); other
        # files at any age only when no other node runs (this one leads), else once a minute old, since
        # another node's work under way is not judged by a glimpse of it.
        self.blobs.sweep_tmp(older_than_seconds=self.config.security.transfer_ttl_seconds)
        leader = await self.leadership.try_lead()
        await self.exchange.reconcile_blobs(min_age_seconds=0 if leader else 60)
        await self.presence.reset_stale()
        await self.notices.refresh(announce=leader)
        server_cfg = self.config.server
        self.app = make_app(self)
        self._runner = HubRunner(self.app, access_log_class=AccessLogger,
                                 access_log=logging.getLogger("lgsp.access") if self.config.logging.access_log
                                 else None,
                                 shutdown_timeout=server_cfg.shutdown_timeout_seconds,
                                 keepalive_timeout=server_cfg.keepalive_timeout_seconds)
        # The listening socket's protocols are aiohttp's wrapped in the guard (header and body-idle
        # deadlines, connections per address: core/connections.py), which learns where requests start
        # and end from a middleware placed before every other.
        guard = ConnectionGuard(self._http_protocol, header_timeout=server_cfg.header_timeout_seconds,
                                body_idle_timeout=server_cfg.body_idle_timeout_seconds,
                                max_per_address=server_cfg.max_connections_per_address)
        self.app.middlewares.insert(0, guard.middleware)
        await self._runner.setup()
        unchecked = [unit for unit, target in self.config.delivery.targets.items()
                     if isinstance(target, dict) and target.get("verify_tls") is False]
        for unit in unchecked:  # never silent (core/tls.py): a warning and an audit entry at every start
            log.warning("TLS certificate checks are OFF for pushes to %s (delivery.targets.%s.verify_tls: "
                        "false): anyone on the path can read and change what it receives", unit, unit)
        if unchecked:
            async with self.db.write() as conn:
                for unit in unchecked:
                    await audit.append(conn, "delivery.tls_unverified", target=unit, unit=unit,
                                       detail={"setting": f"delivery.targets.{unit}.verify_tls: false"})
        tls = self.config.tls
        if tls.cert_file:
            self.tls_context = server_context(tls.cert_file, tls.key_file, tls.client_ca_file)
        self._server = await asyncio.get_running_loop().create_server(
            guard, server_cfg.host, server_cfg.port, reuse_address=True, reuse_port=self.reuse_port or None,
            backlog=512, ssl=self.tls_context)
        self.port = self._server.sockets[0].getsockname()[1]
        self._tasks.append(asyncio.create_task(self._housekeeping(), name="lgsp-housekeeping"))
        self._tasks.append(asyncio.create_task(self._presence_flusher(), name="lgsp-presence"))
        self._tasks.append(asyncio.create_task(self._audit_chainer(), name="lgsp-audit"))
        await self.call_hook_strict("lgsp_startup")
        # Pushes start once every plugin is up (push adapters may need their start-up hook first).
        self.exchange.on_push_queued = self.engine.wake
        self.cluster = ClusterEvents(self.db, self.bus, self.node)
        await self.cluster.start()  # PostgreSQL only: events committed on other nodes reach streams here
        await self.engine.start()
        self.started = True
        log.info("lgsp hub %s listening on %s", self.config.hub.identifier, self.url)

    def _http_protocol(self) -> asyncio.Protocol:
        """aiohttp's protocol for one new connection (the guard wraps it)."""
        assert self._runner is not None and self._runner.server is not None
        return self._runner.server()

    async def stop(self) -> None:
        try:
            await self.engine.stop()
        except Exception:
            log.exception("could not stop the delivery engine cleanly")
        if self.started:
            await self.call_hook("lgsp_shutdown")
        if self.cluster is not None:
            await self.cluster.stop()
        self.bus.close_all()
        if self._server is not None:
            self._server.close()  # no new connections; open ones are closed by the runner's cleanup
        if self._runner is not None:
            await self._runner.cleanup()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        # Let the background loops finish their round: a task cancelled in the middle of a write
        # transaction can leave SQLite's write lock held, and the final flush below would wait on it.
        self._stopping.set()
        await stop_tasks(self._tasks, self.config.server.shutdown_timeout_seconds)
        self._tasks.clear()
        if hasattr(self, "exchange"):
            await self.exchange.drain()
        if hasattr(self, "presence"):
            try:
                self.presence.sweep()
                self.presence.offsets.drain()  # the clock offsets observed since their last sample too
                await self.presence.flush()
            except Exception:
                log.exception("could not save presence on shutdown")
        if hasattr(self, "blobs"):
            self.blobs.close()  # this process's temporary folder: every writer has ended
        if hasattr(self, "nodes") and self.nodes.registered:
            try:
                await self.nodes.leave()
            except Exception:
                log.exception("could not remove this node from the cluster; it counts as dead after the timeout")
        if hasattr(self, "leadership"):
            await self.leadership.release()
        if hasattr(self, "db"):
            await self.db.close()
        self.started = False

    async def __aenter__(self) -> Hub:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        host = self.config.server.host
        if ":" in host:
            host = f"[{host}]"
        return f"{'https' if self.tls_context is not None else 'http'}://{host}:{self.port}"

    def reload_tls(self) -> bool:
        """Re-read the served certificate and key (SIGHUP): new connections get them, open ones stay.
        False (and the old certificate kept) when the new files cannot be used."""
        if self.tls_context is None:
            return False
        tls = self.config.tls
        try:
            load_certificate(self.tls_context, tls.cert_file, tls.key_file)
        except TlsError as exc:
            log.error("TLS certificate not reloaded, the current one stays: %s", exc)
            return False
        log.info("TLS certificate reloaded from %s", tls.cert_file)
        return True

    # -- plugins ------------------------------------------------------------------------------
    def plugin_names(self) -> list[str]:
        """The names of the plugins loaded (built-in adapters and external ones), sorted."""
        return sorted(name for name, _ in self.pm.list_name_plugin())

    async def call_hook(self, name: str, **kwargs: Any) -> None:
        """Call a notification hook; a failing plugin is logged and never hurts the packet."""
        try:
            if name == "lgsp_packet_accepted":
                logs.remember_packet(kwargs["packet"].id)  # its pushes carry this request's id
            self.metrics.on_hook(name, kwargs)
        except Exception:
            log.exception("metrics of hook %s failed", name)
        try:
            results = getattr(self.pm.hook, name)(hub=self, **kwargs)
        except Exception:
            log.exception("plugin hook %s failed", name)
            return
        for result in results:
            if inspect.isawaitable(result):
                try:
                    await result
                except Exception:
                    log.exception("plugin hook %s failed", name)

    async def call_hook_strict(self, name: str, **kwargs: Any) -> None:
        for result in getattr(self.pm.hook, name)(hub=self, **kwargs):
            if inspect.isawaitable(result):
                await result

    # -- background work ----------------------------------------------------------------------
    async def _idle(self, seconds: float) -> bool:
        """Sleep; True when the hub is stopping (then the loop ends instead of starting a round)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)
        return self._stopping.is_set()

    async def _housekeeping(self) -> None:
        interval = self.config.presence.sweep_interval_seconds
        rounds = 0
        while not await self._idle(interval):
            rounds += 1
            try:
                leader = await self.housekeeping_round()
                if rounds % 30 == 0:
                    await asyncio.to_thread(self.blobs.sweep_tmp, self.config.security.transfer_ttl_seconds)
                    if leader:  # the cluster's clean-up, on the node holding the lock
                        await self.nodes.forget_dead()
                        await self.auth.purge_expired()
                        await self.exchange.reconcile_blobs()
            except Exception:
                log.exception("housekeeping round failed; will retry")

    async def housekeeping_round(self) -> bool:
        """One round of the time-driven work: presence sweep, expiry, offline reports, stale pushes;
        True when this node leads the cluster (and so did the cluster's part).

        The housekeeping loop runs it every `presence.sweep_interval_seconds`; a test that advances
        the hub's clock can run it at once instead of waiting for the loop.
        """
        # This node's own state, on every node.
        self.blobs.heartbeat()
        self.presence.sweep()
        await self.presence.flush()
        leader = await self.leadership.try_lead()
        await self.notices.refresh(announce=leader)
        if not leader:
            return False
        # The cluster's work, on the one node holding the lock (core/cluster.py: Leadership). Each piece
        # is confirmed with the server first: a leader frozen past its lease must not act on old news.
        jobs: list[Callable[[], Awaitable[Any]]] = [
            lambda: self.presence.sweep_cluster(probed=self.config.delivery.targets),  # what dead nodes held
            self._files_dead_nodes_left, self.exchange.sweep, self.offline.run]
        if self.engine.lanes:
            jobs.append(self.engine.release_stale)
        jobs.append(lambda: self.offset_pruner.run(self.clock()))  # clock-offset samples past retention (every 10 min)
        for job in jobs:
            if not await self.leadership.confirm():
                return False
            await job()
        try:
            await statistics.rollup(self.db, backfill_steps=1)  # the aggregates reports read (core/statistics.py)
        except Exception:
            log.exception("statistics roll-up failed; the next round retries")
        return True

    async def _files_dead_nodes_left(self) -> None:
        """When a node is found dead, the files of packets it completed but had not yet deleted (it
        died between the commit and the deletion): reconciled at once, not at the periodic round
        (every 30 housekeeping rounds)."""
        dead = set(await self.nodes.dead_nodes())
        fresh, self._dead_nodes_seen = dead - self._dead_nodes_seen, dead
        if fresh:
            removed = await self.exchange.reconcile_blobs()
            log.info("node(s) %s stopped answering; %d file(s) they left were removed", ", ".join(sorted(fresh)),
                     removed)

    async def _audit_signer(self) -> tuple[str, str, Any]:
        key = await self.identity.key()
        return key.access_key, key.signer.algorithm.name, key.signer.sign_bytes

    async def _audit_chainer(self) -> None:
        """Chain new audit entries every round; sign the head every `audit.seal_interval_seconds`."""
        cfg = self.config.audit
        loop = asyncio.get_running_loop()
        next_seal = loop.time() + cfg.seal_interval_seconds
        while not await self._idle(cfg.chain_interval_seconds):
            try:
                await self.audit.chain()
                if cfg.seal_interval_seconds and loop.time() >= next_seal:
                    next_seal = loop.time() + cfg.seal_interval_seconds
                    await self.audit.seal()
            except Exception:
                log.exception("audit chaining failed; will retry")
        try:
            await self.audit.chain()  # what the last requests recorded, before the store closes
        except Exception:
            log.exception("could not chain the last audit entries; the next start will")

    async def _heartbeat(self) -> None:
        """This node is alive: refresh its row every `cluster.heartbeat_interval_seconds`."""
        while not await self._idle(self.config.cluster.heartbeat_interval_seconds):
            try:
                await self.nodes.beat()
            except Exception:
                log.exception("node heartbeat failed; will retry")

    async def _presence_flusher(self) -> None:
        while not await self._idle(1.0):
            try:
                await self.presence.flush()
            except Exception:
                log.exception("presence flush failed; will retry")


async def stop_tasks(tasks: list[asyncio.Task[None]], grace: float) -> None:
    """Wait up to `grace` seconds for tasks told to stop, then cancel what is left."""
    if not tasks:
        return
    _, pending = await asyncio.wait(tasks, timeout=grace)
    for task in pending:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
