"""Argument helpers every command group shares: the parser class, --config, credentials, numbers."""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NoReturn

from lgsp.cli.messages import N_, gettext, ngettext, t

DEFAULT_CONFIG = "config/lgsp.yaml"

# What `add_commands(subparsers)` receives: the object `add_subparsers()` returns.
Subparsers = Any


# The words argparse itself prints (its own gettext msgids), in the CLI's catalogues too.
ARGPARSE_WORDS = (
    N_("usage: "), N_("positional arguments"), N_("options"), N_("show this help message and exit"),
    N_("the following arguments are required: %s"), N_("invalid choice: %(value)r (choose from %(choices)s)"),
    N_("unrecognized arguments: %s"), N_("expected one argument"), N_("expected at least one argument"),
    N_("expected at most one argument"), N_("argument %(argument_name)s: %(message)s"),
    N_("invalid %(type)s value: %(value)r"), N_("not allowed with argument %s"),
    N_("one of the arguments %s is required"), N_("ambiguous option: %(option)s could match %(matches)s"),
    N_("ignored explicit argument %r"), N_("can't open '%(filename)s': %(error)s"),
    N_("expected %s argument"), N_("expected %s arguments"),
)


@contextmanager
def argparse_speaks_our_language() -> Iterator[None]:
    """argparse's own words (usage, options, its errors) from our catalogues while the CLI parses."""
    saved = argparse._, argparse.ngettext  # type: ignore[attr-defined]
    argparse._ = gettext  # type: ignore[attr-defined]
    argparse.ngettext = ngettext  # type: ignore[attr-defined]
    try:
        yield
    finally:
        argparse._, argparse.ngettext = saved  # type: ignore[attr-defined]


class Parser(argparse.ArgumentParser):
    """Usage errors in one line, like every other failure of the command (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, t("error") + f": {self.prog}: {message} ({self.prog} --help)\n")


def _value_options(parser: argparse.ArgumentParser) -> tuple[set[str], set[str]]:
    """(options of this parser and its subcommands that take one value, every option string)."""
    takes: set[str] = set()
    known: set[str] = set()
    for action in parser._actions:
        known.update(action.option_strings)
        if action.option_strings and action.nargs is None:
            takes.update(action.option_strings)
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                sub_takes, sub_known = _value_options(sub)
                takes |= sub_takes
                known |= sub_known
    return takes, known


def values_joined(parser: argparse.ArgumentParser, argv: Sequence[str]) -> list[str]:
    """`argv` with each `--option VALUE` whose VALUE starts with "-" written `--option=VALUE`.

    argparse takes such a value for an option and refuses the command ("expected one argument"),
    though a secret key starts with "-" once in 64 (`token_urlsafe`) and a subject or a reason may
    too. A value that is itself one of the command's options is left alone, so a forgotten value
    is still refused as before; so is everything after "--" (positional arguments only)."""
    takes, known = _value_options(parser)
    out: list[str] = []
    items = list(argv)
    i = 0
    while i < len(items):
        item = items[i]
        if item == "--":
            return out + items[i:]
        if (item in takes and i + 1 < len(items) and items[i + 1].startswith("-") and items[i + 1] != "--"
                and items[i + 1].split("=", 1)[0] not in known):
            out.append(f"{item}={items[i + 1]}")
            i += 2
            continue
        out.append(item)
        i += 1
    return out


def add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", help=t("config file (default: $LGSP_CONFIG or {default})", default=DEFAULT_CONFIG))


def add_credentials(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(t("credentials (else LGSP_* environment, else the profile file)"))
    g.add_argument("--url", help=t("hub base URL (LGSP_URL); several nodes of a cluster separated by commas, "
                                 "tried in turn when one cannot be reached"))
    g.add_argument("--access-key", help=t("access key (LGSP_ACCESS_KEY)"))
    g.add_argument("--secret-key", help=t("HMAC secret key (LGSP_SECRET_KEY)"))
    g.add_argument("--private-key-file", help=t("RSA private key PEM file (LGSP_PRIVATE_KEY_FILE)"))
    g.add_argument("--algorithm", help=t("HMAC-SHA256, HMAC-SHA1 or RSA-SHA256 (LGSP_ALGORITHM)"))
    g.add_argument("--profile", help=t("profile name in the profile file (LGSP_PROFILE, default: default)"))


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {text!r}")
    return value
