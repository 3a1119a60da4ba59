"""Every notebook is a jupytext pair: notebooks/NN_slug.py (the source) and NN_slug.ipynb, built
from it by `make notebooks` and executed top to bottom. Strict nbval (`make test`) then re-runs the
.ipynb; these tests catch a pair that was edited on one side only or executed out of order."""

import pathlib
import re

import jupytext
import nbformat
import pytest

NOTEBOOKS = pathlib.Path(__file__).resolve().parents[1] / "notebooks"
SOURCES = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.py"))
EXECUTED = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))

pytestmark = pytest.mark.skipif(
    not SOURCES and not EXECUTED, reason="no notebooks/NN_*.py or NN_*.ipynb written yet"
)


def stems(paths):
    return [p.stem for p in paths]


def cells(nb):
    """What the pair must agree on: cell type, source and tags (nbval reads tags from the .ipynb)."""
    return [
        (c.cell_type, c.source, sorted(c.metadata.get("tags", [])))
        for c in nb.cells
        if c.cell_type in ("code", "markdown", "raw")
    ]


@pytest.fixture(params=SOURCES, ids=stems(SOURCES))
def pair(request):
    py = request.param
    ipynb = py.with_suffix(".ipynb")
    if not ipynb.exists():
        pytest.skip(f"no {ipynb.name} (test_every_source_has_its_executed_notebook fails)")
    return jupytext.read(py), nbformat.read(ipynb, as_version=4)


def test_every_source_has_its_executed_notebook():
    missing = sorted(set(stems(SOURCES)) - set(stems(EXECUTED)))
    assert not missing, f"no .ipynb for {missing}: run `make notebooks NB=...`"


def test_every_executed_notebook_has_its_source():
    orphans = sorted(set(stems(EXECUTED)) - set(stems(SOURCES)))
    assert not orphans, f"notebooks without a jupytext .py source: {orphans}"


def test_pair_is_in_sync(pair):
    source, executed = pair
    assert cells(executed) == cells(source), "the .ipynb is stale: run `make notebooks`"


def test_executed_top_to_bottom_without_errors(pair):
    _, executed = pair
    code = [c for c in executed.cells if c.cell_type == "code" and c.source.strip()]
    assert code, "no code cells"
    counts = [c.execution_count for c in code]
    assert counts == list(range(1, len(code) + 1)), f"execution counts {counts}"
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors, [f"{e.ename}: {e.evalue}" for e in errors]
    # `make notebooks` executes with record_timing=False, so no cell carries timestamps.
    assert not [c for c in code if "execution" in c.metadata], "timing metadata: use `make notebooks`"


def test_kernelspec_is_python3(pair):
    for nb in pair:
        assert nb.metadata.get("kernelspec", {}).get("name") == "python3"


def test_saving_in_jupyterlab_leaves_the_pair_unchanged(pair, request, tmp_path):
    """Open and save the notebook as JupyterLab does (jupytext's contents manager, with the kernel
    that `make venv` installs): neither file of the pair may change, so a student who only runs and
    saves a notebook finds no diff in the committed header or metadata."""
    import asyncio
    import shutil

    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_server.services.contents.largefilemanager import AsyncLargeFileManager
    from jupytext.async_contentsmanager import build_async_jupytext_contents_manager_class

    py = NOTEBOOKS / f"{request.node.callspec.id}.py"
    work = tmp_path / "repo"
    (work / "notebooks").mkdir(parents=True)
    shutil.copy(NOTEBOOKS.parent / "jupytext.toml", work)
    for f in (py, py.with_suffix(".ipynb")):
        shutil.copy(f, work / "notebooks" / f.name)
    spec = KernelSpecManager().get_kernel_spec("python3")
    manager = build_async_jupytext_contents_manager_class(AsyncLargeFileManager)(
        root_dir=str(work), checkpoints_kwargs={"root_dir": str(tmp_path / "checkpoints")})

    async def open_and_save(name):
        model = await manager.get(name)
        model["content"]["metadata"]["kernelspec"] = {"display_name": spec.display_name,
                                                      "language": spec.language, "name": "python3"}
        await manager.save(model, name)

    asyncio.run(open_and_save(f"notebooks/{py.stem}.ipynb"))
    for f in (py, py.with_suffix(".ipynb")):
        assert (work / "notebooks" / f.name).read_text() == f.read_text(), f"saving rewrites {f.name}"


# Portable outputs. A cell that shows a training result carries nbval-ignore-output (its numbers
# differ in the last bits from one CPU to another), so it must check what it is for with an assert,
# and no markdown may quote what such a cell printed: prose is the same on every machine.
IGNORE = "nbval-ignore-output"
DECIMAL = re.compile(r"(?<![\d.])\d*\.\d{3,}")  # 0.652, .437: a value, not a knob like 0.5


def ignored_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code" and IGNORE in c.metadata.get("tags", [])]


def test_every_output_ignored_cell_asserts_something(pair):
    source, _ = pair
    silent = [c.source.splitlines()[0] for c in ignored_cells(source)
              if not re.search(r"^\s*assert\b", c.source, re.M)]
    assert not silent, f"output-ignored cells without an assert (first lines): {silent}"


def test_prose_does_not_quote_an_output_ignored_number(pair):
    _, executed = pair
    printed = set()
    for cell in ignored_cells(executed):
        for out in cell.outputs:
            text = out.get("text") or out.get("data", {}).get("text/plain", "")
            printed.update(DECIMAL.findall("".join(text)))
    typed = {n for c in executed.cells if c.cell_type == "code" for n in DECIMAL.findall(c.source)}
    printed -= typed  # a knob written in the code (a radius of 0.999) is not a result
    quoted = {n for c in executed.cells if c.cell_type == "markdown" for n in DECIMAL.findall(c.source)}
    assert not quoted & printed, f"markdown types numbers a training cell printed: {sorted(quoted & printed)}"


def test_the_slide_decks_open_a_slide_at_every_section(pair):
    """`make slides NB=NN`: every section heading starts a slide, every other explanation a
    sub-slide, and the executed notebook carries the same marks as its source."""
    for nb in pair:
        marks = [(c.source.split("\n")[0], c.metadata.get("slideshow", {}).get("slide_type"))
                 for c in nb.cells if c.cell_type == "markdown"]
        assert all(kind == ("slide" if re.match(r"#{1,2} ", first) else "subslide") for first, kind in marks), marks
        assert sum(kind == "slide" for _, kind in marks) >= 8
