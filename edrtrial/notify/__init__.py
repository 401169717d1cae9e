"""Telling people: the outbox, its channels (mail, Teams, webhook) and the notices it carries."""
