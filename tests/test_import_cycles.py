"""engine/ has no import cycle (issue 22): each module depends on others in one direction only,
the language from its registry (map/language.py) down to the generated code (map/codegen.py).

Imports inside functions count (a lazy import is still a dependency); those under
``if TYPE_CHECKING:`` do not.
"""
from __future__ import annotations

import ast
import itertools
from pathlib import Path

ENGINE = Path(__file__).resolve().parents[1] / "engine"


def module_name(path: Path) -> str:
    parts = path.relative_to(ENGINE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, modules: set[str]) -> set[str]:
    """The engine modules ``path`` imports, at any depth of its code."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
               for n in ast.walk(node)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {name for name in names if name in modules}
    return found - {module_name(path)}


def test_engine_has_no_import_cycle():
    files = {module_name(path): path for path in ENGINE.rglob("*.py")}
    graph = {name: imports(path, set(files)) for name, path in files.items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(name: str, trail: list[str]) -> None:
        state[name] = 1
        for target in sorted(graph[name]):
            if state.get(target) == 1:
                cycles.append(trail[trail.index(target):] + [target] if target in trail else [name, target])
            elif target not in state:
                visit(target, trail + [target])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    # a package importing its own submodules (engine/__init__ re-exports) is not a cycle of modules
    cycles = [c for c in cycles if not any(a.startswith(b + ".") or b.startswith(a + ".") for a, b in itertools.pairwise(c))]
    assert not cycles, "\n".join(" -> ".join(cycle) for cycle in cycles)


def test_the_generated_code_does_not_import_the_registry():
    files = {module_name(path): path for path in ENGINE.rglob("*.py")}
    assert "engine.map.language" not in imports(files["engine.map.codegen"], set(files))
    assert "engine.map.codegen" in imports(files["engine.map.language"], set(files))
