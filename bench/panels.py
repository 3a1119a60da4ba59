"""How long every notebook panel takes to answer a control change (``make bench-panels``).

The notebook contract asks a pure-maths panel to answer a control change in under 200 ms, the draw
included.  This script checks it on every panel the notebooks build:

* each notebook ``notebooks/NN_*.py`` (the jupytext source) is executed cell by cell in this process,
  in an IPython ``InteractiveShell`` (``display`` and magics work), in ``notebooks/`` with
  ``LOSSVIZ_FAST=1``, ``LOSSVIZ_RUN_CACHE=0`` (runs trained now, not read from the disk cache),
  the Agg backend and one torch thread;
* every :class:`lossviz.widgets.Panel` created meanwhile is recorded (``Panel.__init__`` is wrapped
  while the notebook runs), with the name of the factory that built it;
* a **pure-maths panel** (no ``train``) gets an Agg canvas; each of its value controls that is
  shown and enabled is moved to another valid value (a slider a few steps, the next option of a
  dropdown or toggle, a checkbox flipped, another selection) and back, ``--repeats`` changes in
  all, each timed as ``control.value = new`` (the panel's redraw) + ``fig.canvas.draw()`` (the
  pixels).  A row gives the median and the worst of all changes, and the control whose changes
  were slowest (by median); a median over ``--limit-ms`` (200) is marked;
* a **Train panel** (``panel.train``) is timed twice, in seconds: a press of Train after a control
  changed the setting (a real run; the seed when the panel has one), and a press after moving back
  to the setting trained before (served from :func:`lossviz.train.memo`), each with its draw.

A notebook that fails is reported with its cell and error; the panels it built before the failure
are still timed.  Times depend on the machine and on whatever else runs on it: never a timed test.

    python bench/panels.py                         # every notebook, text tables
    python bench/panels.py --markdown              # the README tables (make bench-panels)
    python bench/panels.py --notebooks 01 07       # only notebooks whose name starts with 01 or 07
    python bench/panels.py --from-json bench/results/panels-cpu.json --markdown   # reprint the last run
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import linecache
import math
import os
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
if str(ROOT) not in sys.path:  # run as a script: make ``bench`` and ``lossviz`` importable
    sys.path.insert(0, str(ROOT))

#: The environment every notebook runs in (see the module docstring).
ENV = {"LOSSVIZ_FAST": "1", "LOSSVIZ_RUN_CACHE": "0", "MPLBACKEND": "Agg",
       "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
LIMIT_MS = 200.0  # the notebook contract: a pure-maths panel answers a change in under 200 ms
REPEATS = 5
STEPS = 3  # a slider moves this many steps


# ------------------------------------------------------------------------------------------------
# Controls: which ones, and another valid value for each
# ------------------------------------------------------------------------------------------------

def _options(control) -> list:
    """The values a selection widget can take (ipywidgets keeps ``(label, value)`` pairs)."""
    values = getattr(control, "_options_values", None)
    if values is None:
        values = [o[1] if isinstance(o, tuple) and len(o) == 2 else o for o in control.options]
    return list(values)


def _stepped(value, step, lo, hi, steps: int = STEPS):
    """``value`` moved ``steps`` steps up, or down where up leaves ``[lo, hi]``; clipped to it."""
    up = value + steps * step
    new = up if up <= hi else value - steps * step
    return min(max(new, lo), hi)


def new_value(control):
    """Another valid value of ``control``, or ``None`` when there is none (or the kind is unknown).

    Sliders and bounded number boxes move ``STEPS`` steps within their range (a log slider in its
    exponent), selections go to the next option, booleans flip, a multiple selection drops its last
    item (or adds the first one it lacks), a range slider shifts both ends."""
    import ipywidgets as W

    value = control.value
    if isinstance(value, bool):
        return not value
    if isinstance(control, W.SelectMultiple):
        options = _options(control)
        if len(value) > 1:
            return tuple(value[:-1])
        missing = [o for o in options if o not in value]
        return tuple(value) + (missing[0],) if missing else None
    if isinstance(control, W.SelectionRangeSlider):
        options, (a, b) = _options(control), control.index
        shift = 1 if b + 1 < len(options) else -1
        if not 0 <= a + shift < len(options):
            return None
        return (options[a + shift], options[b + shift])
    if hasattr(control, "options"):  # Dropdown, ToggleButtons, RadioButtons, Select, SelectionSlider
        options = _options(control)
        if len(options) < 2 or control.index is None:
            return None
        return options[(control.index + 1) % len(options)]
    if isinstance(control, W.FloatLogSlider):
        exponent = math.log(value, control.base)
        return control.base ** _stepped(exponent, control.step, control.min, control.max)
    if isinstance(value, tuple) and hasattr(control, "min"):  # IntRangeSlider, FloatRangeSlider
        a, b = value
        step = control.step or 1
        shift = STEPS * step if b + STEPS * step <= control.max else -STEPS * step
        if a + shift < control.min:
            return None
        return (type(a)(a + shift), type(b)(b + shift))
    if isinstance(value, (int, float)) and hasattr(control, "min") and hasattr(control, "max"):
        step = getattr(control, "step", None) or 1  # IntSlider, FloatSlider, BoundedInt/FloatText
        new = _stepped(value, step, control.min, control.max)
        return type(value)(round(new)) if isinstance(value, int) else float(new)
    if isinstance(value, (int, float)):  # IntText, FloatText: unbounded
        return value + (getattr(control, "step", None) or 1)
    return None


def _hidden(control) -> bool:
    layout = getattr(control, "layout", None)
    return layout is not None and (layout.display == "none" or layout.visibility == "hidden")


def value_controls(panel) -> list[tuple[str, object]]:
    """The panel's controls a student can move now: value widgets, enabled and shown."""
    import ipywidgets as W

    return [(name, c) for name, c in panel.controls.items()
            if isinstance(c, W.ValueWidget) and not getattr(c, "disabled", False) and not _hidden(c)]


