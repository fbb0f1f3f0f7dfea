"""The layering rules the code keeps: providers are a library that knows nothing of the app."""

import ast
from pathlib import Path

PROVIDERS = Path(__file__).resolve().parent.parent / "polygenix" / "providers"
# Flask, the app's configuration and logs, the database and the app's own globals.
FORBIDDEN = ("flask", "config", "sqlalchemy", "flask_sqlalchemy", "polygenix")


def imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level > 1:  # `from ..x`: out of the package, into the app
                names.add("polygenix" + ("." + node.module if node.module else ""))
            elif node.level == 0:
                names.add(node.module)
    return names


def test_nothing_under_providers_imports_the_app():
    modules = sorted(PROVIDERS.glob("*.py"))
    assert len(modules) >= 8
    for path in modules:
        for name in imported(path):
            assert name.split(".")[0] not in FORBIDDEN, f"{path.name} imports {name}"


def test_the_import_rule_catches_what_it_forbids(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import flask\nfrom config import X\nfrom ..models import Message\n")
    assert {n.split(".")[0] for n in imported(bad)} == {"flask", "config", "polygenix"}


def test_the_package_imports_no_module_outside_it():
    """An installed wheel has no top-level `config` or `wsgi`: the checkout's are for it alone."""
    package = PROVIDERS.parent
    modules = sorted(package.rglob("*.py"))
    for path in modules:
        for name in imported(path):
            where = path.relative_to(package)
            assert name.split(".")[0] not in ("config", "wsgi", "tests"), f"{where} imports {name}"
