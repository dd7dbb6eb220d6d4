"""The shape of the package: layers point one way, no import circles, a lean server."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import acjob

PACKAGE = Path(acjob.__file__).parent


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every acjob module ``path`` imports, at the top or inside a function (what only a
    type checker reads is left out)."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):  # drop `if TYPE_CHECKING:` bodies
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            node.body = []
    here = _module(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def _graph() -> dict[str, set[str]]:
    paths = {_module(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {m for m in _imports(path) if m in paths and m != name}
            for name, path in paths.items()}


def test_no_import_circle() -> None:
    graph = _graph()
    circles: list[list[str]] = []

    def visit(node: str, trail: list[str]) -> None:
        for nxt in graph[node]:
            if nxt in trail:
                circles.append([*trail[trail.index(nxt):], nxt])
            elif nxt not in done:
                visit(nxt, [*trail, nxt])
        done.add(node)

    done: set[str] = set()
    for start in graph:
        if start not in done:
            visit(start, [start])
    assert circles == []


def test_layers_point_one_way() -> None:
    """model <- store <- backends/delivery <- monitor/sender/server <- cli."""
    graph = _graph()
    lower = {"acjob.model", "acjob.errors", "acjob.lifecycle", "acjob.wire", "acjob.address",
             "acjob.states", "acjob.ids", "acjob.progress",
             "acjob.version"}
    for name, imported in graph.items():
        if name in lower:
            assert all(m in lower or m == "acjob" for m in imported), name
        if name.startswith(("acjob.store", "acjob.backends", "acjob.delivery")):
            assert not any(m.startswith(("acjob.server", "acjob.monitor", "acjob.cli",
                                         "acjob.client", "acjob.receiver")) for m in imported), name
        if not name.startswith("acjob.cli"):
            assert not any(m.startswith("acjob.cli") for m in imported), name


def test_the_daemon_never_loads_the_client() -> None:
    code = ("import sys, acjob.daemon; "
            "print(sorted(m for m in sys.modules if m.startswith(('acjob.client', 'acjob.cli'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_a_client_without_a_configuration_file_never_loads_the_job_schema(
        tmp_path: Path) -> None:
    """A web service's `acjob.Client()` finds the private daemon without pydantic: the
    schemas (job model, configuration) are for the daemon and for checking input."""
    code = ("import sys, acjob; from acjob.client.core import resolve; "
            "resolve(None, None, autostart=False); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'pydantic'))")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "XDG_RUNTIME_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=env).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("module", ["acjob.cli.acjob", "acjob.cli.acpoll", "acjob.client"])
def test_the_tools_and_the_blocking_client_load_no_heavy_library(module: str,
                                                                 tmp_path: Path) -> None:
    """`acjob` starts on every run of a pipeline: it loads neither pydantic, nor httpx,
    nor asyncio (the blocking client speaks HTTP with h11 on plain sockets; the schemas
    stay in the daemon), which keeps its start near the interpreter's own."""
    code = (f"import sys, {module}; "
            "print(sorted({m.split('.')[0] for m in sys.modules} "
            "& {'pydantic', 'httpx', 'asyncio', 'rich'}))")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "XDG_RUNTIME_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=env).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("code", [
    "from acjob.cli.acjob import _parse; _parse(['-n', 'true'])",
    "from acjob.cli.acpoll import _parser; _parser().parse_args(['-i', '5', 'x'])",
    "from acjob.client import Client; Client(autostart=False)",
])
def test_acjob_and_the_blocking_client_load_no_slow_standard_module(code: str,
                                                                    tmp_path: Path) -> None:
    """Nor do `acjob`, `acpoll` and the blocking client load what costs a start tens of
    milliseconds: click (they parse with argparse), http.client with the email parser
    and ssl, subprocess (only to start the private daemon), shutil, pathlib (paths are
    found with os.path)."""
    code += ("; import sys; print(sorted({m.split('.')[0] for m in sys.modules} "
             "& {'click', 'http', 'email', 'ssl', 'subprocess', 'shutil', 'pathlib'}))")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "XDG_RUNTIME_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=env).stdout
    assert out.strip() == "[]"
