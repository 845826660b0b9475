"""The import rules of docs/architecture.md ("Parts and arrows"), read from the source:

- each layer imports only the layers below it (LAYERS): no arrow runs back up (one named
  exception: runtime/http.py calls resolvers.auth.authenticate, ARROW_EXCEPTIONS);
- no cycle between modules (a lazy import inside a function counts: it is an arrow too);
- arq is reached through core/queue.py only, and by the tasks in jobs/;
- schema/ never touches the database: no tortoise, no query API of a model, no Scope.

Nothing is imported or executed: each module's syntax tree is read, so a rule broken in a
branch that is never run is still found.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# What each top-level package may import, besides itself (and any third-party library not
# restricted below). Read top-down: schema -> runtime -> resolvers -> services -> models ->
# domain -> core, and jobs -> services -> models -> domain -> core. runtime/ (the GraphQL
# runtime) imports core only, and reaches resolvers/ once (ARROW_EXCEPTIONS); schema/ uses its
# decorators (plain, guard, shared, direct) and its schema class. ops/, asgi.py and cli.py are
# the top: they wire the rest together and nothing imports them.
LAYERS: dict[str, set[str]] = {
    "core": set(),
    "domain": {"core"},
    "models": {"domain", "core"},
    "services": {"models", "domain", "core"},
    "resolvers": {"services", "models", "domain", "core"},
    "jobs": {"services", "models", "domain", "core"},
    "runtime": {"core"},
    "schema": {"runtime", "resolvers", "models", "domain", "core"},
    "ops": {"asgi", "schema", "runtime", "resolvers", "jobs", "services", "models", "domain", "core"},
}
# Single arrows allowed outside LAYERS: (importing module, imported module or name).
# runtime/http.py builds each request's Context, which needs the caller's principal.
ARROW_EXCEPTIONS = {
    ("runtime.http", "resolvers.auth"),
    ("runtime.http", "resolvers.auth.authenticate"),
}
TOP = {"asgi", "cli"}  # modules at the root: may import any layer
NOT_CODE = {"tests", "bench", "docs"}  # not part of the app (bench and tests may import anything)

# Third-party packages only some modules may import: module prefix -> who may.
RESTRICTED = {
    "arq": ("core.queue", "jobs"),
}

# schema/: a database call is a call of a model's query API (through a name imported from
# models/), a Scope, or any import of these.
QUERY_API = {
    "all",
    "annotate",
    "bulk_create",
    "bulk_update",
    "count",
    "create",
    "delete",
    "exclude",
    "exists",
    "fetch_related",
    "filter",
    "first",
    "get",
    "get_or_create",
    "get_or_none",
    "in_bulk",
    "raw",
    "refresh_from_db",
    "save",
    "select_for_update",
    "update_or_create",
    "values",
    "values_list",
}
SCHEMA_BANNED_MODULES = ("tortoise", "core.db", "core.bulk", "core.sqlite")
SCHEMA_BANNED_NAMES = {("core.scoping", "Scope")}


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, e.g. "resolvers.contacts"
    target: str  # what it imports, e.g. "jobs.segments" (or "models.contacts.Contact")
    line: int

    def __str__(self) -> str:
        return f"{self.module}:{self.line} imports {self.target}"


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(ROOT.glob("*.py")):
        if path.stem != "conftest":
            found[path.stem] = path
    for package in sorted(p.parent for p in ROOT.glob("*/__init__.py")):
        if package.name in NOT_CODE:
            continue
        for path in sorted(package.rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = _modules()
TREES = {name: ast.parse(path.read_text(), str(path)) for name, path in MODULES.items()}


def _imports(name: str, tree: ast.Module) -> list[Import]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [Import(name, alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(Import(name, node.module, node.lineno))
            found += [Import(name, f"{node.module}.{alias.name}", node.lineno) for alias in node.names]
    return found


IMPORTS = {name: _imports(name, tree) for name, tree in TREES.items()}


def _top(module: str) -> str:
    return module.split(".")[0]


def test_every_package_has_a_layer() -> None:
    packages = {_top(m) for m in MODULES} - TOP
    assert packages <= set(LAYERS), (
        f"packages with no layer (add them to LAYERS and docs/architecture.md): {packages - set(LAYERS)}"
    )


def test_arrows_run_one_way() -> None:
    upward = []
    for name, imports in IMPORTS.items():
        layer = _top(name)
        if layer in TOP:
            continue
        for imp in imports:
            target = _top(imp.target)
            if target not in MODULES and target not in LAYERS:  # not a first-party module or package
                continue
            if target != layer and target not in LAYERS[layer] and (name, imp.target) not in ARROW_EXCEPTIONS:
                upward.append(str(imp))
    assert not upward, "imports against the arrows (docs/architecture.md):\n" + "\n".join(sorted(set(upward)))


def test_no_import_cycles() -> None:
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for name, imports in IMPORTS.items():
        for imp in imports:
            if imp.target in MODULES and imp.target != name:
                graph[name].add(imp.target)
    cycles = _cycles(graph)
    assert not cycles, (
        "modules that import each other, directly or round a loop (move what they share one layer down):\n"
        + ("\n".join(", ".join(c) for c in cycles))
    )


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = len(index)
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(graph[successor]))))
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        components.append(sorted(component))
    return components


def test_restricted_libraries() -> None:
    wrong = []
    for name, imports in IMPORTS.items():
        for imp in imports:
            allowed = RESTRICTED.get(_top(imp.target))
            if allowed is not None and not any(name == a or name.startswith(a + ".") for a in allowed):
                wrong.append(str(imp))
    assert not wrong, "only core/queue.py and jobs/ talk to arq:\n" + "\n".join(sorted(set(wrong)))


def test_schema_does_not_touch_the_database() -> None:
    found = []
    for name, tree in TREES.items():
        if _top(name) != "schema":
            continue
        model_names: set[str] = set()  # names bound to models/ (modules or classes)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                module = node.module
                for alias in node.names:
                    if _top(module) == "models":
                        model_names.add(alias.asname or alias.name)
                    if (module, alias.name) in SCHEMA_BANNED_NAMES:
                        found.append(f"{name}:{node.lineno} imports {module}.{alias.name}")
                if module.startswith(SCHEMA_BANNED_MODULES):
                    found.append(f"{name}:{node.lineno} imports {module}")
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith(SCHEMA_BANNED_MODULES):
                        found.append(f"{name}:{node.lineno} imports {alias.name}")
                    if _top(alias.name) == "models":
                        model_names.add(alias.asname or _top(alias.name))
        # Names bound to the workspace Scope (`scope = info.context.scope`); an ASGI scope
        # (`websocket.scope`) is a dict, not the database.
        scopes = {
            target.id
            for node in ast.walk(tree)
            if isinstance(node, ast.Assign) and _is_workspace_scope(node.value)
            for target in node.targets
            if isinstance(target, ast.Name)
        }
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            receiver, method = node.func.value, node.func.attr
            if method in QUERY_API and _root(receiver) in model_names:
                found.append(f"{name}:{node.lineno} calls {ast.unparse(node.func)}() on a model")
            if _is_workspace_scope(receiver) or (isinstance(receiver, ast.Name) and receiver.id in scopes):
                found.append(f"{name}:{node.lineno} calls {ast.unparse(node.func)}() on the Scope")
    assert not found, "schema/ reads through resolvers (inside the workspace scope), never the database:\n" + "\n".join(
        found
    )


def _root(node: ast.expr) -> str | None:
    while isinstance(node, ast.Attribute | ast.Subscript | ast.Call):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def _is_workspace_scope(node: ast.expr) -> bool:
    """`ctx.scope`, `context.scope` or `info.context.scope`: the request's workspace Scope."""
    if not (isinstance(node, ast.Attribute) and node.attr == "scope"):
        return False
    base = node.value
    return (isinstance(base, ast.Name) and base.id in ("ctx", "context")) or (
        isinstance(base, ast.Attribute) and base.attr == "context"
    )
