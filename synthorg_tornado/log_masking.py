"""Credentials out of log text, in time linear in the text, on text capped before any pattern runs.

Every request's access line, and every warning Tornado writes about a request, passes through
here on the IOLoop, and most of that text is the client's. So the rules are: a field is cut to a
few KiB first (with a visible marker); then each pattern makes one pass that never rescans what it
has passed and never backtracks more than a constant; nested encodings are recognised by the
patterns themselves, up to `DECODE_ROUNDS` levels, never by recursion. An earlier version
re-scanned every parameter's value for parameters inside it, by recursion: one request of
repeated `name%3D` cost seconds and ended in a RecursionError.
"""

from __future__ import annotations

import re
import string
from urllib.parse import unquote

from synthorg_tornado.auth.tokens import API_TOKEN_PREFIX

MASK = "***"
# Longest logged field (message, path, structured field); exception text keeps more, since
# the line that names the error is at its end.
MAX_FIELD_CHARS = 4096
MAX_TRACE_CHARS = 16384
# The leading space ends any value a pattern is matching, so the marker is never masked.
TRUNCATED = " ...[truncated {} characters]"
# `token=`, `token%3D`, `token%253D`, `token%25253D`: a URL inside a URL inside a URL.
DECODE_ROUNDS = 3
# A credential cut in two at the cap would escape the patterns that know its whole shape, so
# the partial word at a cut goes too, unless it is longer than any credential we issue.
_WORD_CHARS = string.ascii_letters + string.digits + "_-."
_MAX_PARTIAL_WORD = 512

# Query or form parameters whose value is a credential: by exact name, or by how the name ends.
SECRET_NAMES = frozenset({"token", "ticket", "password", "_xsrf", "access_token"})
SECRET_SUFFIXES = ("token", "ticket", "password", "passwd", "secret")

_ENCODED = rf"%(?:25){{0,{DECODE_ROUNDS - 1}}}"  # `%`, `%25`, `%2525`
# A parameter name starts after `?`, `&`, `;` or a space, or after `?`/`&` encoded up to
# DECODE_ROUNDS times, or at the start of the text. The delimiter is consumed rather than looked
# behind for: one cheap test per position instead of one per encoding.
_START = rf"(?:^|[?&;\s]|{_ENCODED}(?:3[fF]|26))"
# The name stops at the first `=`/`?`/`&` in any of those encodings; the possessive `{1,64}+`
# gives the engine nothing to backtrack into, so each start costs at most 64 steps.
_NAME_CHAR = rf"(?:(?!{_ENCODED}(?:3[dDfF]|26))[^=&;\s?#\"'<>])"
_PARAMETER = re.compile(rf"{_START}({_NAME_CHAR}{{1,64}}+)(?:=|{_ENCODED}3[dD])")
# A secret's value: up to the next separator, encoded or not.
_VALUE = re.compile(rf"(?:(?!{_ENCODED}26)[^&\s#\"'<>])*+")

