"""The rules of the house (docs/architecture.md, "Layout"), read from the source itself.

Every import counts, at module level or inside a function, except those under `if TYPE_CHECKING:`,
which never run. The checks:
- no import cycle between shopbus's modules;
- the plumbing (eventbus) imports no service app and no other room;
- the rooms built on the plumbing (observability) import no service app; services may use them;
- the composition root (shopbus_site) is imported by nothing but Django's machinery, except that any
  app's admin module may use the shared admin helpers in shopbus_site.admin;
- a service app reads another only through that app's selectors, and only where the architecture
  document names the exception.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.apps import apps
from django.conf import settings

ROOT = "shopbus_site"
PLUMBING = {"eventbus"}
# Rooms on top of the plumbing that any service may use, and that use no service themselves.
SHARED_ROOMS = {"observability", "sagas"}
SHARED_ADMIN_HELPERS = "shopbus_site.admin"
# (reader, owner): the reader may import the owner's selectors. Each is named, with its reason, in
# docs/architecture.md.
CROSS_SERVICE_READS = {("orders", "inventory")}


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    line: int


def project_packages(base_dir: Path) -> list[str]:
    return sorted(
        config.name
        for config in apps.get_app_configs()
        if Path(config.path).resolve().parent == base_dir.resolve() and "." not in config.name
    )


def modules_of(base_dir: Path, packages: Iterable[str]) -> dict[str, Path]:
    modules = {}
    for package in packages:
        for path in sorted((base_dir / package).rglob("*.py")):
            parts = list(path.relative_to(base_dir).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _is_type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and (
        (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING")
        or (isinstance(node.test, ast.Attribute) and node.test.attr == "TYPE_CHECKING")
    )


def _import_nodes(tree: ast.AST) -> Iterable[ast.Import | ast.ImportFrom]:
    pending = [tree]
    while pending:
        node = pending.pop()
        if _is_type_checking_block(node):
            pending.extend(node.orelse)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        pending.extend(ast.iter_child_nodes(node))


def imports_of(module: str, path: Path, known: set[str]) -> list[Import]:
    """Imports of other shopbus modules, each resolved to the module it loads (a submodule named in a
    `from` import counts as that submodule), plus the packages that loading it initialises."""
    is_package = path.name == "__init__.py"
    found = []
    for node in _import_nodes(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            if node.level:
                anchor = module.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        for target in targets:
            parts = target.split(".")
            for depth in range(1, len(parts) + 1):
                candidate = ".".join(parts[:depth])
                if candidate in known and candidate != module:
                    found.append(Import(module, candidate, node.lineno))
    return found


def import_graph(base_dir: Path, packages: Iterable[str]) -> list[Import]:
    modules = modules_of(base_dir, packages)
    known = set(modules)
    return [edge for module, path in modules.items() for edge in imports_of(module, path, known)]


def cycles(edges: list[Import]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    graph: dict[str, set[str]] = {}
    for edge in edges:
        graph.setdefault(edge.importer, set()).add(edge.imported)
        graph.setdefault(edge.imported, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in graph[node]:
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def violations(edges: list[Import], packages: Iterable[str]) -> list[str]:
    services = set(packages) - PLUMBING - SHARED_ROOMS - {ROOT}
    problems = []
    for edge in edges:
        source, target = edge.importer.split(".")[0], edge.imported.split(".")[0]
        where = f"{edge.importer}:{edge.line} imports {edge.imported}"
        if source == target:
            continue
        if target == ROOT:
            if not (edge.importer.endswith(".admin") and edge.imported in {ROOT, SHARED_ADMIN_HELPERS}):
                problems.append(f"{where}: nothing imports the composition root but Django")
        elif source in PLUMBING and target not in PLUMBING:
            problems.append(f"{where}: the plumbing imports no service app and no other room")
        elif source in SHARED_ROOMS and target in services:
            problems.append(f"{where}: a shared room imports no service app")
        elif source in services and target in services:
            reads_selectors = edge.imported in {target, f"{target}.selectors"}
            if not (reads_selectors and (source, target) in CROSS_SERVICE_READS):
                problems.append(f"{where}: a service reads another only through a named selectors exception")
    return problems


# --- the project itself ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def project_edges() -> tuple[list[Import], list[str]]:
    packages = project_packages(settings.BASE_DIR)
    return import_graph(settings.BASE_DIR, packages), packages


def test_the_layout_is_what_the_architecture_document_says(project_edges):
    _, packages = project_edges
    assert {"eventbus", "orders", "inventory", "payments", "notifications", "analytics", "audit", ROOT} <= set(packages)


def test_no_module_imports_itself_back(project_edges):
    edges, _ = project_edges
    assert len(edges) > 100  # the walk found the project's imports, not an empty tree
    assert cycles(edges) == []


def test_imports_point_down(project_edges):
    edges, packages = project_edges
    assert violations(edges, packages) == []


# --- the checks catch what they are for -----------------------------------------------------------


def _tree(tmp_path: Path, files: dict[str, str]) -> list[Import]:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for package in {name.split("/")[0] for name in files}:
        (tmp_path / package / "__init__.py").touch()
    return import_graph(tmp_path, {name.split("/")[0] for name in files})


def test_a_cycle_through_an_import_inside_a_function_is_found(tmp_path):
    edges = _tree(
        tmp_path,
        {
            "eventbus/services.py": "def wake():\n    from .tasks import relay\n",
            "eventbus/tasks.py": "from . import services\n",
            "eventbus/models.py": "from eventbus import services\n",
        },
    )
    assert cycles(edges) == [["eventbus.services", "eventbus.tasks"]]


def test_an_import_only_for_type_checking_is_not_a_cycle(tmp_path):
    edges = _tree(
        tmp_path,
        {
            "eventbus/registry.py": (
                "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .consumer import X\n"
            ),
            "eventbus/consumer.py": "from . import registry\n",
        },
    )
    assert cycles(edges) == []


def test_upward_and_sideways_imports_are_reported(tmp_path):
    edges = _tree(
        tmp_path,
        {
            "eventbus/devstack.py": "from orders import services\n",
            "orders/services.py": "from inventory.selectors import catalogue_entries\nfrom payments import models\n",
            "orders/admin.py": "from shopbus_site.admin import ReadOnlyAdmin\n",
            "orders/views.py": "from shopbus_site import settings\nfrom observability import timelines\n",
            "observability/timelines.py": "from eventbus import models\nfrom orders import models\n",
            "eventbus/models.py": "",
            "orders/models.py": "",
            "inventory/selectors.py": "",
            "payments/models.py": "",
            "shopbus_site/admin.py": "",
            "shopbus_site/settings.py": "",
        },
    )
    problems = violations(edges, ["eventbus", "observability", "orders", "inventory", "payments", ROOT])
    assert sorted(problem.split(": ")[0] for problem in problems) == [
        "eventbus.devstack:1 imports orders",
        "eventbus.devstack:1 imports orders.services",
        "observability.timelines:2 imports orders",
        "observability.timelines:2 imports orders.models",
        "orders.services:2 imports payments",
        "orders.services:2 imports payments.models",
        "orders.views:1 imports shopbus_site",
        "orders.views:1 imports shopbus_site.settings",
    ]
