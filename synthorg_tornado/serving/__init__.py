"""Serving HTTP: accepting connections, bounding requests, and trusting proxies.

This package decides what reaches the application at all: how many connections are accepted,
how large and how slow a request may be before it is refused, and which peers may speak for a
client through `X-Forwarded-*`. It sits below the handlers and knows nothing of them.
"""
