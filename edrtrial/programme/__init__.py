"""The programme itself: participating companies, their tenants and trials, seat counts."""
