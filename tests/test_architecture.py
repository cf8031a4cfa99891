"""The package's shape, read from its source: no import circle, the SDK's private surface in
sdk_shims.py only (docs/development.md, docs/sdk-upgrade.md).

Both checks parse target_carecycle/*.py with `ast`, so they see every import (including those
under TYPE_CHECKING or inside a function) and every attribute, whether or not it runs.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import textwrap
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest
import singer_sdk

PACKAGE = Path(__file__).resolve().parent.parent / "target_carecycle"
SHIMS = "sdk_shims"


def modules() -> dict[str, ast.Module]:
    """Each module of the package (sandbox excluded: it is not the target), by short name."""
    return {path.stem: ast.parse(path.read_text(), str(path)) for path in PACKAGE.glob("*.py")}


def imported_modules(tree: ast.Module) -> Iterator[str]:
    """Every module name an import statement in `tree` names (absolute, as written)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
            # `from target_carecycle import sdk_shims` imports a module, not a name
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports."""
    names = set(modules())
    graph: dict[str, set[str]] = {}
    for name, tree in modules().items():
        graph[name] = {
            part
            for imported in imported_modules(tree)
            if imported.startswith("target_carecycle.")
            and (part := imported.split(".")[1]) in names
            and part != name
        }
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a path (first module repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_the_package_imports_have_no_circle() -> None:
    graph = import_graph()
    assert graph["sinks"], "the import graph was not read"
    assert "target" not in graph["sinks"]
    assert find_cycle(graph) is None, f"import circle: {' -> '.join(find_cycle(graph) or [])}"


def test_the_cycle_finder_finds_a_circle() -> None:
    """The finder itself: the old sinks <-> target circle, and a longer one, are found."""
    assert find_cycle({"sinks": {"target"}, "target": {"sinks"}}) == ["sinks", "target", "sinks"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


# The SDK's private surface


def is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def private_sdk_imports(tree: ast.Module) -> list[str]:
    """Imports of a private singer_sdk module (a `_` segment) or of a private name from one."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "singer_sdk" and any(is_private(part) for part in parts):
                found.append(f"line {node.lineno}: import {name}")
    return found


def defined_private_names(tree: ast.AST) -> set[str]:
    """Private names `tree` defines for others to use: module and class level functions,
    classes and assignments, and attributes stored on `self` or `cls` (not a function's locals).
    """
    names: set[str] = set()

    def scope(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            for target in _assigned(node):
                names.add(target)
            if isinstance(node, (ast.ClassDef, ast.If, ast.Try)):
                scope(node.body)

    scope(tree.body if isinstance(tree, (ast.Module, ast.ClassDef)) else [])
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.ctx, ast.Store)
            and isinstance(node.value, ast.Name)
            and node.value.id in ("self", "cls")
        ):
            names.add(node.attr)
    return {name for name in names if is_private(name)}


def _assigned(node: ast.stmt) -> list[str]:
    if isinstance(node, ast.Assign):
        return [t.id for t in node.targets if isinstance(t, ast.Name)]
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return [node.target.id]
    return []


@cache
def sdk_private_names() -> frozenset[str]:
    """Every private name singer_sdk defines for use across its modules and classes."""
    names: set[str] = set()
    for path in Path(singer_sdk.__file__).parent.rglob("*.py"):
        names |= defined_private_names(ast.parse(path.read_text(encoding="utf-8")))
    return frozenset(names)


@cache
def sdk_class_private_names(cls: type) -> frozenset[str]:
    """The private names of the singer_sdk classes `cls` inherits from (methods, attributes)."""
    names: set[str] = set()
    for base in cls.__mro__[1:]:
        if base.__module__.startswith("singer_sdk"):
            source = textwrap.dedent(inspect.getsource(base))
            names |= defined_private_names(ast.parse(source).body[0])
    return frozenset(names)


def own_private_names(trees: dict[str, ast.Module]) -> set[str]:
    """Private names the package defines for itself outside sdk_shims.py: its own attributes,
    functions and classes (a name an SDK subclass redefines from its SDK bases is not one)."""
    names: set[str] = set()
    for name, tree in trees.items():
        if name == SHIMS:
            continue
        names |= defined_private_names(tree)
        for node in ast.walk(tree):  # object.__setattr__(self, "_name", ...) in frozen classes
            if isinstance(node, ast.Call) and len(node.args) >= 2:
                arg = node.args[1]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    names.add(arg.value)
        classes = {cls.__name__: cls for cls in sdk_subclasses(name)}
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and node.name in classes:
                names -= defined_private_names(node) & sdk_class_private_names(classes[node.name])
    return {n for n in names if is_private(n)}


