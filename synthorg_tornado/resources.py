"""Where the files that are not Python live: the migrations and the browser UI.

In a source checkout they sit next to the package (`alembic/`, `static/`, as the layout keeps
them). An installed wheel carries them as data files under `<prefix>/share/synthorg-tornado/`.
"""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

SHARE = Path("share") / "synthorg-tornado"


def resource_dir(name: str) -> Path:
    """The first existing `name` folder: the checkout's, then the installed one."""
    candidates = [
        Path(__file__).resolve().parent.parent / name,
        Path(sysconfig.get_path("data")) / SHARE / name,
        Path(sys.prefix) / SHARE / name,
    ]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"{name}/ not found; looked in: {', '.join(map(str, candidates))}")
