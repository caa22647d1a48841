"""Accounts: the user (email login), their memory settings, and what remains after erasure."""
