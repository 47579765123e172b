"""Charts as inline SVG, laid out here and drawn by `templates/charts.html`: no script, nothing fetched.

The strict Content-Security-Policy allows no script and no inline style, so a chart is plain SVG
elements whose geometry is computed on the server and whose colours come from classes in the
stylesheet. Every text in a chart (labels, a bar's tooltip) goes through the template's escaping.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

WIDTH, HEIGHT = 560, 140
"""The view box of a full chart; the page scales it to the column's width."""
LEFT, BOTTOM, TOP = 44, 18, 8
"""Room for the value axis's labels, the bucket labels and the top label's glyphs."""


@dataclass(frozen=True)
class Series:
    """One named row of values, one per bucket, drawn with the stylesheet's `css` class."""

    name: str
    css: str
    values: Sequence[float]


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    width: float
    height: float
    css: str
    title: str


@dataclass(frozen=True)
class Line:
    points: str
    css: str
    title: str


@dataclass(frozen=True)
class Text:
    x: float
    y: float
    text: str
    anchor: str = "start"


@dataclass(frozen=True)
class Chart:
    label: str
    width: int
    height: int
    rects: list[Rect] = field(default_factory=list)
    lines: list[Line] = field(default_factory=list)
    texts: list[Text] = field(default_factory=list)
    legend: list[Series] = field(default_factory=list)


def nice_top(value: float) -> float:
    """The axis's top: `value` rounded up to 1, 2 or 5 times a power of ten (1 for nothing)."""
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    return next(step * power for step in (1, 2, 5, 10) if step * power >= value)


def stacked_bars(label: str, buckets: Sequence[str], series: Sequence[Series], unit: str = "") -> Chart:
    """One bar per bucket, the series stacked from the bottom in order; negative values count as 0."""
    top = nice_top(max((sum(max(0.0, s.values[i]) for s in series) for i in range(len(buckets))), default=0))
    slot = (WIDTH - LEFT) / max(1, len(buckets))
    rects = []
    for i, bucket in enumerate(buckets):
        base = 0.0
        for s in series:
            value = max(0.0, s.values[i])
            if value:
                rects.append(Rect(round(LEFT + i * slot + slot * 0.1, 1), _y(base + value, top),
                                  round(slot * 0.8, 1), round(_y(base, top) - _y(base + value, top), 1), s.css,
                                  f"{bucket}: {_number(value)}{unit} {s.name}"))
            base += value
    return Chart(label, WIDTH, HEIGHT, rects, [], _axes(buckets, top, unit), list(series))


def line_chart(label: str, buckets: Sequence[str], series: Sequence[Series], unit: str = "") -> Chart:
    """One polyline per series through the buckets' middles; a bucket without a value (NaN) breaks the line."""
    values = [v for s in series for v in s.values if not math.isnan(v)]
    top = nice_top(max(values, default=0))
    slot = (WIDTH - LEFT) / max(1, len(buckets))
    lines = []
    for s in series:
        run: list[str] = []
        for i, v in enumerate([*s.values, math.nan]):
            if math.isnan(v):
                if len(run) == 1:  # a lone point: a level as wide as a bar, so it shows
                    x, y = run[0].split(",")
                    run = [f"{float(x) - slot * 0.4:.1f},{y}", f"{float(x) + slot * 0.4:.1f},{y}"]
                if run:
                    lines.append(Line(" ".join(run), s.css, s.name))
                run = []
            else:
                run.append(f"{LEFT + (i + 0.5) * slot:.1f},{_y(v, top)}")
    return Chart(label, WIDTH, HEIGHT, [], lines, _axes(buckets, top, unit), list(series))


def meter(label: str, used: float, limit: float) -> Chart:
    """A bar filled to `used` of `limit` (full past it): the `over` class from 90 %."""
    width, height = 160, 12
    share = min(1.0, used / limit) if limit > 0 else 1.0
    css = "over" if share >= 0.9 else "used"
    rects = [Rect(0, 0, width, height, "track", label)]
    if share > 0:
        rects.append(Rect(0, 0, round(width * share, 1), height, css, label))
    return Chart(label, width, height, rects)


def spark(label: str, buckets: Sequence[str], values: Sequence[float], css: str) -> Chart:
    """Small bars without axes, for a row of a table."""
    width, height = 140, 24
    top = nice_top(max(values, default=0))
    slot = width / max(1, len(buckets))
    rects = [Rect(round(i * slot + 1, 1), round(height - height * v / top, 1), round(slot - 2, 1),
                  round(height * v / top, 1), css, f"{b}: {_number(v)}")
             for i, (b, v) in enumerate(zip(buckets, values, strict=True)) if v > 0]
    return Chart(label, width, height, rects)


def _axes(buckets: Sequence[str], top: float, unit: str) -> list[Text]:
    every = max(1, math.ceil(len(buckets) / 8))
    slot = (WIDTH - LEFT) / max(1, len(buckets))
    texts = [Text(LEFT - 4, TOP + 4, f"{_number(top)}{unit}", "end"), Text(LEFT - 4, HEIGHT - BOTTOM, "0", "end")]
    texts += [Text(round(LEFT + (i + 0.5) * slot, 1), HEIGHT - 4, b, "middle")
              for i, b in enumerate(buckets) if i % every == 0]
    return texts


def _y(value: float, top: float) -> float:
    return round(HEIGHT - BOTTOM - (HEIGHT - BOTTOM - TOP) * value / top, 1)


def _number(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 or value == int(value) else f"{value:,.1f}"
