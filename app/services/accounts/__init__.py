"""Accounts: people, their memberships and sign-ins, invitations, keys, and the audit log."""