def sdk_subclasses(module_name: str) -> list[type]:
    """The classes defined in the module that inherit from a singer_sdk class."""
    if module_name == "__main__":
        return []  # importing it would run the command; it defines no class
    module = importlib.import_module(f"target_carecycle.{module_name}")
    return [
        cls
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if cls.__module__ == module.__name__
        and any(base.__module__.startswith("singer_sdk") for base in cls.__mro__[1:])
    ]


def private_sdk_uses(tree: ast.Module, sdk_classes: dict[str, type], own: set[str]) -> list[str]:
    """Where the module overrides, reads or calls a private singer_sdk name.

    In a class that inherits from an SDK class, any method defined or `self` attribute used
    whose name the SDK defines privately is one. Elsewhere, an attribute or `getattr` name
    the SDK defines privately and the package does not define itself is one.
    """
    sdk = sdk_private_names()
    found = private_sdk_imports(tree)
    for cls_node in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
        if cls_node.name not in sdk_classes:
            continue
        inherited = sdk_class_private_names(sdk_classes[cls_node.name])
        for node in ast.walk(cls_node):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in inherited:
                found.append(f"line {node.lineno}: {cls_node.name} overrides {node.name}")
            elif isinstance(node, ast.Attribute) and node.attr in inherited:
                found.append(f"line {node.lineno}: {cls_node.name} uses .{node.attr}")
    for node in ast.walk(tree):
        for name in names_touched(node):
            if name in sdk and name not in own:
                found.append(f"line {getattr(node, 'lineno', 0)}: uses {name}")
    return sorted(set(found))


# Calls that read or write an attribute named by a string: getattr(x, "_n"), attrgetter("_n").
NAMED_BY_SECOND_ARGUMENT = {"getattr", "setattr", "hasattr", "delattr"}
NAMED_BY_EVERY_ARGUMENT = {"attrgetter", "methodcaller"}
# Methods of an instance's __dict__ (or vars(x)) that take the attribute's name first.
DICT_LOOKUPS = {"get", "pop", "setdefault", "__getitem__", "__setitem__", "__contains__"}


def names_touched(node: ast.AST) -> list[str]:
    """Attribute names `node` reads or writes: `x.name`, and the indirect ways (a string
    naming it to getattr/setattr/hasattr/delattr, operator.attrgetter or methodcaller, or a
    key of `vars(x)` or `x.__dict__`)."""
    if isinstance(node, ast.Attribute):
        return [node.attr]
    if isinstance(node, ast.Subscript) and _is_instance_dict(node.value):
        return _string_constants([node.slice])
    if not isinstance(node, ast.Call):
        return []
    func = node.func
    called = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
    if called in NAMED_BY_SECOND_ARGUMENT and len(node.args) >= 2:
        return _string_constants(node.args[1:2])
    if called in NAMED_BY_EVERY_ARGUMENT:
        arguments = node.args if called == "attrgetter" else node.args[:1]
        return [part for name in _string_constants(arguments) for part in name.split(".")]
    if (
        isinstance(func, ast.Attribute)
        and func.attr in DICT_LOOKUPS
        and _is_instance_dict(func.value)
    ):
        return _string_constants(node.args[:1])
    return []


def _is_instance_dict(node: ast.AST) -> bool:
    """`vars(x)` or `x.__dict__`: an instance's attributes as a dict."""
    if isinstance(node, ast.Attribute):
        return node.attr == "__dict__"
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "vars"
        and len(node.args) == 1
    )


