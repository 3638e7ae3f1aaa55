"""Commands that serve in the foreground: the hub itself (`run`) and the national-axis simulator."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from lgsp.cli.args import Subparsers, add_config, positive_int
from lgsp.cli.errors import CliError, said
from lgsp.cli.messages import t
from lgsp.cli.store import cli_config


def cmd_run(args: argparse.Namespace) -> int:
    from lgsp.core.hub import Hub

    config = cli_config(args, admin=False)  # the hub itself may run on defaults and LGSP_* settings
    from lgsp.core.logs import configure

    configure(config.logging)  # JSON lines or text, UTC, with request id, unit, packet id, problem code

    from lgsp.core.health import serve  # SIGTERM drains (/readyz fails first), sd_notify under systemd
    from lgsp.core.workers import Supervisor, WorkersError, bind_to_supervisor, worker_count

    if args.worker_of is not None:  # one of the workers a supervisor started: it says when it serves
        try:
            bind_to_supervisor(args.worker_of)
        except WorkersError as exc:
            raise CliError(said(exc)) from None
        hub = Hub(config)
        hub.reuse_port = True
        asyncio.run(serve(hub))
        return 0
    if args.workers is not None:
        if args.workers > 1 and not config.database_url.startswith("postgresql"):
            raise CliError(t("--workers {n}: more than 1 worker process needs PostgreSQL (database.url); SQLite serves "
                           "one process", n=args.workers))
        count = args.workers
    else:
        count = worker_count(config)

    def ready(url: str) -> None:
        print(t("lgsp is listening on {url} (Ctrl+C to stop)", url=url), flush=True)

    def stopping() -> None:
        print(t("stopping…"), file=sys.stderr, flush=True)

    if count > 1:
        argv = [sys.executable, "-m", "lgsp.cli.main", "run", "--worker-of", str(os.getpid())]
        if args.config:
            argv += ["--config", str(Path(args.config).resolve())]
        try:
            return asyncio.run(Supervisor(config, count, lambda: argv, on_ready=ready, on_stopping=stopping).run())
        except WorkersError as exc:
            raise CliError(said(exc)) from None
    asyncio.run(serve(Hub(config), on_ready=ready, on_stopping=stopping))
    return 0


def cmd_axis_sim(args: argparse.Namespace) -> int:
    from lgsp.adapters.national_axis.sim_config import SimConfigError, load_agencies, parse_system, read_systems_file
    from lgsp.adapters.national_axis.simulator import AxisSimulator, serve_until_signalled

    try:
        systems = [parse_system(spec) for spec in args.system]
        if args.systems_file:
            systems += read_systems_file(Path(args.systems_file))
        if not systems:
            raise CliError(t("at least one system is needed: --system ID:SECRET:AGENCY or --systems-file FILE"))
        agencies = load_agencies(Path(args.agencies)) if args.agencies else []
        simulator = AxisSimulator(systems, agencies=agencies, state_file=Path(args.state) if args.state else None)
    except (SimConfigError, ValueError) as exc:
        raise CliError(str(exc)) from None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    def ready(url: str) -> None:
        print(t("national axis (VXP) simulator is listening on {url} for {n} system(s) (Ctrl+C to stop)", url=url,
                n=len(systems)), flush=True)

    asyncio.run(serve_until_signalled(simulator, args.host, args.port, ready))
    print(t("stopping…"), file=sys.stderr, flush=True)
    return 0


def add_commands(sub: Subparsers) -> None:
    p = sub.add_parser("run", help=t("start the hub"))
    add_config(p)
    p.add_argument("--workers", type=positive_int, metavar="N",
                   help=t("worker processes serving the port together (default: server.workers; "
                          "more than 1 needs PostgreSQL)"))
    p.add_argument("--worker-of", type=int, help=argparse.SUPPRESS)  # set by the supervisor for its workers
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("axis-sim", help=t("run a national document axis (VXP) simulator in the foreground (tests)"))
    p.add_argument("--host", default="127.0.0.1", help=t("address to listen on (default 127.0.0.1)"))
    p.add_argument("--port", type=int, default=8090, help=t("port (default 8090; 0 picks a free one)"))
    p.add_argument("--system", action="append", default=[], metavar="ID:SECRET:AGENCY",
                   help=t("a system that may call (repeatable); SECRET may be env:NAME or file:PATH"))
    p.add_argument("--systems-file", help=t("one ID:SECRET:AGENCY per line"))
    p.add_argument("--agencies", help=t("JSON array of agencies (getSynchronizeUnit fields) for the directory"))
    p.add_argument("--state", help=t("keep the simulator's state in this JSON file across restarts"))
    p.set_defaults(func=cmd_axis_sim)
