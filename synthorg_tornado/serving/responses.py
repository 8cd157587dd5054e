"""What every response carries, whether a handler wrote it or the connection layer refused the
request before any handler ran: the security headers, and the problem+json media type."""

PROBLEM_CONTENT_TYPE = "application/problem+json"
SECURITY_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("Content-Security-Policy", "frame-ancestors 'self'"),
    ("Referrer-Policy", "same-origin"),
)
