"""What edrtrial mails: report data assembled per report, rendered with Jinja2 templates."""
