"""Run the `lgsp` command in-process through `main(argv)`, capturing what a terminal would see.

A subprocess costs a Python start and every import (over a second each on the test machine); the
command's own code is the same either way, so tests call `main` and keep two subprocess smoke tests
(tests/test_cli_smoke.py) for the entry point, signals and the real process.

The environment, working directory, stdin, stdout and stderr are process-wide, so one command runs
at a time (a lock), and everything is put back afterwards. From a coroutine use `arun_cli`: it runs
the command in a worker thread, because commands start their own event loop with `asyncio.run`.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from lgsp.cli.main import main

_LOCK = threading.Lock()


@dataclass
class CliResult:
    """What one command left: exit status, stdout, stderr (like `subprocess.CompletedProcess`)."""

    returncode: int
    stdout: str
    stderr: str


class _Terminal(io.StringIO):
    """A captured stream that is not a terminal (so no prompt, colour or progress bar is drawn)."""

    def isatty(self) -> bool:
        return False


@contextlib.contextmanager
def _environment(env: Mapping[str, str] | None, keep_lgsp_env: bool) -> Iterator[None]:
    saved = dict(os.environ)
    base = saved if keep_lgsp_env else {k: v for k, v in saved.items()
                                        if not k.startswith("LGSP_") or k == "LGSP_CHECK_TRANSITIONS"}
    try:
        os.environ.clear()
        os.environ.update(base)
        os.environ.update(env or {})
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextlib.contextmanager
def _cwd(path: Path | None) -> Iterator[None]:
    if path is None:
        yield
        return
    before = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def run_cli(*argv: str, env: Mapping[str, str] | None = None, cwd: Path | None = None, stdin: str = "",
            lang: str = "en", keep_lgsp_env: bool = False, out: io.StringIO | None = None) -> CliResult:
    """`lgsp ARGV` in this process, in language `lang`. The caller's LGSP_* variables are dropped
    (as for a clean shell) unless `keep_lgsp_env`; `env` is added on top."""
    out, err = out or _Terminal(), _Terminal()
    env = {"LGSP_LANG": lang, **(env or {})}
    with (_LOCK, _environment(env, keep_lgsp_env), _cwd(cwd),
          contextlib.redirect_stdout(out), contextlib.redirect_stderr(err)):
        saved_stdin = sys.stdin
        sys.stdin = _Terminal(stdin)
        try:
            code = main(list(argv))
        except SystemExit as exc:  # argparse: usage errors (2) and --help (0)
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        finally:
            sys.stdin = saved_stdin
    return CliResult(code, out.getvalue(), err.getvalue())


async def arun_cli(*argv: str, env: Mapping[str, str] | None = None, cwd: Path | None = None, stdin: str = "",
                   lang: str = "en", keep_lgsp_env: bool = False) -> CliResult:
    """`run_cli` from a coroutine: the command runs in a worker thread while this loop keeps serving."""
    return await asyncio.to_thread(run_cli, *argv, env=env, cwd=cwd, stdin=stdin, lang=lang,
                                   keep_lgsp_env=keep_lgsp_env)


def run_cli_serving(*argv: str, work: Callable[[str], None], sig: signal.Signals = signal.SIGTERM,
                    timeout: float = 60.0, **kwargs: object) -> tuple[CliResult, str]:
    """Run a foreground command (`run`, `axis-sim`) in this thread until `sig` stops it.

    A helper thread waits for the command's first line on stdout, calls `work(line)` while the
    command serves, then sends `sig` to this process, which the command's own handler catches; it
    sends the signal after `timeout` seconds whatever happens, so a failing `work` cannot hang the
    test. Returns the result and the first line; an exception from `work` is raised here.
    """
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("signal handlers work only in the main thread")
    out = _Terminal()
    seen: list[str] = []
    failure: list[BaseException] = []

    def helper() -> None:
        deadline = time.monotonic() + timeout
        try:
            while "\n" not in out.getvalue() and time.monotonic() < deadline and not done.is_set():
                time.sleep(0.02)
            if done.is_set():
                return
            seen.append(out.getvalue().split("\n", 1)[0])
            work(seen[0])
        except BaseException as exc:  # handed to the test below
            failure.append(exc)
        finally:
            if not done.is_set():
                os.kill(os.getpid(), sig)

    done = threading.Event()
    thread = threading.Thread(target=helper, daemon=True)
    thread.start()
    try:
        result = run_cli(*argv, out=out, **kwargs)  # type: ignore[arg-type]
    finally:
        done.set()
        thread.join(timeout)
    if failure:
        raise failure[0]
    return result, seen[0] if seen else ""