# ------------------------------------------------------------------------------------------------
# Timing one panel
# ------------------------------------------------------------------------------------------------

def _attach_canvas(panel):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    if not isinstance(panel.fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(panel.fig)
    panel.fig.canvas.draw()  # the first full render is not charged to the first control


def _timed_set(panel, control, value) -> tuple[float, float]:
    """Seconds for ``control.value = value`` (the panel's redraw) plus drawing the pixels, and the
    seconds of the pixels alone."""
    t0 = time.perf_counter()
    control.value = value
    t1 = time.perf_counter()
    panel.fig.canvas.draw()
    t2 = time.perf_counter()
    return t2 - t0, t2 - t1


def _error(e: BaseException) -> str:
    text = f"{type(e).__name__}: {e}".strip()
    return text if len(text) <= 160 else text[:157] + "..."


def time_panel(panel, *, repeats: int = REPEATS, limit_ms: float = LIMIT_MS, name: str | None = None,
               notebook: str = "") -> dict:
    """Time ``repeats`` changes of every movable control of a pure-maths panel (alternately to
    another value and back; the control is left at its first value).  Returns one row:
    ``controls`` (how many were moved), ``median_ms`` and ``worst_ms`` over all changes,
    ``draw_median_ms`` (the median of their ``canvas.draw`` part: the pixels, not the panel's code),
    ``slowest`` (the control with the largest median), ``over`` (median > ``limit_ms``),
    ``per_control`` (name -> median, worst, every time, the median of ``canvas.draw`` alone), and
    ``skipped``/``errors`` by control."""
    _attach_canvas(panel)
    per_control, skipped, errors, times, draws = {}, {}, {}, [], []
    for key, control in value_controls(panel):
        old = control.value
        try:
            new = new_value(control)
        except Exception as e:  # an odd control: report it, time the others
            new, skipped[key] = None, _error(e)
        if new is None or new == old:
            skipped.setdefault(key, f"no other value for {type(control).__name__}")
            continue
        ms, pixels = [], []
        try:
            for i in range(repeats):
                total, draw = _timed_set(panel, control, new if i % 2 == 0 else old)
                ms.append(1e3 * total)
                pixels.append(1e3 * draw)
        except Exception as e:  # the panel's draw failed on this value
            errors[key] = _error(e)
        finally:
            with contextlib.suppress(Exception):
                if control.value != old:
                    control.value = old
        if ms:
            per_control[key] = {"median_ms": statistics.median(ms), "worst_ms": max(ms), "times_ms": ms,
                                "canvas_draw_median_ms": statistics.median(pixels)}
            times += ms
            draws += pixels
    median = statistics.median(times) if times else None
    slowest = max(per_control, key=lambda k: per_control[k]["median_ms"]) if per_control else None
    return {
        "notebook": notebook,
        "panel": name or panel_name(panel),
        "controls": len(per_control),
        "changes": len(times),
        "median_ms": median,
        "worst_ms": max(times) if times else None,
        "draw_median_ms": statistics.median(draws) if draws else None,  # canvas.draw alone
        "slowest": slowest,
        "slowest_median_ms": per_control[slowest]["median_ms"] if slowest else None,
        "over": median is not None and median > limit_ms,
        "limit_ms": limit_ms,
        "per_control": per_control,
        "skipped": skipped,
        "errors": errors,
    }


def _failed_row(panel, name: str, notebook: str, limit_ms: float, error: str) -> dict:
    if hasattr(panel, "train"):
        return {"notebook": notebook, "panel": name, "control": None, "train_s": None, "cached_s": None,
                "trained": None, "cached": None, "error": error}
    return {"notebook": notebook, "panel": name, "controls": 0, "changes": 0, "median_ms": None,
            "worst_ms": None, "draw_median_ms": None, "slowest": None, "slowest_median_ms": None,
            "over": False, "limit_ms": limit_ms, "per_control": {}, "skipped": {}, "errors": {"(panel)": error}}


def _is_stale(panel) -> bool:
    return bool(panel.state.get("stale"))


def _memo_size() -> int:
    """How many results :func:`lossviz.train.memo` holds: it grows when a press trains (a miss)."""
    from lossviz import train as T

    return len(getattr(T, "_CACHE", ()))


def _timed_press(panel) -> tuple[float, bool]:
    """Seconds for a press of Train and its draw, and whether it trained (missed the run cache)."""
    n = _memo_size()
    t0 = time.perf_counter()
    panel.train()
    panel.fig.canvas.draw()
    return time.perf_counter() - t0, _memo_size() > n


#: A Train panel's control is moved at most this many times to find a setting not trained yet.
TRAIN_TRIES = 3


def time_train_panel(panel, *, name: str | None = None, notebook: str = "") -> dict:
    """Time a Train panel: a press after a control changed the setting to one not trained yet (a real
    run: the control is ``seed`` when the panel has one, else the first that changes the setting,
    moved on while the notebook has trained that setting already), then a press after moving the
    control back to the setting trained before (the cached run).  Seconds, with the draw.
    A panel that was never trained is first trained at its initial setting (not timed)."""
    _attach_canvas(panel)
    row = {"notebook": notebook, "panel": name or panel_name(panel), "control": None,
           "train_s": None, "cached_s": None, "trained": None, "cached": None, "error": None}
    try:
        if panel.state.get("result") is None:
            panel.train()
        movable = value_controls(panel)
        movable.sort(key=lambda kc: kc[0] != "seed")
        for key, control in movable:
            old = control.value
            new = new_value(control)
            if new is None or new == old:
                continue
            control.value = new
            if not _is_stale(panel):  # this control is not part of the trained setting
                control.value = old
                continue
            row["control"] = key
            for _ in range(TRAIN_TRIES):  # the notebook may have trained this setting: move on
                row["train_s"], row["trained"] = _timed_press(panel)
                new = new_value(control)
                if row["trained"] or new is None or new in (old, control.value):
                    break
                control.value = new
            control.value = old
            row["cached_s"], trained_again = _timed_press(panel)
            row["cached"] = not trained_again
            break
        else:
            row["error"] = "no control changes the trained setting"
    except Exception as e:
        row["error"] = _error(e)
    return row


# ------------------------------------------------------------------------------------------------
# Finding the panels a notebook builds
# ------------------------------------------------------------------------------------------------

def _short_module(module: str) -> str:
    for prefix in ("lossviz.papers.", "lossviz."):
        if module.startswith(prefix):
            return module[len(prefix):]
    return "" if module == "__main__" else module


def _builder(draw, frame) -> tuple[str, str]:
    """``(factory name, notebook line)`` for a panel whose ``Panel.__init__`` was called from ``frame``.

    The factory is the first function up the stack that is not a constructor, the generic
    ``run_panel`` or a module's private helper (``unpg.explore_panel``, ``widgets.training_panel``;
    a function defined in the notebook keeps its bare name); a panel built at a cell's top level is
    named by its draw function, else by the variable it was assigned to.  The line is the
    notebook's own line."""
    def generic(f) -> bool:  # a constructor, run_panel, a module's private helper (_panel)
        name = f.f_code.co_name
        module = f.f_globals.get("__name__")
        return (name == "__init__" or name == "run_panel" and module == "lossviz.widgets"
                or name.startswith("_") and module != "__main__")

    f = frame
    while f is not None and generic(f):
        f = f.f_back
    g = f
    while g is not None and g.f_globals.get("__name__") != "__main__":
        g = g.f_back
    line = linecache.getline(g.f_code.co_filename, g.f_lineno).strip() if g is not None else ""
    if f is not None and f.f_code.co_name != "<module>":
        module = _short_module(f.f_globals.get("__name__", ""))
        qual = getattr(f.f_code, "co_qualname", f.f_code.co_name).replace(".<locals>", "")
        return (f"{module}.{qual}" if module else qual), line
    qual = getattr(draw, "__qualname__", "") or ""
    if "<locals>" in qual:
        return qual.split(".<locals>")[0], line
    m = re.match(r"\s*([A-Za-z_]\w*)\s*=", line)
    return (f"{m.group(1)} (cell)" if m else line[:40] or "Panel"), line


def panel_name(panel) -> str:
    return getattr(panel, "_bench_name", None) or _builder(getattr(panel, "_draw", None), None)[0]


@contextlib.contextmanager
def recording_panels():
    """While inside, every new :class:`lossviz.widgets.Panel` is appended to the yielded list, with
    ``_bench_name`` (its factory) and ``_bench_line`` (the notebook line that built it) set."""
    from lossviz import widgets

    made: list = []
    original = widgets.Panel.__init__

    def __init__(self, controls, fig, draw, *args, **kwargs):
        original(self, controls, fig, draw, *args, **kwargs)
        if not any(p is self for p in made):
            self._bench_name, self._bench_line = _builder(draw, sys._getframe(1))
            made.append(self)

    widgets.Panel.__init__ = __init__
    try:
        yield made
    finally:
        widgets.Panel.__init__ = original


# ------------------------------------------------------------------------------------------------
# Running one notebook
# ------------------------------------------------------------------------------------------------

def notebook_paths(prefixes=()) -> list[Path]:
    paths = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.py"))
    return [p for p in paths if not prefixes or any(p.stem.startswith(x) for x in prefixes)]


def code_cells(path: Path) -> list[str]:
    import jupytext

    nb = jupytext.read(path)
    return [c.source for c in nb.cells if c.cell_type == "code"]


def _shell():
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.showtraceback = lambda *a, **k: None  # the error is reported from run_cell's result
    return shell


@contextlib.contextmanager
def _in_dir(path: Path):
    old = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def run_notebook(path: Path, *, repeats: int = REPEATS, limit_ms: float = LIMIT_MS, train: bool = True,
                 log=print) -> dict:
    """Execute ``path``'s code cells, then time the panels it built.  Never raises for a notebook's
    own failure: ``error`` says which cell failed and how."""
    import matplotlib.pyplot as plt
    import torch

    from lossviz import train as T

    shell = _shell()
    shell.reset(new_session=False)
    torch.set_num_threads(1)
    out = {"notebook": path.stem, "cells": 0, "seconds": None, "error": None,
           "panels": [], "train_panels": []}
    t0 = time.perf_counter()
    captured = io.StringIO()
    with recording_panels() as made, _in_dir(path.parent):
        try:
            cells = code_cells(path)
            for i, source in enumerate(cells, 1):
                with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
                    result = shell.run_cell(source, store_history=False)
                out["cells"] = i
                if not result.success:
                    e = result.error_in_exec or result.error_before_exec
                    out["error"] = f"cell {i} of {len(cells)}: {_error(e)}"
                    break
        except Exception as e:  # jupytext could not read it, ...
            out["error"] = _error(e)
    out["seconds"] = time.perf_counter() - t0
    torch.set_num_threads(1)  # whatever the notebook set
    log(f"== {path.stem}: {out['cells']} cells in {out['seconds']:.0f} s, {len(made)} panel(s)"
        + (f"; FAILED at {out['error']}" if out["error"] else ""))
    names = [p._bench_name for p in made]
    for i, panel in enumerate(made):
        name = panel._bench_name  # a factory used twice in a notebook: "#1", "#2"
        if names.count(name) > 1:
            name += f" #{names[:i + 1].count(name)}"
        if hasattr(panel, "train") and not train:
            continue
        with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
            try:
                if hasattr(panel, "train"):
                    row = time_train_panel(panel, name=name, notebook=path.stem)
                else:
                    row = time_panel(panel, repeats=repeats, limit_ms=limit_ms, name=name,
                                     notebook=path.stem)
            except Exception as e:  # the panel could not even be drawn: a row that says why
                row = _failed_row(panel, name, path.stem, limit_ms, _error(e))
        out["train_panels" if hasattr(panel, "train") else "panels"].append(row)
        row["line"] = panel._bench_line
        log("   " + (_train_text(row) if hasattr(panel, "train") else _row_text(row)))
    made.clear()
    shell.reset(new_session=False)
    plt.close("all")
    T.clear_cache()
    gc.collect()
    return out


# ------------------------------------------------------------------------------------------------
# Tables
# ------------------------------------------------------------------------------------------------

def _ms(v) -> str:
    if v is None:
        return "n/a"
    return f"{v:.0f} ms" if v >= 10 else f"{v:.1f} ms"


def _s(v) -> str:
    if v is None:
        return "n/a"
    return f"{v:.1f} s" if v >= 1 else f"{v:.2f} s"


def _row_text(r: dict) -> str:
    flag = f"  <-- over {r['limit_ms']:.0f} ms" if r["over"] else ""
    slow = f"{r['slowest']} ({_ms(r['slowest_median_ms'])})" if r["slowest"] else "-"
    extra = "".join(f"; {k}: {v}" for k, v in r["errors"].items())
    return (f"{r['panel']:<34} {r['controls']:>3} controls  median {_ms(r['median_ms']):>7}  "
            f"worst {_ms(r['worst_ms']):>7}  slowest {slow}{flag}{extra}")


def _train_text(r: dict) -> str:
    if r["error"]:
        return f"{r['panel']:<34} Train: {r['error']}"
    return (f"{r['panel']:<34} Train after changing {r['control']}: {_s(r['train_s'])}"
            f"{'' if r['trained'] else ' (a cached run)'}, back: {_s(r['cached_s'])}"
            f"{'' if r['cached'] else ' (trained again)'}")


def header(meta: dict, args: dict, load=None) -> str:
    threads = f"{meta['threads']} torch thread{'s' if meta['threads'] != 1 else ''}"
    busy = f", load average {load[0]:.1f} to {load[1]:.1f}" if load else ""
    return (f"Measured on {meta['cpu']} ({meta['cpu_count']} CPUs{busy}), torch {meta['torch']}, "
            f"{threads}, {meta['date'][:10]}; notebooks run with LOSSVIZ_FAST=1. Pure-maths panels: "
            f"median and worst of every control change ({args['repeats']} per control, to another "
            f"value and back), each `control.value = new` + a full Agg draw (`fig.canvas.draw()`, "
            f"whose median alone is shown too); a median over {args['limit_ms']:.0f} ms is marked.")


def _draw_ms(r: dict):
    """The median ``canvas.draw`` part of a row's changes (older results: the median of each
    control's median)."""
    if r.get("draw_median_ms") is not None:
        return r["draw_median_ms"]
    parts = [m["canvas_draw_median_ms"] for m in r["per_control"].values()
             if "canvas_draw_median_ms" in m]
    return statistics.median(parts) if parts else None


def _mark(r: dict, text: str, markdown: bool) -> str:
    if not r["over"]:
        return text
    return f"**{text}** ⚠" if markdown else f"{text} (!)"


def tables(result: dict, markdown: bool = False) -> str:
    """The tables: pure-maths panels, Train panels, notebooks that failed (GitHub markdown or text)."""
    meta, args, nbs = result["machine"], result["args"], result["notebooks"]
    rows = [r for nb in nbs for r in nb["panels"]]
    trains = [r for nb in nbs for r in nb["train_panels"]]

    def table(head, aligns, body):
        if markdown:
            return ["| " + " | ".join(head) + " |", "|" + "|".join(aligns) + "|",
                    *("| " + " | ".join(map(str, b)) + " |" for b in body)]
        cols = [head, *body]
        widths = [max(len(str(c[i])) for c in cols) for i in range(len(head))]
        return ["  ".join(str(c[i]).ljust(widths[i]) for i in range(len(head))).rstrip() for c in cols]

    lines = [header(meta, args, result.get("load")), ""]
    body = [[r["notebook"], f"`{r['panel']}`" if markdown else r["panel"], r["controls"],
             _mark(r, _ms(r["median_ms"]), markdown), _ms(_draw_ms(r)), _ms(r["worst_ms"]),
             f"{r['slowest']} ({_ms(r['slowest_median_ms'])})" if r["slowest"] else "–"]
            for r in rows]
    lines += table(["notebook", "panel", "controls", "median", "draw alone", "worst",
                    "slowest control (median)"],
                   ["---", "---", "---:", "---:", "---:", "---:", "---"], body)
    over = [r for r in rows if r["over"]]
    lines += ["", f"{len(rows)} pure-maths panel{'s' if len(rows) != 1 else ''}, {len(over)} with a "
                  f"median over {args['limit_ms']:.0f} ms."]
    if trains:
        lines += ["", "Train panels (seconds, the draw included): a press after changing the control "
                      "shown (a new run), then a press after moving it back (the run already trained, "
                      "cached).", ""]
        body = [[r["notebook"], f"`{r['panel']}`" if markdown else r["panel"], r["control"] or "–",
                 r["error"] or _s(r["train_s"]) + ("" if r.get("trained", True) else " (cached †)"),
                 _s(r["cached_s"]) + ("" if r.get("cached", True) is not False else " (trained †)")]
                for r in trains]
        lines += table(["notebook", "panel", "changed", "train (new setting)", "back (cached)"],
                       ["---", "---", "---", "---:", "---:"], body)
        if any(r.get("trained") is False or r.get("cached") is False for r in trains):
            lines += ["", "† the press did not do what its column says: every setting tried had been "
                          "trained already, or the setting moved back to was not in the run cache."]
    problems = [(n["notebook"], n["error"]) for n in nbs if n["error"]]
    problems += [(r["notebook"], f"{r['panel']}, control {k}: {v}")
                 for r in rows for k, v in r["errors"].items()]
    empty = [n["notebook"] for n in nbs
             if not n["error"] and not n["panels"] and not n["train_panels"]]
    if problems:
        lines += ["", "Did not run through:", ""] + [f"- {stem}: {what}" for stem, what in problems]
    if empty:
        lines += ["", "Without a panel: " + ", ".join(empty) + "."]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# Command line
# ------------------------------------------------------------------------------------------------

def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--notebooks", nargs="*", default=[], metavar="NN",
                   help="only notebooks whose name starts with one of these (default: all)")
    p.add_argument("--markdown", action="store_true", help="print GitHub tables (for the README)")
    p.add_argument("--repeats", type=int, default=REPEATS,
                   help=f"changes per control (default {REPEATS})")
    p.add_argument("--limit-ms", type=float, default=LIMIT_MS,
                   help=f"mark medians over this (default {LIMIT_MS:g})")
    p.add_argument("--no-train", action="store_true", help="skip the Train panels")
    p.add_argument("--json", default=str(ROOT / "bench" / "results" / "panels-cpu.json"),
                   help="where to write every measurement ('' for nowhere)")
    p.add_argument("--from-json", metavar="PATH",
                   help="run nothing: print the tables of a result written before")
    return p.parse_args(argv)


