"""Getting EDR records into the store: polling a tenant, upserts, quarantine, inventory."""
