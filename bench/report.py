"""Rows of results, the targets we hold ourselves to, the printed table and the JSON file.

A row is one figure (say, pull exchanges/s at 10 KiB with 32 pairs) measured on several systems
(the hub and its baselines) over repeated, interleaved runs; ratios are taken per repetition, so
each hub run is compared with the baseline run of the same moment.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.common import ratio_summary, summarize


@dataclass
class Row:
    id: str
    group: str
    title: str
    unit: str
    higher_is_better: bool = True
    params: dict[str, Any] = field(default_factory=dict)
    values: dict[str, list[float]] = field(default_factory=dict)
    details: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    ratios: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def add(self, system: str, value: float | None, detail: dict[str, Any] | None = None) -> None:
        self.values.setdefault(system, []).append(math.nan if value is None else float(value))
        self.details.setdefault(system, []).append(detail or {})

    def summary(self, system: str) -> dict[str, Any]:
        return summarize(self.values.get(system, []))

    def ratio(self, num: str, den: str) -> dict[str, Any] | None:
        if num not in self.values or den not in self.values:
            return None
        return ratio_summary(self.values[num], self.values[den])

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "group": self.group, "title": self.title, "unit": self.unit,
            "higher_is_better": self.higher_is_better, "params": self.params,
            "systems": {name: {**self.summary(name), "details": self.details.get(name, [])} for name in self.values},
            "ratios": {f"{a}/{b}": self.ratio(a, b) for a, b in self.ratios if self.ratio(a, b) is not None},
            "notes": self.notes, **({"extra": self.extra} if self.extra else {}),
        }


@dataclass
class Target:
    name: str
    text: str
    status: str  # met | missed | not measured
    value: float | None = None
    threshold: float | None = None
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def fmt(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if value == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(value)))
    decimals = max(0, digits - 1 - magnitude)
    return f"{value:,.{decimals}f}"


def spread(summary: dict[str, Any]) -> str:
    if not summary.get("n"):
        return "–"
    if summary["n"] == 1:
        return fmt(summary["median"])
    return f"{fmt(summary['median'])} [{fmt(summary['min'])}–{fmt(summary['max'])}]"


def table(rows: list[Row], skipped: list[dict[str, str]], targets: list[Target]) -> str:
    """The console table: median [min–max] per system, and median per-run ratio to each baseline."""
    header = ("row", "unit", "hub", "baselines (median [min–max])", "hub ÷ baseline")
    lines: list[tuple[str, ...]] = []
    for row in rows:
        main = next(iter(row.values), "hub")
        base = [f"{name} {spread(row.summary(name))}" for name in row.values if name != main]
        ratios = []
        for a, b in row.ratios:
            r = row.ratio(a, b)
            if r and r.get("median") is not None:
                label = b if a == main else f"{a}/{b}"
                ratios.append(f"{fmt(r['median'])}× {label}")
        hub_cell = spread(row.summary(main)) + ("" if main == "hub" else f" ({main})")
        lines.append((row.title, row.unit, hub_cell, "; ".join(base) or "–", "; ".join(ratios) or "–"))
    widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h) for i, h in enumerate(header)]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)),
           "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines]
    if skipped:
        out.append("")
        out += [f"skipped: {s['row']}: {s['reason']}" for s in skipped]
    if targets:
        out.append("")
        out.append("targets:")
        for t in targets:
            shown = f" ({t.detail})" if t.detail else ""
            out.append(f"  [{t.status.upper():^12}] {t.text}{shown}")
    return "\n".join(out)


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(_clean(payload), indent=1, ensure_ascii=False, allow_nan=False, default=_default)
    path.write_text(text, encoding="utf-8")


def _clean(value: Any) -> Any:
    """NaN and infinities become null: the file must stay strict JSON for other tools."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


# -- markdown, for docs/performance.md ---------------------------------------------------------

def markdown(result: dict[str, Any]) -> str:
    """The tables of a result file as markdown: `python -m bench.report bench/results/<file>.json`."""
    m = result["machine"]
    git = m.get("git", {})
    lines = [f"Run `{result.get('started_utc')}` ({result['profile']['name']} profile, "
             f"{result.get('duration_s', 0) / 60:.0f} min), commit `{(git.get('commit') or '?')[:10]}`"
             f"{' + local changes' if git.get('dirty') else ''}; {m['cpu_count']} × {m['cpu_model']}, "
             f"{m['ram_gib']} GiB RAM, Linux {m['kernel']}, Python {m['python']}, SQLite {m['sqlite']}, "
             + ", ".join(f"{k} {v}" for k, v in m.get("versions", {}).items() if k != "lgsp")
             + (f", RabbitMQ {result['rabbitmq']['version']}" if result.get("rabbitmq", {}).get("version") else "")
             + ".", "",
             "| row | unit | hub: median [min–max] | baselines: median [min–max] "
             "| hub ÷ baseline (median of per-run ratios [min–max]) |",
             "|---|---|---|---|---|"]
    for row in result["rows"]:
        systems = row["systems"]
        names = list(systems)
        if not names:  # an extension's unstructured result: shown as its raw values
            lines.append(f"| {row['title']} | | {json.dumps(row.get('extra', {}), ensure_ascii=False)[:300]} | | |")
            continue
        main = names[0]

        def cell(s: dict[str, Any]) -> str:
            return spread(s)

        base = "; ".join(f"{n} {cell(systems[n])}" for n in names[1:]) or "–"
        ratios = "; ".join(f"{fmt(r['median'])}× {k.split('/', 1)[1]}"
                           + (f" [{fmt(r['min'])}–{fmt(r['max'])}]" if r.get("n", 0) > 1 else "")
                           for k, r in row.get("ratios", {}).items() if r and r.get("median") is not None) or "–"
        label = "" if main == "hub" else f" ({main})"
        lines.append(f"| {row['title']} | {row['unit']} | {cell(systems[main])}{label} | {base} | {ratios} |")
    if result.get("skipped"):
        lines.append("")
        lines += [f"- skipped: {s['row']}: {s['reason']}" for s in result["skipped"]]
    lines += ["", "| target | status | measured |", "|---|---|---|"]
    lines += [f"| {t['text']} | **{t['status']}** | {t.get('detail', '')} |" for t in result.get("targets", [])]
    return "\n".join(lines)


if __name__ == "__main__":
    import sys

    print(markdown(json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))))