def setup_environment() -> None:
    """The notebooks' environment, in this process: FAST runs, no disk cache, Agg, one thread."""
    os.environ.update(ENV)
    import matplotlib

    matplotlib.use("Agg", force=True)
    import torch

    torch.set_num_threads(1)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.from_json:
        result = json.loads(Path(args.from_json).read_text())
        print(tables(result, markdown=args.markdown))
        return result
    setup_environment()
    import torch

    from bench.losses import machine

    paths = notebook_paths(args.notebooks)
    if not paths:
        raise SystemExit(f"no notebooks/NN_*.py starting with {' or '.join(args.notebooks)}")
    log = (lambda *a: print(*a, file=sys.stderr, flush=True))
    result = {"machine": None, "notebooks": [],
              "args": {"notebooks": [p.stem for p in paths], "repeats": args.repeats,
                       "limit_ms": args.limit_ms, "train": not args.no_train, "env": ENV}}
    load = [os.getloadavg()[0]]
    for path in paths:
        result["notebooks"].append(run_notebook(path, repeats=args.repeats, limit_ms=args.limit_ms,
                                                train=not args.no_train, log=log))
    result["machine"] = machine(torch.device("cpu"), torch.get_num_threads())
    result["load"] = load + [os.getloadavg()[0]]  # 1-minute load averages, start and end
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1))
        log(f"wrote {args.json}")
    print(tables(result, markdown=args.markdown))
    return result


if __name__ == "__main__":
    main()
