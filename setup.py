from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent


def data_files(folder: str) -> list[tuple[str, list[str]]]:
    """Every file below `folder`, installed under share/synthorg-tornado/ (see resources.py)."""
    grouped: dict[str, list[str]] = {}
    for path in sorted((HERE / folder).rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            relative = path.relative_to(HERE)
            grouped.setdefault(str(Path("share/synthorg-tornado") / relative.parent), []).append(
                str(relative)
            )
    return sorted(grouped.items())


setup(
    name="synthorg-tornado",
    version="0.1.0",
    description="Multi-user lab server on Tornado: login, sessions, settings, live channels.",
    python_requires=">=3.11",
    packages=find_packages(include=["synthorg_tornado", "synthorg_tornado.*"]),
    data_files=data_files("alembic") + data_files("static"),
    install_requires=[
        # 6.5.5 at least: earlier releases parse some client input in quadratic time on the
        # IOLoop (cookies before 6.4.2, repeated header lines before 6.5.3) or let a malformed
        # multipart body flood the log (before 6.5.0) or run unbounded parts (before 6.5.5).
        "tornado>=6.5.5",
        "SQLAlchemy[asyncio]>=2.0",
        "alembic>=1.13",
        "aiosqlite>=0.20",
        "psycopg[binary]>=3.1",
        "bcrypt>=4.1",
        "PyJWT>=2.8",
        "PyYAML>=6.0",
        "prometheus-client>=0.20",
        "ua-parser>=1.0",
    ],
    extras_require={
        "test": [
            "pytest>=8,<10",
            "pytest-tornado>=0.8",
            "setuptools<81",
            "ruff>=0.5",
            # Drives Debian's /usr/bin/chromium; the browser builds it can download are never used.
            "playwright>=1.40",
            # axe-core (bundled in the package) for the pages' accessibility checks.
            "axe-playwright-python>=0.1.8",
            # Property tests for code that sees arbitrary client text (the log masking).
            "hypothesis>=6.100",
            # What Mozilla's HTTP Observatory scanner (httpobs, tests/test_observatory.py) imports.
            # httpobs itself pins 2018 versions that no longer build, so the Makefile installs it
            # with --no-deps on top of these.
            "requests>=2.27",
            "beautifulsoup4>=4.6",
            "publicsuffixlist>=0.7",
            "tld>=0.12",
            "celery>=5.2",
        ],
        "bench": ["jupyter_server>=2", "websockets>=12"],
    },
    entry_points={"console_scripts": ["synthorg-tornado=synthorg_tornado.cli.main:main"]},
)
