"""What an account is: its roles, and the immutable snapshot of it that every process caches.

Below both `auth` (which changes accounts) and `realtime` (which shows who is online), so neither
imports the other to learn what a user looks like.
"""
