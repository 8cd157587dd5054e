"""The code's shape, checked: short modules, no import cycle, and layers that point one way.

A newcomer finds each room by the package's name only while what sits below never reaches up:
`serving/` and the services (`auth`, `settings`, `realtime`) never import a handler, `realtime`
never imports `auth`, and nothing below the handlers imports Tornado's web layer. Imports made
only for type checking (`if TYPE_CHECKING:`) are not counted: they never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.servers import REPO

PACKAGE = REPO / "synthorg_tornado"
MAX_LINES = 400

# Each unit may import only from the units listed after it; a unit not named is not constrained.
ABOVE = ("cli", "server", "app", "services", "handlers")
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "serving": ABOVE,
    "auth": (*ABOVE, "serving"),
    "settings": (*ABOVE, "serving"),
    "realtime": (*ABOVE, "serving", "auth", "settings"),
    "accounts": (*ABOVE, "serving", "auth", "settings", "realtime"),
    "db": (*ABOVE, "serving", "auth", "settings", "realtime", "accounts"),
    "config": (*ABOVE, "serving", "auth", "settings", "realtime", "accounts", "db", "process"),
    "errors": (*ABOVE, "serving", "auth", "settings", "realtime", "accounts", "db", "config"),
    "clock": (*ABOVE, "serving", "auth", "settings", "realtime", "accounts", "db", "config", "errors"),
}
WEB_LAYER = {"cli", "server", "app", "handlers", "__main__"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def unit_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def run_time_imports(path: Path) -> set[str]:
    """The modules named by the imports that run: at module level, and inside functions."""
    tree = ast.parse(path.read_text())
    type_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for inner in ast.walk(node)
    }
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def module_level_imports(path: Path) -> set[str]:
    """The package's modules imported while this one loads: what can make a cycle."""
    found: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                found.add(node.module)
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, (ast.If, ast.Try)):
                visit(node.body)
                visit(node.orelse)
                for handler in getattr(node, "handlers", []):
                    visit(handler.body)

    visit(ast.parse(path.read_text()).body)
    return {name for name in found if name in MODULES}


def test_no_module_passes_400_lines() -> None:
    long = {
        name: n for name, path in MODULES.items() if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


def test_no_import_cycle() -> None:
    graph = {name: module_level_imports(path) - {name} for name, path in MODULES.items()}
    done: set[str] = set()

    def walk(name: str, trail: list[str]) -> None:
        if name in trail:
            pytest.fail("import cycle: " + " -> ".join([*trail[trail.index(name) :], name]))
        if name in done:
            return
        for imported in sorted(graph[name]):
            walk(imported, [*trail, name])
        done.add(name)

    for name in graph:
        walk(name, [])


@pytest.mark.parametrize("unit", sorted(FORBIDDEN))
def test_lower_layers_never_import_higher_ones(unit: str) -> None:
    wrong = {
        name: sorted(
            imported
            for imported in run_time_imports(path)
            if unit_of(imported) in FORBIDDEN[unit] and imported.startswith("synthorg_tornado.")
        )
        for name, path in MODULES.items()
        if unit_of(name) == unit
    }
    assert {name: found for name, found in wrong.items() if found} == {}


def test_nothing_below_the_handlers_imports_tornados_web_layer() -> None:
    wrong = sorted(
        name
        for name, path in MODULES.items()
        if unit_of(name) not in WEB_LAYER and {"tornado.web", "tornado.websocket"} & run_time_imports(path)
    )
    assert wrong == []


def test_the_top_level_holds_packages_and_a_few_shared_modules() -> None:
    """What moved into `serving/`, `process/`, `cli/`, `config/` and `auth/throttle/` stays there."""
    flat = {path.stem for path in PACKAGE.glob("*.py")}
    assert not flat & {
        "connections",
        "accepting",
        "http_limits",
        "proxies",
        "workers",
        "runtime",
        "systemd",
        "config",
        "config_rules",
        "config_sources",
    }
    assert not {name for name in flat if name.startswith("cli")}
    assert not {path.stem for path in (PACKAGE / "auth").glob("*.py")} & {
        "ratelimit",
        "lab_throttle",
        "throttle_audit",
    }
