"""The package's layout: a small core (lossviz/*.py) and one module per paper (lossviz/papers/*.py).
A paper module imports only the core, never another paper; the core never imports a paper; and the
core imports and computes with only torch and numpy (the notebook stack is imported where drawing
happens)."""

import ast
import pathlib
import subprocess
import sys

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "lossviz"
PAPERS = sorted(p for p in (PACKAGE / "papers").glob("*.py") if p.name != "__init__.py")
CORE = sorted(PACKAGE.glob("*.py"))


def imported_modules(path: pathlib.Path, package: str) -> set[str]:
    """Absolute names of the lossviz modules that a file imports (at the top or inside functions)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names if a.name.startswith("lossviz")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the file's package
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.startswith("lossviz"):
                names.add(module)
                names |= {f"{module}.{a.name}" for a in node.names}  # `from lossviz import papers`
    return names


def test_there_is_a_module_per_paper():
    assert len(PAPERS) >= 15


@pytest.mark.parametrize("path", PAPERS, ids=lambda p: p.stem)
def test_a_paper_module_imports_only_the_core(path):
    others = {f"lossviz.papers.{p.stem}" for p in PAPERS} - {f"lossviz.papers.{path.stem}"}
    wrong = sorted(n for n in imported_modules(path, "lossviz.papers") if n in others)
    assert not wrong, f"{path.name} imports other paper modules {wrong}: move what they share to the core"


@pytest.mark.parametrize("path", CORE, ids=lambda p: p.stem)
def test_the_core_never_imports_a_paper(path):
    wrong = sorted(n for n in imported_modules(path, "lossviz") if n.startswith("lossviz.papers"))
    assert not wrong, f"{path.name} imports {wrong}"


def private_names_imported(path: pathlib.Path) -> list[str]:
    """``module._name`` for every private name a file takes from another lossviz module, by a
    ``from ... import _name`` or an attribute ``module._name`` of an imported lossviz module."""
    tree = ast.parse(path.read_text())
    out, aliases = [], set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("lossviz")):
            for a in node.names:
                if a.name.startswith("_") and not a.name.startswith("__"):
                    out.append(f"{node.module}.{a.name}")
                aliases.add(a.asname or a.name)
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                and node.attr.startswith("_") and not node.attr.startswith("__")):
            out.append(f"{node.value.id}.{node.attr}")
    return sorted(set(out))


@pytest.mark.parametrize("path", CORE + PAPERS, ids=lambda p: p.stem)
def test_no_module_reaches_into_another_modules_private_names(path):
    wrong = private_names_imported(path)
    assert not wrong, f"{path.name} uses private names of other modules {wrong}: make them public or move them"


BLOCK_NOTEBOOK_STACK = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"matplotlib", "ipywidgets", "IPython", "ipympl", "tqdm", "sklearn",
                                  "scipy", "mnist1d", "PIL"}:
            raise ImportError(f"{name} is blocked: the core must not need it")
sys.meta_path.insert(0, Block())
import torch
import lossviz as lv
x, y = torch.randn(12, 8, requires_grad=True), torch.arange(12) % 3
S = lv.similarity(x)
for loss in (lv.ms_loss, lv.contrastive_loss, lv.triplet_loss, lv.nt_xent_loss, lv.supcon_loss):
    loss(S, y).backward(retain_graph=True)
W = lv.pair_weights(lv.ms_loss, S.detach(), y)
assert W.shape == (12, 12) and x.grad is not None
print(lv.recall_at_k(x.detach(), y, k=1), lv.map_at_r(x.detach(), y))
"""


def test_the_core_imports_and_computes_without_the_notebook_stack():
    done = subprocess.run([sys.executable, "-c", BLOCK_NOTEBOOK_STACK], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
