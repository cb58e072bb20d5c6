"""Small, dependency-free SVG line charts for the HTML report.

A report must open anywhere, offline, years later: inline SVG needs no script, no CDN and
no plotting library in the lab's image.
"""

from __future__ import annotations

import math
from html import escape

#: Colour-blind-friendly palette (Okabe–Ito), in the order series are drawn.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")

Point = tuple[float, float]


def _nice_step(span: float, ticks: int = 5) -> float:
    """A round tick step (1, 2, 5 × 10^k) that splits ``span`` into about ``ticks`` parts."""
    if span <= 0:
        return 1.0
    raw = span / ticks
    magnitude = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if raw <= factor * magnitude:
            return factor * magnitude
    return 10 * magnitude


def _format(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value / 1000:g}k"
    if abs(value) < 0.01:
        return f"{value:.1e}"
    return f"{value:g}"


def line_chart(
    series: dict[str, list[Point]],
    *,
    title: str,
    unit: str = "",
    width: int = 620,
    height: int = 240,
    markers: list[tuple[float, str]] | None = None,
) -> str:
    """An SVG chart of one or more lines; x is seconds since the run started.

    ``markers`` are vertical lines with a label (scenario actions such as a deploy).
    """
    left, right, top, bottom = 56, 12, 28, 36
    plot_w, plot_h = width - left - right, height - top - bottom
    points = [point for line in series.values() for point in line]
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(title)}">',
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#fff"/>',
        f'<text x="{left}" y="18" font-size="13" font-weight="600">{escape(title)}'
        f"{f' ({escape(unit)})' if unit else ''}</text>",
    ]
    if not points:
        parts.append(
            f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" '
            'fill="#888">no data</text>'
        )
        parts.append("</svg>")
        return "".join(parts)
    x_max = max(1.0, *(x for x, _ in points))
    y_max = max(0.0, *(y for _, y in points))
    y_step = _nice_step(y_max or 1.0)
    y_top = y_step * math.ceil((y_max or 1.0) / y_step)
    x_step = _nice_step(x_max, 6)

    def sx(x: float) -> float:
        return left + plot_w * x / x_max

    def sy(y: float) -> float:
        return top + plot_h * (1 - y / y_top)

    y = 0.0
    while y <= y_top + 1e-9:
        parts.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{sy(y):.1f}" y2="{sy(y):.1f}" '
            'stroke="#e5e5e5"/>'
            f'<text x="{left - 6}" y="{sy(y) + 4:.1f}" font-size="10" text-anchor="end" '
            f'fill="#555">{_format(y)}</text>'
        )
        y += y_step
    x = 0.0
    while x <= x_max + 1e-9:
        parts.append(
            f'<text x="{sx(x):.1f}" y="{top + plot_h + 14}" font-size="10" '
            f'text-anchor="middle" fill="#555">{_format(x)}s</text>'
        )
        x += x_step
    parts.append(
        f'<line x1="{left}" x2="{left}" y1="{top}" y2="{top + plot_h}" stroke="#999"/>'
        f'<line x1="{left}" x2="{left + plot_w}" y1="{top + plot_h}" y2="{top + plot_h}" '
        'stroke="#999"/>'
    )
    for at, label in markers or []:
        if 0 <= at <= x_max:
            parts.append(
                f'<line x1="{sx(at):.1f}" x2="{sx(at):.1f}" y1="{top}" y2="{top + plot_h}" '
                'stroke="#D55E00" stroke-dasharray="4 3"/>'
                f'<text x="{sx(at) + 3:.1f}" y="{top + 10}" font-size="10" '
                f'fill="#D55E00">{escape(label)}</text>'
            )
    legend_x = left
    for index, (label, line) in enumerate(series.items()):
        colour = PALETTE[index % len(PALETTE)]
        if line:
            path = " ".join(f"{sx(px):.1f},{sy(py):.1f}" for px, py in sorted(line))
            parts.append(
                f'<polyline fill="none" stroke="{colour}" stroke-width="1.8" points="{path}"/>'
            )
        parts.append(
            f'<rect x="{legend_x}" y="{height - 12}" width="10" height="3" fill="{colour}"/>'
            f'<text x="{legend_x + 14}" y="{height - 8}" font-size="10">{escape(label)}</text>'
        )
        legend_x += 24 + 6 * len(label)
    parts.append("</svg>")
    return "".join(parts)
