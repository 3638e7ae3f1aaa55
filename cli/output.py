"""How commands print: aligned tables, times, sizes, JSON, and a progress bar for large transfers."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any


def table(rows: list[list[str]], headers: list[str]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=False)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=False)).rstrip())
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)).rstrip())


def when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else "-"


def size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(value)


def print_json(data: Any) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2))


def progress(total: int, desc: str) -> tuple[Callable[[int], None] | None, Callable[[], None]]:
    """A progress bar on stderr for transfers of 1 MiB or more (none when stderr is not a terminal)."""
    if total < (1 << 20):
        return None, lambda: None
    from tqdm import tqdm

    bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc, file=sys.stderr,
               disable=None, leave=False)

    def advance(n: int) -> None:
        bar.update(n)

    return advance, bar.close
