"""The house rules docs/layout.md states, checked on the source."""

import ast

from conftest import ROOT

PACKAGE = ROOT / "nipype_secondlevel"
#: Each room and the rooms it may import from (the order of docs/layout.md).
#: ``spec`` (the options) imports no room and every room may import it.
ALLOWED = {room: {*rooms, "spec"} for room, rooms in {
    "spec": set(),
    "stats": set(),
    "io": set(),
    "design": {"io", "stats"},
    "datasets": {"io", "stats"},
    "reporting": {"io", "stats", "design"},
    "runtime": {"io"},
    "interfaces": {"io", "stats", "design", "datasets", "reporting"},
    "workflows": {"io", "stats", "design", "datasets", "reporting", "interfaces"},
}.items()}


def imported_rooms(path):
    """(room, module) of every package-relative import in ``path``."""
    tree = ast.parse(path.read_text())
    package = path.relative_to(ROOT).with_suffix("").parts[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[:len(package) - node.level + 1]
            target = (*base, *(node.module.split(".") if node.module else ()))
            if len(target) > 1:
                yield target[1], ".".join(target)


def test_rooms_import_only_the_rooms_before_them():
    wrong = []
    for room, allowed in ALLOWED.items():
        for path in (PACKAGE / room).rglob("*.py"):
            for target, module in imported_rooms(path):
                if target != room and target not in allowed:
                    wrong.append(f"{path.relative_to(ROOT)} imports {module}")
    assert wrong == []


def test_the_spec_imports_only_the_standard_library():
    """--help stays instant: the spec (and the parser made from it) load no nipype,
    numpy or analysis module, nothing but the standard library and the spec itself."""
    import sys

    for path in (PACKAGE / "spec").glob("*.py"):
        tree = ast.parse(path.read_text())
        imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                    if isinstance(node, ast.Import) for alias in node.names}
        imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                     if isinstance(node, ast.ImportFrom) and not node.level}
        assert all(node.level in (0, 1) for node in ast.walk(tree)
                   if isinstance(node, ast.ImportFrom)), path.name
        assert imported <= set(sys.stdlib_module_names), (path.name, imported)


def test_interfaces_do_not_import_each_other():
    wrong = [f"{p.name} imports {m}" for p in (PACKAGE / "interfaces").glob("*.py")
             if p.name != "__init__.py"
             for room, m in imported_rooms(p) if room == "interfaces"]
    assert wrong == []


def test_no_module_is_too_long_to_hold_in_the_head():
    lengths = {str(p.relative_to(ROOT)): len(p.read_text().splitlines())
               for p in PACKAGE.rglob("*.py")}
    assert {p: n for p, n in lengths.items() if n > 520} == {}
