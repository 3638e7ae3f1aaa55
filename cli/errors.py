"""How every `lgsp` command fails: one line on stderr and a non-zero exit, never a traceback.

Kept in one place so each command module raises what it naturally raises (a `Problem`, a client
error, an `OSError`) and `main` turns it into the same one-line shape.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable

from lgsp.cli.messages import lang, t
from lgsp.core.config import ConfigError
from lgsp.core.i18n import Text, os_reason, render


class CliError(Exception):
    """One line for the user; exits with status 1."""


def said(exc: BaseException) -> str:
    """What an exception says, in the CLI's language: its message when that is a `Text` (core/i18n.py;
    `str(exc)` would be the English msgid), else its text as is."""
    first = exc.args[0] if len(exc.args) == 1 else None
    return first.render(lang()) if isinstance(first, Text) else str(exc)


def run_command(func: Callable[[argparse.Namespace], int | None], args: argparse.Namespace) -> int:
    """Call one command and map whatever it raises to one line on stderr and an exit status."""
    import aiohttp
    import yaml
    from sqlalchemy.exc import SQLAlchemyError

    from lgsp.client.client import LgspError
    from lgsp.client.profiles import ProfileError
    from lgsp.core.errors import Problem
    from lgsp.core.masterkey import MasterKeyError
    from lgsp.plugins.manager import PluginError

    try:
        return int(func(args) or 0)
    except ConfigError as exc:
        for issue in exc.issues:
            print(t("error") + f": {issue}", file=sys.stderr)
        return 1
    except Problem as exc:
        print(t("error") + f": {exc.code}: {render(exc.detail) or exc.title(lang())}", file=sys.stderr)
        return 1
    except LgspError as exc:
        print(t("error") + f": {exc.code}: {exc.detail}", file=sys.stderr)
        return 1
    except (CliError, ProfileError, MasterKeyError, PluginError) as exc:
        print(t("error") + f": {said(exc)}", file=sys.stderr)
        return 1
    except aiohttp.ClientError as exc:
        print(t("error") + ": " + t("transport: {reason}", reason=exc), file=sys.stderr)
        return 1
    except OSError as exc:
        why = render(os_reason(exc))
        # The library's own words keep what they name (an address, a path) after the translated reason.
        said_by_library = re.sub(r"^\[Errno \d+\] ", "", str(exc))
        if exc.filename:
            line = t("{file}: {reason}", file=exc.filename, reason=why)
        elif said_by_library and said_by_library not in (why, os.strerror(exc.errno or 0)):
            line = t("{reason} ({detail})", reason=why, detail=" ".join(said_by_library.split())[:300])
        else:
            line = why
        print(t("error") + ": " + line, file=sys.stderr)
        return 1
    except yaml.YAMLError as exc:  # a profiles file that is not YAML
        print(t("error") + ": " + t("invalid YAML: {reason}", reason=" ".join(str(exc).split())), file=sys.stderr)
        return 1
    except SQLAlchemyError as exc:  # the store cannot be reached or opened
        reason = getattr(exc, "orig", None) or exc
        print(t("error") + ": " + t("cannot reach or open the store: {reason}",
                                    reason=" ".join(str(reason).split())[:300]), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # anything else: still one line; LGSP_DEBUG=1 shows the traceback
        if os.environ.get("LGSP_DEBUG"):
            raise
        print(t("error") + f": {type(exc).__name__}: {' '.join(said(exc).split())[:300]}", file=sys.stderr)
        return 1
