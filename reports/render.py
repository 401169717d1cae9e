"""Rendering report data to HTML and plain text with the package's Jinja2 templates."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, pass_eval_context, select_autoescape
from jinja2.nodes import EvalContext
from markupsafe import Markup, escape

from edrtrial.reports.detection import DetectionReport
from edrtrial.reports.pdf import FONT_FAMILY, font_face_css, html_to_pdf
from edrtrial.untrusted import one_line, visible

SUBJECT_PREFIX = "【EDR体験】"
SUBJECT_PREFIX_EN = "[EDR trial]"


@dataclass(frozen=True, slots=True)
class RenderedMail:
    """A finished mail body: what `outbox.enqueue` takes."""

    subject: str
    text: str
    html: str | None = None


def _shown(value: Any) -> Any:
    """Every value a template prints, on one line, with control characters made visible.

    Autoescaping keeps an alert's `<script>` as text; this keeps its bidi override (which
    makes "invoice\u202efdp.exe" read as "invoiceexe.pdf") and its escape sequences from
    acting on whoever reads the mail or the report, and its line breaks from writing lines
    of their own (a title that adds a "state: closed" line to a desk notice). A free-text
    body keeps its line breaks only through the `body` filter.
    """
    if isinstance(value, Markup):
        return Markup(visible(str(value)))  # controls are not HTML syntax: still safe
    return one_line(value) if isinstance(value, str) else value


@pass_eval_context
def _body(context: EvalContext, value: Any, indent: int = 0) -> Markup:
    """A free-text body (a summary field, a note, a message): its line breaks kept, each
    line after the first indented by `indent` spaces, controls shown as marks."""
    text = visible(str(value).replace("\r\n", "\n"))
    lines = [str(escape(line)) if context.autoescape else line for line in text.split("\n")]
    return Markup(("\n" + " " * indent).join(lines))


@cache
def environment() -> Environment:
    """The one template environment: HTML templates (*.html.j2) autoescaped, text ones not."""
    env = Environment(
        loader=PackageLoader("edrtrial.reports", ""),
        autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
        undefined=StrictUndefined,  # a misspelt field fails the render instead of going blank
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        finalize=_shown,
    )
    env.filters["body"] = _body
    # The print layout's font (report_layout.html.j2): the rule is ours, not a value.
    env.globals["report_font_css"] = lambda: Markup(font_face_css())
    env.globals["report_font_family"] = FONT_FAMILY
    return env


def render(template: str, **context: Any) -> str:
    """Render one packaged template."""
    return environment().get_template(template).render(**context)


def detection_report_charts(report: DetectionReport) -> dict[str, Markup] | None:
    """The report's two charts as inline SVG, or None for a period without detections (the
    report then says there is nothing to chart instead of showing empty axes)."""
    if report.total == 0:
        return None
    from edrtrial.reports import charts  # imported on use: matplotlib is slow to load

    w = report.words
    series = [
        (w["chip"].format(label=s.label), [day.counts[i] for day in report.days])
        for i, s in enumerate(report.severity_counts)
    ]
    daily = charts.daily_by_severity(
        [day.label for day in report.days],
        series,
        title=w["chart_daily"],
        xlabel=w["chart_day"],
        ylabel=w["chart_count"],
    )
    kinds = charts.by_kind(
        [k.label for k in report.kinds],
        [k.count for k in report.kinds],
        title=w["chart_kinds"],
        xlabel=w["chart_count"],
    )
    # Our own SVG, whose only words are the report's fixed wording and plain kind names.
    return {"daily": Markup(daily), "kinds": Markup(kinds)}


def render_detection_report_html(
    report: DetectionReport, charts: dict[str, Markup] | None = None
) -> str:
    """The report as a complete HTML document with inline styles, for the mail's HTML part
    (its charts made here unless given)."""
    if charts is None and report.total:
        charts = detection_report_charts(report)
    return render("detection_report.html.j2", r=report, charts=charts, print_layout=False)


def render_detection_report_text(report: DetectionReport) -> str:
    """The report as plain text, for the mail's text part."""
    return render("detection_report.txt.j2", r=report)


def render_detection_report_print(
    report: DetectionReport, charts: dict[str, Markup] | None = None
) -> str:
    """The report as the PDF's HTML: the print layout (letterhead, A4, page numbers)."""
    if charts is None and report.total:
        charts = detection_report_charts(report)
    return render(
        "detection_report_pdf.html.j2",
        r=report,
        charts=charts,
        print_layout=True,
        letterhead=report.letterhead,
        title=report.title,
        generated_at=report.generated_at,
        language=report.language,
    )


def detection_report_pdf(report: DetectionReport) -> bytes:
    """The report as a printable PDF in the report font, charts included."""
    return html_to_pdf(render_detection_report_print(report))


def detection_report_mail(report: DetectionReport) -> RenderedMail:
    """The detection report as a mail in the company's language: subject, plain text, and
    the HTML alternative (the PDF is attached by whoever queues it)."""
    return RenderedMail(
        subject=report.subject,
        text=render_detection_report_text(report),
        html=render_detection_report_html(report),
    )
