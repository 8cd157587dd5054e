"""What a session's user agent says about its device, so people recognise their own sessions.

Parsed on the server by `ua-parser` (the rules of Browserscope's parser, kept up to date by its
project), not by regexes of our own. Its first parse compiles every rule (about half a second of
CPU) and later ones take about a millisecond, so parsing runs in an executor, never on the
IOLoop, and results are cached by user agent: a lab has few distinct browsers.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterable
from typing import Any

import ua_parser

# The longest user agent stored or parsed. Real ones are under 300 characters; the parser's
# rules are regular expressions whose cost grows with the text (about 5 ms at this length,
# 80 ms at 8 KiB for some shapes), so a client-chosen header is cut before it reaches them.
MAX_USER_AGENT = 512
MOBILE_OS = frozenset({"Android", "iOS", "iPadOS", "Windows Phone", "KaiOS", "Chrome OS Mobile"})


def _version(part: Any) -> str | None:
    numbers = [getattr(part, name, None) for name in ("major", "minor", "patch")]
    shown = [n for n in numbers if n]
    return ".".join(shown) if shown else None


@functools.lru_cache(maxsize=4096)
def describe(user_agent: str) -> dict[str, Any]:
    """`{browser, browser_version, os, os_version, device, mobile}`; unknown parts are null."""
    result = ua_parser.parse(user_agent[:MAX_USER_AGENT]) if user_agent else None
    agent = result.user_agent if result else None
    system = result.os if result else None
    device = result.device if result else None
    device_name = device.family if device and device.family != "Other" else None
    return {
        "browser": agent.family if agent and agent.family != "Other" else None,
        "browser_version": _version(agent) if agent else None,
        "os": system.family if system and system.family != "Other" else None,
        "os_version": _version(system) if system else None,
        "device": device_name,
        "mobile": bool(system and system.family in MOBILE_OS),
    }


async def describe_many(user_agents: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Every distinct user agent described, off the IOLoop."""
    wanted = sorted(set(user_agents))
    loop = asyncio.get_running_loop()
    described = await loop.run_in_executor(None, lambda: [describe(agent) for agent in wanted])
    return dict(zip(wanted, described, strict=True))
