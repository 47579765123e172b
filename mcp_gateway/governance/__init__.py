"""Who may do what: identities and their allowlists, keys, quotas, approvals, and the audit log."""
