"""The layout of :mod:`visrec.models`, read from the source with ``ast`` (nothing is imported):

- no module of the package imports the layers above it (pipeline, export, serving, tracking, the scripts);
- a family (a sub-package: factor, ials, knn, hybrid, visual, ...) never imports the package itself
  (``visrec.models``, its lazy public names) nor :mod:`visrec.models.registry`, which imports the families;
- a family's ``__init__.py`` imports nothing (importing a torch-only module never pulls in Lightning);
- :mod:`visrec.models.scoring`, the torch-only contract, imports no family;
- there is no import cycle among the package's modules (every import statement counts, function-level too).
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "visrec.models"
UPWARD = ("visrec.pipeline", "visrec.export", "visrec.serving", "visrec.tracking", "train", "evaluate")
REGISTRY = f"{PACKAGE}.registry"
CONTRACT = f"{PACKAGE}.scoring"


@dataclass(frozen=True)
class Import:
    module: str  # the module an ``import``/``from`` statement names, made absolute
    names: tuple[str, ...]  # what a ``from`` statement takes from it (empty for ``import``)
    line: int


def is_under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def package_modules(root: Path, package: str = PACKAGE) -> dict[str, Path]:
    """Dotted module name -> file, for every module of ``package`` under ``root`` (a package: its __init__.py)."""
    modules = {}
    for path in sorted((root / Path(*package.split("."))).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(path: Path, name: str) -> list[Import]:
    """Every import statement of the file (module level, in functions and classes; not under ``if
    TYPE_CHECKING:``), relative ones made absolute. ``from __future__`` is left out."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[Import] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend(Import(alias.name, (), node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module != "__future__":
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module
            found.append(Import(module, tuple(alias.name for alias in node.names), node.lineno))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), filename=str(path)))
    return found


def resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The module of the package that importing ``name`` executes last (its longest prefix that is one)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in modules:
            return ".".join(parts[:end])
    return None


def targets(imp: Import, modules: dict[str, Path]) -> set[str]:
    """The modules of the package that the statement imports: the named module, each name taken from it
    that is a submodule, and the packages above them (whose __init__.py runs first)."""
    named = [imp.module, *(f"{imp.module}.{name}" for name in imp.names if f"{imp.module}.{name}" in modules)]
    out = set()
    for name in named:
        module = resolve(name, modules)
        while module is not None and is_under(module, PACKAGE):
            out.add(module)
            module = module.rpartition(".")[0] if module != PACKAGE else None
    return out


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of ``graph`` as [a, b, ..., a], or None (depth-first search, white/grey/black)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (cycle := dfs(nxt)) is not None:
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := dfs(node)) is not None:
            return cycle
    return None


def layout_problems(root: Path = REPO) -> list[str]:
    """Every breach of the rules in this module's docstring, for the package under ``root``."""
    modules = package_modules(root)
    families = {name for name, path in modules.items()
                if path.name == "__init__.py" and name.count(".") == PACKAGE.count(".") + 1}
    problems, graph = [], {}
    for name, path in modules.items():
        where = lambda imp: f"{path.relative_to(root)}:{imp.line}"  # noqa: E731
        family = next((f for f in families if is_under(name, f)), None)
        graph[name] = set()
        for imp in imports_of(path, name):
            taken = [imp.module, *(f"{imp.module}.{n}" for n in imp.names)]
            if any(is_under(t, up) for t in taken for up in UPWARD):
                problems.append(f"{where(imp)}: {name} imports {imp.module} (a layer above visrec.models)")
            hit = targets(imp, modules) - {name}
            if family is not None:
                takes_package_names = imp.module == PACKAGE and (not imp.names or any(
                    f"{PACKAGE}.{n}" not in modules for n in imp.names))
                if takes_package_names or REGISTRY in hit:
                    problems.append(f"{where(imp)}: {name} (family {family}) imports "
                                    f"{REGISTRY if REGISTRY in hit else PACKAGE}")
                if name == family:
                    problems.append(f"{where(imp)}: {name}/__init__.py imports {imp.module} (a family's __init__ imports nothing)")
            if name == CONTRACT and (bad := sorted(t for t in hit for f in families if is_under(t, f))):
                problems.append(f"{where(imp)}: {CONTRACT} (the torch-only contract) imports the family module(s) {bad}")
            graph[name] |= hit
    if (cycle := find_cycle(graph)) is not None:
        problems.append("import cycle: " + " -> ".join(cycle))
    return problems


def test_models_layout_has_no_upward_import_no_family_import_of_the_package_and_no_cycle():
    problems = layout_problems()
    assert not problems, "\n".join(problems)


def test_the_layout_check_finds_each_breach(tmp_path):
    """The checker itself, on a small copy of the rules broken one by one."""
    def write(files: dict[str, str]) -> Path:
        root = tmp_path / str(len(list(tmp_path.iterdir())))
        for rel, text in {"visrec/__init__.py": "", "visrec/models/__init__.py": "", "visrec/models/scoring.py": "",
                          "visrec/models/registry.py": "from visrec.models.fam.a import A\n",
                          "visrec/models/fam/__init__.py": '"""A family."""\n',
                          "visrec/models/fam/a.py": "from visrec.models.scoring import S\n", **files}.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(text)
        return root

    assert layout_problems(write({})) == []
    cases = {
        "visrec/models/fam/a.py": ("def f():\n    from visrec.pipeline.setup import model_class\n", "a layer above"),
        "visrec/models/fam/b.py": ("from visrec.models import RatingModule\n", "imports visrec.models"),
        "visrec/models/fam/c.py": ("from visrec.models.registry import build_scoring\n", "imports visrec.models.registry"),
        "visrec/models/fam/__init__.py": ("from visrec.models.fam.a import A\n", "a family's __init__ imports nothing"),
        "visrec/models/scoring.py": ("from visrec.models.fam import a\n", "imports the family module(s)"),
        "visrec/models/fam/d.py": ("def f():\n    from .e import E\n", "import cycle"),
    }
    for rel, (text, message) in cases.items():
        extra = {"visrec/models/fam/e.py": "import visrec.models.fam.d\n"} if rel.endswith("d.py") else {}
        problems = layout_problems(write({rel: text, **extra}))
        assert any(message in problem for problem in problems), (rel, problems)
