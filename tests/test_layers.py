"""The layering rules the code keeps: providers are a library that knows nothing of the app."""

import ast
import re
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


MOST_LINES = 500
PAGE_MODULES = PROVIDERS.parent / "web" / "static" / "js"  # the web page's modules


def _module(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(test)


def _run_time_nodes(tree: ast.AST):
    """The nodes of a module, but those under `if TYPE_CHECKING:` (never run)."""
    for node in ast.iter_child_nodes(tree):
        if _type_checking(node):
            yield from (n for body in node.orelse for n in ast.walk(body))
            continue
        yield node
        yield from _run_time_nodes(node)


def import_graph(package: Path) -> dict[str, set[str]]:
    """Each module of `package` and the package's modules it imports when run (`from . import
    x` is module x; `from .m import name` is module m)."""
    paths = {_module(p, package.parent): p for p in sorted(package.rglob("*.py"))}
    graph = {}
    for name, path in paths.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        found = set()
        for node in _run_time_nodes(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = package[: len(package) - node.level + 1] if node.level else []
                module = ".".join(base + ([node.module] if node.module else []))
                inner = [f"{module}.{alias.name}" for alias in node.names]
                targets = [module] + [t for t in inner if t in paths]
                if all(t in paths for t in inner):  # only modules imported: not the package
                    targets = inner
            else:
                continue
            found |= {t for t in targets if t in paths and t != name}
        graph[name] = found
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles of `graph`, one path each."""
    found, done, path = [], set(), []

    def visit(name: str) -> None:
        if name in path:
            found.append(path[path.index(name) :] + [name])
            return
        if name in done:
            return
        path.append(name)
        for target in sorted(graph[name]):
            visit(target)
        path.pop()
        done.add(name)

    for name in sorted(graph):
        visit(name)
    return found


def test_the_package_has_no_import_cycle():
    graph = import_graph(PROVIDERS.parent)
    assert len(graph) >= 100
    assert cycles(graph) == []


def test_the_cycle_check_finds_a_cycle(tmp_path):
    package = tmp_path / "app"
    (package / "chat").mkdir(parents=True)
    (package / "__init__.py").write_text("from .chat import turn\n")
    (package / "chat" / "__init__.py").write_text("")
    (package / "chat" / "turn.py").write_text("from . import titles\n")
    (package / "chat" / "titles.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .. import models\n"
        "def schedule():\n    from .turn import make_title\n"
    )
    (package / "models.py").write_text("from .chat.turn import Turn\n")
    found = cycles(import_graph(package))
    assert found == [["app.chat.turn", "app.chat.titles", "app.chat.turn"]]


def test_no_module_of_the_package_is_over_500_lines():
    """Python modules and the web page's own JavaScript modules (not the vendored libraries)."""
    package = PROVIDERS.parent
    modules = sorted(package.rglob("*.py")) + sorted(PAGE_MODULES.glob("*.js"))
    assert any(path.suffix == ".js" for path in modules)
    long = {
        str(path.relative_to(package)): lines
        for path in modules
        if (lines := len(path.read_text().splitlines())) > MOST_LINES
    }
    assert long == {}


# `import x from "./m.js"`, `import "./m.js"`, `export { x } from "./m.js"`, `import("./m.js")`.
JS_IMPORT = re.compile(
    r"""^\s*(?:import|export)\b[^"';]*?["'](\./[\w.-]+\.js)["']|\bimport\(\s*["'](\./[\w.-]+\.js)["']""",
    re.M,
)


def page_import_graph(folder: Path) -> dict[str, set[str]]:
    """Each JavaScript module of `folder` and the modules of the folder it imports."""
    graph = {}
    for path in sorted(folder.glob("*.js")):
        found = {a or b for a, b in JS_IMPORT.findall(path.read_text())}
        graph[path.name] = {target[2:] for target in found}
    for name, targets in graph.items():
        assert targets <= graph.keys(), f"{name} imports {targets - graph.keys()}"
    return graph


def test_the_page_modules_have_no_import_cycle():
    graph = page_import_graph(PAGE_MODULES)
    assert {"api.js", "chat.js", "pages.js"} <= graph["app.js"]  # static and dynamic imports
    assert cycles(graph) == []


def test_the_page_cycle_check_finds_a_cycle(tmp_path):
    (tmp_path / "a.js").write_text(
        'import * as b from "./b.js";\nconst c = () => import("./c.js");\n'
    )
    (tmp_path / "b.js").write_text(
        'import {\n  x,\n  y,\n} from "./c.js";\n// import "./a.js" in a comment\n'
    )
    (tmp_path / "c.js").write_text('export { z } from "./a.js";\nimport "./d.js";\n')
    (tmp_path / "d.js").write_text('const text = "import";\n')
    graph = page_import_graph(tmp_path)
    assert graph == {
        "a.js": {"b.js", "c.js"},
        "b.js": {"c.js"},
        "c.js": {"a.js", "d.js"},
        "d.js": set(),
    }
    assert cycles(graph) == [["a.js", "b.js", "c.js", "a.js"]]
