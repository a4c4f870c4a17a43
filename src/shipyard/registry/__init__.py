"""Models, versions, aliases, lineage and the append-only ledger."""
