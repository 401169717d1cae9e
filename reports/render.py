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
    return env


def render(template: str, **context: Any) -> str:
    """Render one packaged template."""
    return environment().get_template(template).render(**context)


def render_detection_report_html(report: DetectionReport) -> str:
    """The report as a complete HTML document with inline styles, for the mail's HTML part."""
    return render("detection_report.html.j2", r=report)


def render_detection_report_text(report: DetectionReport) -> str:
    """The report as plain text, for the mail's text part."""
    return render("detection_report.txt.j2", r=report)


def detection_report_pdf(report: DetectionReport) -> bytes:
    """The report as a PDF: the same template laid out for print, in the report font."""
    html = render_detection_report_html(report)
    style = f"<style>{font_face_css()} body {{ font-family: '{FONT_FAMILY}'; }}</style>"
    return html_to_pdf(html.replace("</head>", f"{style}</head>", 1))


def detection_report_mail(report: DetectionReport) -> RenderedMail:
    """The detection report as a mail: Japanese subject, plain text and the HTML alternative."""
    subject = f"{SUBJECT_PREFIX}検知レポート（{report.period_label}）{report.company_name}"
    return RenderedMail(
        subject=subject,
        text=render_detection_report_text(report),
        html=render_detection_report_html(report),
    )
