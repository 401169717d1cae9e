"""The report's charts: matplotlib figures as inline SVG, in the report font, text kept as text.

`matplotlib.figure.Figure` is used directly (no pyplot): no global figure registry, nothing
to close, safe from several threads. The two rc settings below are read when a figure is
drawn; they are set once, at import, to the same values every time, and never changed:
- `svg.fonttype = "none"`: chart text stays <text> in the SVG, so WeasyPrint draws it with
  the PDF's `@font-face` font and it stays selectable and searchable in the PDF;
- the IPAex Gothic TTF (the PDF's own font file) is registered with matplotlib, so the
  chart's Japanese is measured and laid out in the font that will draw it.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence

import matplotlib
from matplotlib import font_manager
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from edrtrial.reports.pdf import FONT_FAMILY, font_path

font_manager.fontManager.addfont(str(font_path()))
matplotlib.rcParams["svg.fonttype"] = "none"
matplotlib.rcParams["svg.hashsalt"] = "edrtrial"  # the same report gives the same SVG
matplotlib.rcParams["font.family"] = [FONT_FAMILY]

# Severity colours, as the report's chips (high first).
SEVERITY_COLOURS = ("#b42318", "#e8590c", "#175cd3", "#98a2b3")
_INK = "#1f2328"
_GRID = "#d0d7de"
_PROLOGUE = re.compile(r"^.*?(?=<svg)", re.DOTALL)
# matplotlib's own sheet only sets line joins and caps; a mail must carry no <style>.
_IDS = re.compile(r'(\bid="|url\(#|href="#)')
_STYLE = re.compile(r'\sstyle="([^"]*)"')
_SHEET = re.compile(r"<defs>\s*<style[^>]*>.*?</style>\s*</defs>", re.DOTALL)


def _attributes(match: re.Match[str]) -> str:
    """matplotlib's `style="fill: #b42318; stroke: none"` as presentation attributes
    (`fill="#b42318" stroke="none"`): the same to an SVG renderer, while an inline style
    is also read as the page's CSS, which knows no `fill` and warns of each one."""
    pairs = (part.split(":", 1) for part in match.group(1).split(";") if ":" in part)
    return "".join(f' {name.strip()}="{value.strip()}"' for name, value in pairs)


def _svg(figure: Figure, prefix: str) -> str:
    """The figure as an <svg> element for inline use (no XML prologue, on one line), its
    ids prefixed: two charts in one page must not share a clip path's id."""
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None})
    text = _SHEET.sub("", _PROLOGUE.sub("", buffer.getvalue(), count=1), count=1)
    text = _IDS.sub(lambda m: f"{m.group(1)}{prefix}-", text)
    text = _STYLE.sub(_attributes, text)
    # One line: the templates show every value on one line, and SVG needs no line breaks.
    return " ".join(text.split("\n"))


def _style(axes: object) -> None:
    from matplotlib.axes import Axes

    assert isinstance(axes, Axes)
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)
    axes.tick_params(colors=_INK, labelsize=8)
    axes.set_axisbelow(True)


def daily_by_severity(
    days: Sequence[str],
    series: Sequence[tuple[str, Sequence[int]]],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
) -> str:
    """Stacked bars: detections per day, one colour per severity (`series` high first)."""
    figure = Figure(figsize=(7.0, 2.4))
    axes = figure.subplots()
    _style(axes)
    positions = list(range(len(days)))
    bottom = [0] * len(days)
    for (label, counts), colour in zip(series, SEVERITY_COLOURS, strict=False):
        # Only the days with detections get a bar: an empty bar is still a path to draw.
        shown = [i for i in positions if counts[i]]
        axes.bar(
            shown,
            [counts[i] for i in shown],
            bottom=[bottom[i] for i in shown],
            color=colour,
            label=label,
            width=0.75,
        )
        bottom = [b + c for b, c in zip(bottom, counts, strict=True)]
    step = max(1, (len(days) + 15) // 16)  # at most 16 day labels, whatever the length
    axes.set_xticks(positions[::step], [days[i] for i in positions[::step]])
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_ylim(0, max(max(bottom, default=0), 1) * 1.45)  # room for the legend
    axes.grid(axis="y", color=_GRID, linewidth=0.6)
    axes.set_title(title, fontsize=11, color=_INK, loc="left")
    axes.set_xlabel(xlabel, fontsize=8, color=_INK)
    axes.set_ylabel(ylabel, fontsize=8, color=_INK)
    axes.legend(fontsize=8, frameon=False, ncols=len(series), loc="upper right")
    figure.tight_layout()
    return _svg(figure, "daily")


def by_kind(labels: Sequence[str], counts: Sequence[int], *, title: str, xlabel: str) -> str:
    """Horizontal bars: detections by kind, the most frequent at the top, counts written."""
    figure = Figure(figsize=(7.0, 0.9 + 0.32 * max(len(labels), 1)))
    axes = figure.subplots()
    _style(axes)
    positions = list(range(len(labels)))[::-1]
    bars = axes.barh(positions, counts, color="#1f4e79", height=0.6)
    axes.bar_label(bars, labels=[str(c) for c in counts], padding=3, fontsize=8, color=_INK)
    axes.set_yticks(positions, list(labels))
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlim(0, max(max(counts, default=0), 1) * 1.15)
    axes.grid(axis="x", color=_GRID, linewidth=0.6)
    axes.set_title(title, fontsize=11, color=_INK, loc="left")
    axes.set_xlabel(xlabel, fontsize=8, color=_INK)
    figure.tight_layout()
    return _svg(figure, "kinds")
