"""The one-screen summary at the top of BENCHMARKS.md: the headline figures recorded in its
sections (each named here with its section), as Parley's speed divided by its baseline's in
the same run, and a chart of them (an SVG written by this module, no plotting library).

    python -m bench.summary          # rewrites docs/benchmarks-summary.svg, prints the table

Add a row to FIGURES when a section records a new headline; tests/test_bench_summary.py
fails while the SVG is stale.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from html import escape
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SVG = ROOT / "docs" / "benchmarks-summary.svg"


@dataclass(frozen=True)
class Figure:
    what: str
    parley: float  # a rate (higher is better) or a time (lower is better), as recorded
    baseline: float
    unit: str
    higher_is_better: bool
    baseline_name: str
    section: str  # the BENCHMARKS.md heading it comes from (its date)

    @property
    def ratio(self) -> float:
        """Parley's speed ÷ the baseline's: 1 is as fast, 0.5 half as fast."""
        return self.parley / self.baseline if self.higher_is_better else self.baseline / self.parley


FIGURES = [
    Figure(
        "Contacts page, GraphQL, 32 connections (SQLite)",
        0.74,
        1,
        "× bare req/s",
        True,
        "a bare Starlette endpoint, same query",
        "Read path after the hostile-client limits (2026-12-07)",
    ),
    Figure(
        "Inbox page, GraphQL, 32 connections (SQLite)",
        0.85,
        1,
        "× bare req/s",
        True,
        "a bare Starlette endpoint, same query",
        "Read path after the hostile-client limits (2026-12-07)",
    ),
    Figure(
        "Fan-out to 1,000 sockets at 40 msg/s, deliveries/s",
        40_013,
        40_114,
        "deliveries/s",
        True,
        "the bare pub/sub hub",
        "Fan-out and the read path re-measured after the leak fix (2026-12-04)",
    ),
    Figure(
        "Fan-out to 10,000 sockets at 4 msg/s, deliveries/s",
        38_295,
        41_664,
        "deliveries/s",
        True,
        "the bare pub/sub hub",
        "Fan-out and the read path re-measured after the leak fix (2026-12-04)",
    ),
    Figure(
        "Short jobs through the worker, backlog jobs/s",
        611,
        199,
        "jobs/s",
        True,
        "arq's default settings",
        "Jobs: short arq jobs through a real worker (2026-12-03)",
    ),
    Figure(
        "Export 1,000,000 contacts to CSV (PostgreSQL)",
        8.42,
        8.42 / 1.98,
        "s",
        False,
        "COPY … TO STDOUT",
        "CSV export and CRM sync (2026-11-22)",
    ),
    Figure(
        "Export 1,000,000 contacts to CSV (SQLite)",
        17.66,
        17.66 / 1.62,
        "s",
        False,
        "sqlite3 cursor → csv.writer",
        "CSV export and CRM sync (2026-11-22)",
    ),
    Figure(
        "100,000-recipient campaign (PostgreSQL)",
        56.6,
        28.9,
        "s",
        False,
        "the same rows by bulk SQL",
        "A 100,000-recipient in-app campaign end to end (2026-12-03)",
    ),
    Figure(
        "100,000-recipient campaign (SQLite)",
        7.26,
        1.25,
        "s",
        False,
        "the same rows by bulk SQL",
        "A 100,000-recipient in-app campaign end to end (2026-12-03)",
    ),
    Figure(
        "syncContacts, creating 100,000 contacts (PostgreSQL)",
        2_599,
        20_266,
        "rows/s",
        True,
        "raw INSERT … ON CONFLICT",
        "CSV export and CRM sync (2026-11-22)",
    ),
    Figure(
        "syncContacts, creating 100,000 contacts (SQLite)",
        2_075,
        61_285,
        "rows/s",
        True,
        "raw INSERT … ON CONFLICT",
        "CSV export and CRM sync (2026-11-22)",
    ),
    Figure(
        "Bulk action: tag 1,000,000 contacts (PostgreSQL)",
        607.4,
        179.7,
        "s",
        False,
        "INSERT … SELECT of the tags and the change log",
        "Bulk actions: tag 1,000,000 contacts (2026-12-08)",
    ),
]


def _number(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.2f}".rstrip("0").rstrip(".")


def table() -> str:
    rows = ["| what | Parley | baseline (same run) | Parley's speed ÷ baseline's |", "|---|---:|---|---:|"]
    for f in FIGURES:
        if f.unit.startswith("×"):
            parley, base = f"{_number(f.parley)}{f.unit}", f.baseline_name
        else:
            parley, base = f"{_number(f.parley)} {f.unit}", f"{f.baseline_name}: {_number(f.baseline)} {f.unit}"
        rows.append(f"| {f.what} | {parley} | {base} | {f.ratio:.2f}× |")
    return "\n".join(rows)


def svg() -> str:
    """Horizontal bars on a log scale from 0.01× to 10×, a line at 1× (as fast as the baseline)."""
    label_w, bar_w, row_h, top = 380, 420, 26, 44
    low, high = math.log10(0.01), math.log10(10)
    height = top + row_h * len(FIGURES) + 34

    def x(ratio: float) -> float:
        return label_w + (math.log10(ratio) - low) / (high - low) * bar_w

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_w + bar_w + 70}" height="{height}" '
        'font-family="sans-serif" font-size="12">',
        '<rect width="100%" height="100%" fill="white"/>',
        '<text x="10" y="20" font-size="14" font-weight="bold">Parley\'s speed ÷ its baseline\'s, same run '
        "(log scale; 1× = as fast)</text>",
    ]
    for tick in (0.01, 0.1, 1, 10):
        tx = x(tick)
        out.append(
            f'<line x1="{tx:.1f}" y1="{top - 8}" x2="{tx:.1f}" y2="{height - 28}" '
            f'stroke="{"#333" if tick == 1 else "#ccc"}"/>'
        )
        out.append(f'<text x="{tx:.1f}" y="{height - 12}" text-anchor="middle">{_number(tick)}×</text>')
    for i, f in enumerate(FIGURES):
        y = top + i * row_h
        colour = "#2a7" if f.ratio >= 0.7 else "#e90" if f.ratio >= 0.3 else "#c33"
        end = x(max(f.ratio, 0.01))
        start = x(1)
        left, width = min(start, end), abs(end - start)
        out.append(f'<text x="{label_w - 8}" y="{y + 15}" text-anchor="end">{escape(f.what)}</text>')
        out.append(
            f'<rect x="{left:.1f}" y="{y + 3}" width="{max(width, 1):.1f}" height="{row_h - 8}" fill="{colour}"/>'
        )
        out.append(f'<text x="{max(start, end) + 4:.1f}" y="{y + 15}">{f.ratio:.2f}×</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main() -> int:
    SVG.parent.mkdir(exist_ok=True)
    SVG.write_text(svg())
    sys.stdout.write(table() + "\n")
    print(f"\nwrote {SVG.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
