"""The library as the README shows it: every name its "Library" code uses is exported by ``engine``,
and every error eventmap raises on purpose can be caught as ``engine.EventmapError``."""
from __future__ import annotations

import ast
import builtins
import importlib
import inspect
import pkgutil
import re

from conftest import REPO

import engine

# the example's inputs: data the reader brings, not names eventmap provides
INPUTS = {"event", "events", "payload", "outcomes_for_planhat"}


def library_block() -> str:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Library\n", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_every_name_the_readme_library_section_imports_is_exported():
    tree = ast.parse(library_block())
    imported = [alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module == "engine"
                for alias in node.names]
    assert {"Engine", "HttpClient", "SavedResponses", "send"} <= set(imported)
    for name in imported:
        assert name in engine.__all__, f"the README imports {name} from engine, which does not export it"
        assert getattr(engine, name) is not None


def test_every_name_the_readme_library_section_uses_is_defined_or_imported_from_engine():
    tree = ast.parse(library_block())
    bound = {alias.asname or alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
             for alias in node.names}
    bound |= {node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store)}
    used = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)}
    missing = used - bound - INPUTS - set(dir(builtins))
    assert not missing, f"the README's Library code uses {sorted(missing)} without importing them from engine"


def test_the_exported_names_are_the_ones_the_code_uses():
    from engine.deliver.http import HttpClient, SavedResponses, deliver
    assert (engine.HttpClient, engine.SavedResponses, engine.send) == (HttpClient, SavedResponses, deliver)


def test_engine_deliver_is_still_the_delivery_package():
    import engine.deliver as package
    assert package.DestinationWorker is not None and engine.deliver is package


def test_every_public_error_class_derives_from_eventmap_error():
    modules = [importlib.import_module(info.name)
               for info in pkgutil.walk_packages(engine.__path__, "engine.") if not info.name.endswith("__main__")]
    errors = {cls for module in modules for _, cls in inspect.getmembers(module, inspect.isclass)
              if issubclass(cls, BaseException) and cls.__module__.startswith("engine.")
              and not cls.__name__.startswith("_")}
    assert {"ConfigError", "MappingError", "FilterError", "ApiError", "TransportError", "UsageError"} <= {
        cls.__name__ for cls in errors}
    outside = sorted(f"{cls.__module__}.{cls.__name__}" for cls in errors if not issubclass(cls, engine.EventmapError))
    assert not outside, f"errors that do not derive from EventmapError: {outside}"
