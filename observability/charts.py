"""Charts drawn on the server as inline SVG: no JavaScript, no CDN, nothing to download, and the page
is the same picture in any browser, a screenshot or a printed incident report (README, "Dashboard")."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from .selectors import FlowSeries, Percentiles

PALETTE = ("#2b6cb0", "#dd6b20", "#38a169", "#d53f8c", "#805ad5", "#319795", "#d69e2e", "#718096", "#e53e3e")
FONT = "font-family:system-ui,sans-serif;font-size:11px"


def _nice_ceiling(value: float) -> float:
    """The axis maximum: 1, 2 or 5 times a power of ten, at or above `value`."""
    if value <= 0:
        return 1
    magnitude = 10 ** (len(str(int(value))) - 1) if value >= 1 else 1
    for factor in (1, 2, 5, 10):
        if value <= factor * magnitude:
            return factor * magnitude
    return 10 * magnitude


def _legend(labels: Sequence[str], x: float, y: float) -> list[str]:
    parts = []
    for index, label in enumerate(labels):
        top = y + index * 16
        colour = PALETTE[index % len(PALETTE)]
        parts.append(f'<rect x="{x}" y="{top}" width="10" height="10" fill="{colour}"/>')
        parts.append(f'<text x="{x + 14}" y="{top + 9}" style="{FONT}">{escape(label)}</text>')
    return parts


def stacked_columns(
    steps: Sequence[datetime], series: Sequence[FlowSeries], *, title: str, width: int = 620, height: int = 220
) -> SafeString:
    """One column per time step, stacked by series, with a y axis and a legend."""
    left, right, top, bottom = 44, 170, 24, 28
    plot_w, plot_h = width - left - right, height - top - bottom
    totals = [sum(line.points[i] for line in series) for i in range(len(steps))]
    y_max = _nice_ceiling(max(totals, default=0))
    column_w = plot_w / max(1, len(steps))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" viewBox="0 0 {width} {height}" '
        f'style="width:100%;max-width:{width}px;height:auto" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<text x="{left}" y="14" style="{FONT};font-weight:600">{escape(title)}</text>',
    ]
    for fraction in (0, 0.5, 1):
        y = top + plot_h * (1 - fraction)
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e2e8f0"/>')
        parts.append(
            f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end" style="{FONT}">{y_max * fraction:g}</text>'
        )
    for index in range(len(steps)):
        base = top + plot_h
        for line_index, line in enumerate(series):
            value = line.points[index]
            if not value:
                continue
            bar_h = plot_h * value / y_max
            base -= bar_h
            colour = PALETTE[line_index % len(PALETTE)]
            parts.append(
                f'<rect x="{left + index * column_w + 1:.1f}" y="{base:.1f}" width="{max(1.0, column_w - 2):.1f}" '
                f'height="{bar_h:.1f}" fill="{colour}"><title>{escape(line.label)} at '
                f"{steps[index]:%H:%M}: {value}</title></rect>"
            )
    if steps:
        for index in sorted({0, len(steps) // 2, len(steps) - 1}):
            x = left + index * column_w + column_w / 2
            parts.append(
                f'<text x="{x:.1f}" y="{height - 8}" text-anchor="middle" style="{FONT}">{steps[index]:%H:%M}</text>'
            )
    if not any(totals):
        parts.append(
            f'<text x="{left + plot_w / 2}" y="{top + plot_h / 2}" text-anchor="middle" '
            f'style="{FONT};fill:#718096">nothing in this window</text>'
        )
    parts += _legend([f"{line.label} ({line.total})" for line in series[: len(PALETTE)]], width - right + 12, top)
    parts.append("</svg>")
    return mark_safe("".join(parts))  # every label in it was escaped above


def percentile_bars(rows: Sequence[Percentiles], *, title: str, unit: str = "ms", width: int = 620) -> SafeString:
    """p50, p95 and p99 as three bars per row, on one scale."""
    left, right, top, row_h = 120, 70, 24, 42
    height = top + row_h * max(1, len(rows)) + 24
    plot_w = width - left - right
    x_max = _nice_ceiling(max((row.p99 or 0 for row in rows), default=0))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" viewBox="0 0 {width} {height}" '
        f'style="width:100%;max-width:{width}px;height:auto" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<text x="{left}" y="14" style="{FONT};font-weight:600">{escape(title)}</text>',
    ]
    for index, row in enumerate(rows):
        y = top + index * row_h
        parts.append(f'<text x="{left - 6}" y="{y + 20}" text-anchor="end" style="{FONT}">{escape(row.label)}</text>')
        for bar, (name, value) in enumerate((("p50", row.p50), ("p95", row.p95), ("p99", row.p99))):
            if value is None:
                continue
            bar_w = max(1.0, plot_w * value / x_max)
            colour = PALETTE[bar]
            parts.append(
                f'<rect x="{left}" y="{y + bar * 12}" width="{bar_w:.1f}" height="10" fill="{colour}">'
                f"<title>{escape(row.label)} {name}: {value:.0f} {unit}</title></rect>"
            )
            parts.append(
                f'<text x="{left + bar_w + 4:.1f}" y="{y + bar * 12 + 9}" style="{FONT}">{name} {value:,.0f}</text>'
            )
    if not rows:
        parts.append(f'<text x="{left}" y="{top + 20}" style="{FONT};fill:#718096">nothing in this window</text>')
    parts.append(
        f'<text x="{left + plot_w}" y="{height - 6}" text-anchor="end" style="{FONT}">scale 0 – {x_max:g} {unit}</text>'
    )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # every label in it was escaped above
