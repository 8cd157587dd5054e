"""Accounts and sessions: passwords, tokens, the session cache, rate limits, audit."""
