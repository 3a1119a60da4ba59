"""Static HTML of the executed notebooks that reads offline: `make html` (or `python docs/build_html.py OUT [NB...]`).

- Each notebook becomes OUT/<name>.html, its panels shown as their saved PNG snapshots
  (static_widgets.WidgetSnapshots), with a bar of links: previous, index, next. The template
  (templates/offline) is JupyterLab's without the scripts it would fetch from a CDN.
- Formulas are typeset by a local copy of MathJax (from the jupyter-server-mathjax package,
  copied into OUT/mathjax), so pages render with the network off; nbconvert's default loads it
  from a CDN, and every formula would show as raw `$...$` in a classroom without internet.
- OUT/index.html lists the pages in reading-list order (build_index.py).
"""

import html
import pathlib
import shutil
import sys

from nbconvert import HTMLExporter

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import build_index  # noqa: E402  (a sibling script, not a package)
from static_widgets import WidgetSnapshots  # noqa: E402

NOTEBOOKS = HERE.parent / "notebooks"
# MathJax 2's full TeX + MathML configuration, with the Safe extension nbconvert also uses.
MATHJAX_URL = "mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe"


def mathjax_dir() -> pathlib.Path:
    """The MathJax files shipped by jupyter-server-mathjax (a dependency of the `lab` extra)."""
    try:
        import jupyter_server_mathjax
    except ImportError as err:
        raise SystemExit("build_html needs jupyter-server-mathjax (pip install 'lossviz[lab]')") from err
    static = pathlib.Path(jupyter_server_mathjax.__file__).parent / "static"
    if not (static / "MathJax.js").is_file():
        raise SystemExit(f"no MathJax.js under {static}: reinstall jupyter-server-mathjax")
    return static


def nav(prev: pathlib.Path | None, nxt: pathlib.Path | None) -> str:
    """The bar of links at the top and bottom of a page."""
    def link(nb, label):
        if nb is None:
            return f'<span style="color:#999">{label}</span>'
        return f'<a href="{nb.stem}.html">{label}: {html.escape(build_index.title(nb))}</a>'
    return ('<nav class="lossviz-nav" style="display:flex;justify-content:space-between;gap:1em;'
            'font-family:sans-serif;font-size:15px;margin:0.5em 1em">'
            f'{link(prev, "← previous")}<a href="index.html">index</a>{link(nxt, "next →")}</nav>')


def export(notebooks: list[pathlib.Path], out: pathlib.Path) -> list[pathlib.Path]:
    exporter = HTMLExporter(mathjax_url=MATHJAX_URL, template_name="offline",
                            extra_template_basedirs=[str(HERE / "templates")])
    exporter.register_preprocessor(WidgetSnapshots(), enabled=True)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copytree(mathjax_dir(), out / "mathjax", dirs_exist_ok=True)
    pages = []
    for i, nb in enumerate(notebooks):
        body, _ = exporter.from_filename(str(nb))
        prev = notebooks[i - 1] if i > 0 else None
        nxt = notebooks[i + 1] if i + 1 < len(notebooks) else None
        bar = nav(prev, nxt)
        head, sep, rest = body.partition("<body")
        if not sep:
            raise RuntimeError(f"nbconvert gave {nb.name} no <body>")
        open_end = rest.index(">") + 1
        body = head + sep + rest[:open_end] + bar + rest[open_end:].replace("</body>", bar + "</body>", 1)
        page = out / f"{nb.stem}.html"
        page.write_text(body, encoding="utf-8")
        pages.append(page)
        print(f"wrote {page}")
    return pages


def main(argv: list[str]) -> None:
    out = pathlib.Path(argv[0]) if argv else pathlib.Path("build/html")
    every = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    picked = [nb for nb in every if not argv[1:] or any(nb.name.startswith(p) for p in argv[1:])]
    if not picked:
        raise SystemExit(f"no notebook matches {argv[1:]}")
    export(picked, out)
    build_index.main(out, picked)


if __name__ == "__main__":
    main(sys.argv[1:])
