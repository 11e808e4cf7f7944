"""The structure the README's "Architecture" section promises, checked on the code itself.

The layer contracts run as `lint-imports` in the test command (pyproject.toml); these tests add
what import-linter does not check: no import cycle anywhere, and every object named in a URL is
fetched through an access helper.
"""

from __future__ import annotations

import ast
from pathlib import Path

import grimp
import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("gallery", "recognition", "faceweb", "evaluation", "bench")


def _cycles(graph: grimp.ImportGraph, modules: set[str]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for root in sorted(modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root) & modules)))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    imported = graph.find_modules_directly_imported_by(child) & modules
                    work.append((child, iter(sorted(imported))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
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
                    found.append(sorted(component))
    return found


def test_it_has_no_import_cycle() -> None:
    graph = grimp.build_graph(*PACKAGES)
    modules = {m for m in graph.modules if m.split(".")[0] in PACKAGES}
    assert _cycles(graph, modules) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = grimp.ImportGraph()
    for module in ("a", "b", "c", "d"):
        graph.add_module(module)
    graph.add_import(importer="a", imported="b")
    graph.add_import(importer="b", imported="c")
    graph.add_import(importer="c", imported="a")
    graph.add_import(importer="c", imported="d")
    assert _cycles(graph, {"a", "b", "c", "d"}) == [["a", "b", "c"]]


VIEW_MODULES = sorted(
    [
        *(REPO / "gallery" / "views").glob("*.py"),
        REPO / "gallery" / "api.py",
        *(REPO / "recognition" / "web").glob("*.py"),
    ]
)


def _unguarded_ids(path: Path) -> list[str]:
    """Uses of a `*_id` URL argument that do not go straight into an `access_*` helper."""
    tree = ast.parse(path.read_text())
    local = {f.name for f in ast.walk(tree) if isinstance(f, ast.FunctionDef)}
    problems = []
    for func in ast.walk(tree):
        if not isinstance(func, ast.FunctionDef) or func.name.startswith("access_"):
            continue
        ids = {a.arg for a in func.args.args if a.arg.endswith("_id")}
        if not ids:
            continue
        guarded: set[int] = set()
        for call in ast.walk(func):
            if isinstance(call, ast.Call):
                name = getattr(call.func, "id", getattr(call.func, "attr", ""))
                # An access helper, or a function of the same module (it is checked itself).
                if name.startswith("access_") or name in local:
                    guarded.update(id(arg) for arg in call.args)
        for node in ast.walk(func):
            if isinstance(node, ast.Name) and node.id in ids and id(node) not in guarded:
                problems.append(f"{path.name}:{node.lineno} {func.name}({node.id})")
    return problems


@pytest.mark.parametrize("path", VIEW_MODULES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_object_in_a_url_goes_through_an_access_helper(path: Path) -> None:
    assert _unguarded_ids(path) == []


ACTION_MODULES = sorted(
    [*(REPO / "gallery" / "actions").glob("*.py"), *(REPO / "recognition" / "actions").glob("*.py")]
)
# do_process_photo(s) and do_add_face run the models first and write each photo in one
# `transaction.atomic()` block: a decorator would hold the photos' rows locked while the networks
# run (and a batch would be all or nothing). do_move_photos writes in one durable transaction
# (_move_photos) and removes the files it linked when that transaction rolls back, which it could
# not see from inside a decorator's.
# do_reembed_batch and do_finish_reembed (recognition/actions/models.py) run the models photo by
# photo and store each photo on its own, so a crash keeps what was staged; the switch itself is
# one transaction (_switch).
NOT_DECORATED = {
    "do_process_photo",
    "do_process_photos",
    "do_add_face",
    "do_move_photos",
    "do_reembed_batch",
    "do_finish_reembed",
}


@pytest.mark.parametrize("path", ACTION_MODULES, ids=lambda p: f"{p.parent.parent.name}/{p.name}")
def test_every_action_is_atomic(path: Path) -> None:
    tree = ast.parse(path.read_text())
    bare = [
        f.name
        for f in tree.body
        if isinstance(f, ast.FunctionDef)
        and f.name.startswith("do_")
        and f.name not in NOT_DECORATED
        and "transaction.atomic" not in {ast.unparse(d) for d in f.decorator_list}
    ]
    assert bare == []
