"""The layer rule of sagas/ (docs/internals.md#layers): a module imports only from its own layer or those below, the
import graph has no cycle, and a function-local import is one of the few Django's app loading requires."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "sagas"

# Bottom to top. A module belongs to the first layer that names it or a package above it.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "foundation",
        (
            "sagas.exceptions",
            "sagas.conf",
            "sagas.celeryconf",
            "sagas.retry",
            "sagas.failures",
            "sagas.outcomes",
            "sagas.lazy",
            "sagas.schemas",
            "sagas.jsonsafe",
            "sagas.numbers",
            "sagas.masking",
            "sagas.logs",
            "sagas.states",
            "sagas.timelimits",
            "sagas.connections",
            "sagas.workers",
            "sagas.tracing",
        ),
    ),
    (
        "declarations",
        (
            "sagas.registry",
            "sagas.definitions",
            "sagas.engine",
            "sagas.eager",
            "sagas.choreography",
            "sagas.breakers",
            "sagas.leases",
            "sagas.backlog",
            "sagas.metrics",
        ),
    ),
    ("storage", ("sagas.models", "sagas.selectors", "sagas.eventlog", "sagas.outbox", "sagas.schedules")),
    ("services", ("sagas.services",)),
    ("execution", ("sagas.runner", "sagas.recovery", "sagas.retention", "sagas.operations")),
    ("tasks", ("sagas.tasks", "sagas.delivery")),
    (
        "top",
        (
            "sagas.apps",
            "sagas.checks",
            "sagas.health",
            "sagas.diagnose",
            "sagas.collectors",
            "sagas.views",
            "sagas.admin",
            "sagas.api",
            "sagas.management",
            "sagas.testing",
            "sagas",
        ),
    ),
]

# The function-local imports of the framework's own modules that may stay, each for a reason of Django's app loading.
ALLOWED_LOCAL_IMPORTS: dict[tuple[str, str], str] = {
    **{
        ("sagas.apps", target): "Django imports the AppConfig module before the models are ready; ready() imports"
        for target in (
            "sagas.checks",
            "sagas.conf",
            "sagas.definitions",
            "sagas.delivery",
            "sagas.metrics",
            "sagas.recovery",
            "sagas.registry",
            "sagas.retention",
            "sagas.services",
            "sagas.tasks",
            "sagas.tracing",
        )
    },
    ("sagas.operations", "sagas.services"): "the package binds sagas.cancel/retry/resolve while Django loads it",
    ("sagas.testing.worker_main", "sagas.runner"): "the test worker's entry point runs before Django is set up",
    ("sagas.testing.worker_main", "sagas.testing.faults"): "the test worker's entry point runs before Django is set up",
    ("sagas.testing.worker_main", "sagas.testing.spans"): "only the tests that trace need the OpenTelemetry SDK",
}


@dataclass(frozen=True)
class Import:
    source: str
    target: str
    line: int
    local: bool  # inside a function


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if "migrations" in parts:
            continue
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def layer_of(module: str) -> int:
    for number, (_, members) in enumerate(LAYERS):
        if any(module == member or module.startswith(member + ".") for member in members):
            return number
    raise AssertionError(f"{module} is in no layer: add it to LAYERS here and to docs/internals.md")


class _Collector(ast.NodeVisitor):
    def __init__(self, module: str, is_package: bool, known: dict[str, Path]) -> None:
        self.module, self.is_package, self.known = module, is_package, known
        self.depth = 0  # functions entered
        self.imports: list[Import] = []

    def visit_If(self, node: ast.If) -> None:
        if "TYPE_CHECKING" in ast.unparse(node.test):  # annotations only: not a dependency at run time
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, node.lineno)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:
            parts = self.module.split(".")
            parts = parts if self.is_package else parts[:-1]
            parts = parts[: len(parts) - node.level + 1]
            base = ".".join([*parts, *([node.module] if node.module else [])])
        for alias in node.names:
            candidate = f"{base}.{alias.name}"
            self._add(candidate if candidate in self.known else base, node.lineno)

    def visit_Call(self, node: ast.Call) -> None:
        # importlib.import_module("sagas.x"): the lazy façades' imports are imports too.
        if (
            isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            self._add(node.args[0].value, node.lineno)
        self.generic_visit(node)

    def _add(self, target: str, line: int) -> None:
        if target != "sagas" and not target.startswith("sagas."):
            return
        while target not in self.known and "." in target:
            target = target.rsplit(".", 1)[0]
        if target != self.module:
            self.imports.append(Import(self.module, target, line, local=self.depth > 0))


def imports() -> Iterator[Import]:
    known = modules()
    for name, path in sorted(known.items()):
        collector = _Collector(name, path.name == "__init__.py", known)
        collector.visit(ast.parse(path.read_text(), str(path)))
        yield from collector.imports


def lazy_exports(package: str) -> set[str]:
    """The modules a lazy façade names in its _EXPORTS table (imported on first attribute access)."""
    tree = ast.parse(modules()[package].read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "_EXPORTS" for t in node.targets):
            assert isinstance(node.value, ast.Dict)
            return {str(value.value) for value in node.value.values if isinstance(value, ast.Constant)}
    return set()


def test_every_module_is_in_a_layer() -> None:
    for module in modules():
        layer_of(module)


def test_no_module_imports_from_a_layer_above_its_own() -> None:
    upward = [
        f"{i.source} ({LAYERS[layer_of(i.source)][0]}) imports {i.target} ({LAYERS[layer_of(i.target)][0]}), "
        f"line {i.line}"
        for i in imports()
        if layer_of(i.target) > layer_of(i.source)
    ]
    assert not upward, "upward imports:\n" + "\n".join(upward)


def test_the_import_graph_has_no_cycle() -> None:
    graph: dict[str, set[str]] = {}
    for found in imports():
        graph.setdefault(found.source, set()).add(found.target)
    for package in ("sagas", "sagas.testing"):  # what the façades import on first use
        graph.setdefault(package, set()).update(lazy_exports(package))
    visiting: list[str] = []
    done: set[str] = set()

    def visit(module: str) -> None:
        if module in done:
            return
        if module in visiting:
            cycle = [*visiting[visiting.index(module) :], module]
            raise AssertionError("import cycle: " + " -> ".join(cycle))
        visiting.append(module)
        for target in sorted(graph.get(module, ())):
            visit(target)
        visiting.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)


def test_function_local_imports_are_only_those_djangos_app_loading_requires() -> None:
    local = {(i.source, i.target): i.line for i in imports() if i.local}
    unexpected = [f"{source} -> {target}, line {line}" for (source, target), line in local.items()
                  if (source, target) not in ALLOWED_LOCAL_IMPORTS]  # fmt: skip
    assert not unexpected, "function-local imports (move them to the top, or add a reason here):\n" + "\n".join(
        unexpected
    )
    stale = sorted(set(ALLOWED_LOCAL_IMPORTS) - set(local))
    assert not stale, f"allowed but no longer there (remove them from ALLOWED_LOCAL_IMPORTS): {stale}"


def test_the_facades_export_what_they_name() -> None:
    import sagas
    import sagas.testing

    for package in (sagas, sagas.testing):
        for name in package.__all__:
            assert getattr(package, name) is not None, f"{package.__name__}.{name}"
    assert sagas.retry.__module__ == "sagas.operations"  # the function, not the module sagas.retry


@pytest.mark.parametrize("module", ["sagas", "sagas.apps", "sagas.testing.worker_main", "sagas.definitions"])
def test_what_django_imports_before_its_apps_are_ready_loads_no_model(module: str) -> None:
    code = (
        "import importlib, sys\n"
        f"importlib.import_module({module!r})\n"
        "loaded = sorted(m for m in sys.modules if m in ('sagas.models', 'sagas.services', 'sagas.runner'))\n"
        "print(','.join(loaded))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=PACKAGE.parent, env={}
    )
    assert out.stdout.strip() == "", f"importing {module} loaded {out.stdout.strip()}"
