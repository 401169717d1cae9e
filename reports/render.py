"""Rendering report data to HTML and plain text with the package's Jinja2 templates."""

from __future__ import annotations

from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from edrtrial.reports.detection import DetectionReport


@cache
def environment() -> Environment:
    """The one template environment: HTML templates (*.html.j2) autoescaped, text ones not."""
    return Environment(
        loader=PackageLoader("edrtrial.reports", ""),
        autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
        undefined=StrictUndefined,  # a misspelt field fails the render instead of going blank
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render(template: str, **context: Any) -> str:
    """Render one packaged template."""
    return environment().get_template(template).render(**context)


def render_detection_report_html(report: DetectionReport) -> str:
    """The report as a complete HTML document with inline styles, for the mail's HTML part."""
    return render("detection_report.html.j2", r=report)


def render_detection_report_text(report: DetectionReport) -> str:
    """The report as plain text, for the mail's text part."""
    return render("detection_report.txt.j2", r=report)
