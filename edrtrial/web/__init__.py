"""The web console: the desk's queue and tickets, the secretariat's applications, companies
and cohorts, the administrator's people, playbooks and audit log.

Server-rendered pages (Starlette, Jinja2) over the same services the CLI calls; htmx
(vendored in `static/`) refreshes parts of a page. No business rule lives here: a page
reads through the domain queries with the person's `Scope`, and an action calls the
service the CLI calls, with the person as the audit log's actor.
"""
