"""The transfer modules form layers: no module imports one that imports it back."""

import ast
from pathlib import Path

import cnnlab

SRC = Path(cnnlab.__file__).parent


def _runtime_imports(path: Path) -> set[str]:
    """cnnlab modules imported by ``path`` at run time (``TYPE_CHECKING`` blocks excluded)."""
    tree = ast.parse(path.read_text())
    type_only = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for n in ast.walk(node)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("cnnlab"):
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("cnnlab")}
    return found


def _modules() -> dict[str, Path]:
    paths = [*sorted((SRC / "transfer").rglob("*.py")), SRC / "console.py"]
    names = ("cnnlab." + ".".join(p.relative_to(SRC).with_suffix("").parts) for p in paths)
    return {name.removesuffix(".__init__"): p for name, p in zip(names, paths, strict=True)}


def test_transfer_modules_import_each_other_without_cycles():
    modules = _modules()
    # `from cnnlab.transfer import checkpoint` names the package, but Python runs the package's
    # __init__ before any submodule anyway: the package (whose entry points import the modules
    # when called) is the top layer, no module's dependency.
    graph = {
        m: _runtime_imports(p) & set(modules) - {m, "cnnlab.transfer"} for m, p in modules.items()
    }
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, "import cycle: " + " -> ".join((*path, module))
        if module in done:
            return
        for dep in graph[module]:
            visit(dep, (*path, module))
        done.add(module)

    for module in graph:
        visit(module, ())
    assert (
        "cnnlab.transfer.training.loop" in graph["cnnlab.transfer.training.fit"]
    )  # the graph is not empty


def test_the_cycle_check_sees_imports_inside_functions(tmp_path):
    module = tmp_path / "m.py"
    module.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from cnnlab.transfer.train import fit\n"
        "def f():\n    from cnnlab.transfer import predict\n"
    )
    assert _runtime_imports(module) == {"cnnlab.transfer", "cnnlab.transfer.predict"}
