"""The console's Jinja2 environment: templates from `templates/`, every value escaped.

Autoescape is on for every template, so whatever an EDR or a person wrote (an alert
title, a command line, a note) reaches the page as text. Templates translate with
`_()` / `ngettext()` (Babel catalogs, `edrtrial.web.i18n`) and show instants with `when`.
"""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from edrtrial.web import i18n

ENV = Environment(
    loader=PackageLoader("edrtrial.web", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    extensions=["jinja2.ext.i18n"],
    trim_blocks=True,
    lstrip_blocks=True,
)
ENV.install_gettext_callables(  # type: ignore[attr-defined]  # added by jinja2.ext.i18n
    gettext=i18n.gettext, ngettext=i18n.ngettext, newstyle=True
)
ENV.globals.update(when=i18n.when, time_left=i18n.time_left, span=i18n.span, say=i18n.say)


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """The page `template` for this request, with the console's common context (who is
    signed in, the CSRF token, the language, messages to show)."""
    from edrtrial.web.security import page_context

    html = ENV.get_template(template).render({**page_context(request), **context})
    return HTMLResponse(html, status_code=status_code)
