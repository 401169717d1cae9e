"""The support desk: ticket states, intake of triaged alerts, operator steps, escalation, SLA."""