# (pattern, replacement, a lower-case word the text must hold for the pattern to be tried):
# the words are cheap to look for, so a line without any (most access lines) costs little.
# Every repeat that a following token could also match is possessive, and the JWT may only
# start where a run of token characters starts: otherwise `eyJeyJeyJ...` rescans the run from
# each `eyJ` in it, which is quadratic.
_PATTERNS: tuple[tuple[re.Pattern[str], str, str], ...] = (
    # Authorization: Bearer x / token x / Basic x, as a header line or in a dict's repr.
    (
        re.compile(r"(?i)(authorization[\"']?\s*+[:=]\s*+[\"']?)(?:(?:bearer|token|basic)\s++)?[^\s\"',}]++"),
        rf"\1{MASK}",
        "authorization",
    ),
    (re.compile(r"(?i)((?:set-)?cookie[\"']?\s*+[:=]\s*+[\"']?)[^\r\n\"']++"), rf"\1{MASK}", "cookie"),
    (re.compile(r"(?i)\b(bearer\s++)[^\s\"',]++"), rf"\1{MASK}", "bearer"),
    # "password": "..." in JSON or a dict's repr.
    (
        re.compile(r"(?i)([\"'][a-z_]*(?:password|token|ticket|secret)[\"']\s*+:\s*+[\"'])[^\"']*+"),
        rf"\1{MASK}",
        ":",
    ),
    (
        re.compile(r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{4,}+\.eyJ[A-Za-z0-9_-]{4,}+\.[A-Za-z0-9_-]*+"),
        MASK,
        "eyj",
    ),  # JWTs
    (re.compile(re.escape(API_TOKEN_PREFIX) + r"[A-Za-z0-9_-]{8,}+"), MASK, API_TOKEN_PREFIX),
    (re.compile(r"\$2[abxy]?\$\d{2}\$[./A-Za-z0-9]{53}"), MASK, "$2"),  # bcrypt hashes
)
_PARAMETER_WORDS = ("token", "ticket", "passw", "secret", "_xsrf", "%")


def truncation_marker(dropped: int) -> str:
    return TRUNCATED.format(dropped)


def cap(text: str, limit: int = MAX_FIELD_CHARS, *, keep_end: bool = False, dropped: int = 0) -> str:
    """`text` cut to about `limit` characters, with a marker saying how many were dropped.

    `keep_end` keeps the last three quarters from the end (a traceback's last line names the
    error). `dropped` counts characters the caller already cut before calling.
    """
    head, tail, lost = _cut(text, limit, keep_end)
    lost += dropped
    return head + truncation_marker(lost) + tail if lost else head


def mask_field(text: str, limit: int = MAX_FIELD_CHARS, *, keep_end: bool = False) -> str:
    """What a log field becomes: capped first, then masked. The kept pieces are masked apart
    and the marker put in after, so no pattern can take the marker for part of a value."""
    head, tail, lost = _cut(text, limit, keep_end)
    if not lost:
        return mask_secrets(head)
    return mask_secrets(head) + truncation_marker(lost) + mask_secrets(tail)


def _cut(text: str, limit: int, keep_end: bool) -> tuple[str, str, int]:
    """The kept head and tail of `text`, and how many characters between them were dropped."""
    if len(text) <= limit:
        return text, "", 0
    if not keep_end:
        head = _without_partial_word(text[:limit], at_end=True)
        return head, "", len(text) - len(head)
    head = _without_partial_word(text[: limit // 4], at_end=True)
    tail = _without_partial_word(text[len(text) - (limit - limit // 4) :], at_end=False)
    return head, tail, len(text) - len(head) - len(tail)


def _without_partial_word(piece: str, *, at_end: bool) -> str:
    """`piece` less the run of token characters at its cut edge, when the run is short enough
    to be a credential cut in two (a longer run is no credential we issue) and something else
    is left to show."""
    edge = piece[-_MAX_PARTIAL_WORD - 1 :] if at_end else piece[: _MAX_PARTIAL_WORD + 1]
    trimmed = edge.rstrip(_WORD_CHARS) if at_end else edge.lstrip(_WORD_CHARS)
    if not trimmed:
        return piece
    cut = len(edge) - len(trimmed)
    return piece[: len(piece) - cut] if at_end else piece[cut:]


def mask_secrets(text: str) -> str:
    """`text` with every credential we can recognise replaced by `***`, in one linear pass per
    pattern. Callers cap the text first (`mask_field`); this function alone is what the
    benchmark (bench/log_mask.py) measures."""
    lower = text.lower()
    if any(word in lower for word in _PARAMETER_WORDS):
        text = _mask_parameters(text)
    for pattern, replacement, word in _PATTERNS:
        if word in lower:
            text = pattern.sub(replacement, text)
    return text


def _mask_parameters(text: str) -> str:
    """Masks the value of every secret `name=value`, plain or encoded.

    A value is never consumed unless it is masked: scanning goes on right after a harmless
    name's `=`, so a parameter nested in its value (`next=%2F%3Ftoken%3D...`) is met in the
    same pass. Every search starts where the previous one ended.
    """
    pieces: list[str] = []
    kept_from = 0
    match = _PARAMETER.search(text)
    while match is not None:
        if not _is_secret_name(match.group(1)):
            match = _PARAMETER.search(text, match.end())
            continue
        value = _VALUE.match(text, match.end())
        assert value is not None  # `*+` matches the empty string
        pieces += [text[kept_from : match.end()], MASK]
        kept_from = value.end()
        match = _PARAMETER.search(text, kept_from)
    pieces.append(text[kept_from:])
    return "".join(pieces)


def _is_secret_name(raw: str) -> bool:
    """`raw` (at most 64 characters) decoded at most DECODE_ROUNDS times: `%2574oken` is `token`."""
    name = raw
    for _ in range(DECODE_ROUNDS):
        if "%" not in name:
            break
        name = unquote(name)
    name = name.lower()
    return name in SECRET_NAMES or name.endswith(SECRET_SUFFIXES)
