"""Who acts and what they may do: roles and permissions, users, sign-in sessions, the audit trail."""
