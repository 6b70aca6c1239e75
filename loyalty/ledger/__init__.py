"""Members' points: the append-only ledger, the earn engine, purchases and returns, redemptions, approvals, member profiles and file imports."""