def _string_constants(nodes: list[ast.expr]) -> list[str]:
    return [n.value for n in nodes if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def uses_in_module(name: str, trees: dict[str, ast.Module]) -> list[str]:
    sdk_classes = {cls.__name__: cls for cls in sdk_subclasses(name)}
    return private_sdk_uses(trees[name], sdk_classes, own_private_names(trees))


def test_only_sdk_shims_touches_a_private_singer_sdk_name() -> None:
    trees = modules()
    offenders = {
        name: uses for name in trees if name != SHIMS and (uses := uses_in_module(name, trees))
    }
    assert offenders == {}


def test_sdk_shims_is_where_the_private_names_are() -> None:
    """The check has teeth: it finds the shims' own overrides, reads and imports."""
    trees = modules()
    uses = "\n".join(uses_in_module(SHIMS, trees))
    for expected in (
        "import singer_sdk.helpers._batch",
        "overrides _process_record_message",
        "overrides _handle_termination",
        "uses ._sinks_active",
        "uses ._latest_state",
        "overrides _singer_validate_message",
    ):
        assert expected in uses


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from singer_sdk.helpers._classproperty import classproperty", "import singer_sdk"),
        ("import singer_sdk.helpers._util", "import singer_sdk.helpers._util"),
        ("from singer_sdk.helpers import _batch", "import singer_sdk.helpers._batch"),
        ("def f(target):\n    return target._sinks_active", "uses _sinks_active"),
        ("def f(sink):\n    return getattr(sink, '_validator')", "uses _validator"),
        ("def f(sink):\n    setattr(sink, '_validator', None)", "uses _validator"),
        ("def f(sink):\n    return hasattr(sink, '_validator')", "uses _validator"),
        ("def f(target):\n    return vars(target)['_sinks_active']", "uses _sinks_active"),
        ("def f(target):\n    return target.__dict__['_latest_state']", "uses _latest_state"),
        ("def f(target):\n    return vars(target).get('_latest_state')", "uses _latest_state"),
        ("def f(target):\n    target.__dict__['_latest_state'] = {}", "uses _latest_state"),
        (
            "import operator\ndef f(sink):\n    return operator.attrgetter('_validator')(sink)",
            "uses _validator",
        ),
        (
            "from operator import attrgetter\n"
            "def f(s):\n    return attrgetter('x', 'a._validator')(s)",
            "uses _validator",
        ),
        (
            "from singer_sdk.target_base import Target\n"
            "class T(Target):\n"
            "    def _write_state_message(self, state):\n"
            "        pass\n",
            "overrides _write_state_message",
        ),
    ],
)
def test_a_private_use_outside_the_shims_is_found(source: str, expected: str) -> None:
    """Each way of touching the SDK's private surface, written into a module, is reported."""
    tree = ast.parse(textwrap.dedent(source))
    namespace: dict[str, object] = {}
    exec(compile(tree, "<probe>", "exec"), namespace)
    classes = [
        v
        for v in namespace.values()
        if isinstance(v, type) and any(b.__module__.startswith("singer_sdk") for b in v.__mro__)
    ]
    found = private_sdk_uses(tree, {c.__name__: c for c in classes}, own=set())
    assert any(expected in line for line in found), found


@pytest.mark.parametrize(
    "source",
    [
        "def f(row):\n    return row['_sinks_active']",  # a dict key, not an attribute
        "def f(target):\n    return vars(target)['config']",  # public
        "def f(target):\n    return getattr(target, 'name')",
        "import operator\nget = operator.attrgetter('logger')",
        "def f(target):\n    return vars(target)['_my_own_name']",  # not the SDK's
    ],
)
def test_a_public_or_unrelated_name_is_not_reported(source: str) -> None:
    assert private_sdk_uses(ast.parse(source), {}, own=set()) == []


# Every setting through RunSettings

# Where the config is read: settings.py (schema, checks, RunSettings) and setting_sources.py
# (file and environment, resolved before the SDK sees them).
CONFIG_READERS = {"settings", "setting_sources"}


def config_reads(tree: ast.Module) -> list[str]:
    """`x.config` reads, except handing the config to `RunSettings.from_config` and the CLI's
    `--config` object (`config.config`) to the constructor."""
    allowed: set[int] = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "from_config"
        ):
            allowed |= {id(arg) for arg in node.args}
        if isinstance(node, ast.keyword) and node.arg == "config":
            allowed.add(id(node.value))  # passed on whole: to the SDK's constructor
            if isinstance(node.value, ast.IfExp):
                allowed.add(id(node.value.body))
    return [
        f"line {node.lineno}: {ast.unparse(node)}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr == "config" and id(node) not in allowed
    ]


def test_settings_are_read_only_through_run_settings() -> None:
    """Outside settings.py and setting_sources.py no module reads a setting from the config:
    target.py builds RunSettings from it, and everything else reads RunSettings."""
    found = {
        name: reads
        for name, tree in modules().items()
        if name not in CONFIG_READERS and (reads := config_reads(tree))
    }
    assert found == {}
    probe = ast.parse("def f(self):\n    return self.config.get('reject_file')")
    assert config_reads(probe) == ["line 2: self.config"]


def test_the_package_never_imports_the_sandbox() -> None:
    """The sandbox is the local careCycle: the target code must never depend on it."""
    found = {
        name: [i for i in imported_modules(tree) if i.startswith("target_carecycle.sandbox")]
        for name, tree in modules().items()
    }
    assert {name: imports for name, imports in found.items() if imports} == {}
