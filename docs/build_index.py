"""Write build/html/index.html: the exported notebooks in reading-list order, grouped by part.

Called by build_html.py (`make html`) with the notebooks it exported; alone, it indexes them all."""

import html
import json
import pathlib
import sys

PARTS = [  # (first, last notebook number, title) — the five parts of the reading list
    (0, 0, "Tour"),
    (1, 8, "Part I — Pair weighting in deep metric learning"),
    (9, 16, "Part II — Contrastive learning"),
    (17, 20, "Part III — Ranking, retrieval and preferences"),
    (21, 27, "Part IV — Classification surrogate losses"),
    (28, 34, "Part V — Losses beyond classification"),
]


def title(ipynb: pathlib.Path) -> str:
    """The notebook's first Markdown heading."""
    for cell in json.loads(ipynb.read_text())["cells"]:
        if cell["cell_type"] == "markdown":
            for line in "".join(cell["source"]).splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip()
    return ipynb.stem


def main(out: pathlib.Path, notebooks=None) -> None:
    if notebooks is None:
        notebooks = sorted((pathlib.Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    items = []
    for first, last, part in PARTS:
        rows = [nb for nb in notebooks if first <= int(nb.name[:2]) <= last]
        if rows:
            links = "\n".join(f'    <li><a href="{nb.stem}.html">{html.escape(title(nb))}</a></li>' for nb in rows)
            items.append(f"  <h2>{html.escape(part)}</h2>\n  <ul>\n{links}\n  </ul>")
    page = ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n  <meta charset=\"utf-8\">\n"
            "  <title>lossviz notebooks</title>\n  <style>body{font-family:sans-serif;max-width:52em;"
            "margin:2em auto;font-size:18px;line-height:1.5} a{color:#0072B2}</style>\n</head>\n<body>\n"
            "  <h1>lossviz: the loss functions of deep learning, through their gradients</h1>\n"
            "  <p>Each page is a notebook executed on a CPU, with its figures and results. "
            "The sliders need a running Python (<code>make lab</code>); here they show the state the notebook "
            "was saved in. The pages read offline: formulas are typeset by a local MathJax.</p>\n" + "\n".join(items) + "\n</body>\n</html>\n")
    out.mkdir(parents=True, exist_ok=True)
    (out / "index.html").write_text(page)
    print(f"wrote {out / 'index.html'} ({len(notebooks)} notebooks)")


if __name__ == "__main__":
    main(pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "build/html"))
