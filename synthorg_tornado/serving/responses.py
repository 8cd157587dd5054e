"""What every response carries, whether a handler wrote it or the connection layer refused the
request before any handler ran: the security headers, and the problem+json media type."""

PROBLEM_CONTENT_TYPE = "application/problem+json"

# The pages load only their own files: no inline script, handler attribute, `javascript:` URL,
# `eval` or inline style runs, so a value that slips into the HTML unescaped cannot act. `data:`
# images are Pico's SVG icons (checkboxes, selects, details). `connect-src 'self'` covers the
# WebSocket too: CSP 3 matches ws:/wss: of the page's own host and port to 'self' (every current
# browser does). `base-uri 'none'` stops an injected <base> from moving the pages' relative
# script URLs elsewhere. API answers carry the same policy: it costs nothing and a JSON body
# opened as a document then runs nothing either.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'self'",
    )
)
SECURITY_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
    ("Referrer-Policy", "same-origin"),
)
