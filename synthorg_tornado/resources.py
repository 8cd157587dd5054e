"""Where the files that are not Python live: the migrations and the browser UI.

In a source checkout they sit next to the package (`alembic/`, `static/`, as the layout keeps
them). An installed wheel carries them as data files under `<prefix>/share/synthorg-tornado/`.

A folder counts only if it holds our own marker file: next to an installed package, the parent
folder is `site-packages`, whose `alembic/` is the Alembic library itself, not our migrations.
"""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

SHARE = Path("share") / "synthorg-tornado"
# A file that only our copy of each folder has.
MARKERS = {
    "alembic": Path("versions") / "0001_initial.py",
    "static": Path("login.html"),
}


def resource_dir(name: str) -> Path:
    """The first `name` folder that is ours: the checkout's, then the installed one."""
    candidates = [
        Path(__file__).resolve().parent.parent / name,
        Path(sysconfig.get_path("data")) / SHARE / name,
        Path(sys.prefix) / SHARE / name,
    ]
    marker = MARKERS.get(name, Path())
    for candidate in candidates:
        if (candidate / marker).exists() and candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"our {name}/ folder was not found; looked in: {', '.join(map(str, candidates))}")
