"""ipywidgets panels: the papers' knobs wired to plots and to real training runs.

Every factory returns a :class:`Panel`: ``panel.controls`` (name -> widget), ``panel.fig`` (one
persistent matplotlib figure whose artists are updated) and ``panel.state`` (what was last drawn).
Tests drive a panel without a browser by setting ``panel.controls["beta"].value = 100``.
Sliders carry their valid ranges, so a value out of range is clamped, never passed to a loss.
"""

from __future__ import annotations

from typing import Callable

import ipywidgets as W
import numpy as np
import torch

from . import plots
from .train import in_voila
from .pairs import PAIR_LOSSES
from .similarity import pair_masks
from .weights import active_fraction, pair_weights, weight_curve

#: The knobs each loss of :data:`lossviz.pairs.PAIR_LOSSES` reads.
LOSS_KNOBS = {
    "ms": ("alpha", "beta", "lam", "eps", "mining", "weighting"),
    "contrastive": ("lam",),
    "triplet": ("margin",),
    "binomial": ("alpha", "beta", "lam"),
    "lifted": ("lam",),
}


def knob_controls(**values) -> dict:
    """Sliders for the pair-loss knobs, with the ranges the notebooks allow (log sliders for scales)."""
    v = dict(alpha=2.0, beta=50.0, lam=0.5, eps=0.1, margin=0.1, mining=True, weighting=True) | values
    style = dict(continuous_update=False, style={"description_width": "initial"})
    return {
        "alpha": W.FloatLogSlider(value=v["alpha"], base=10, min=-2, max=np.log10(20), step=0.05,
                                  description="α (positive scale)", readout_format=".3g", **style),
        "beta": W.FloatLogSlider(value=v["beta"], base=10, min=0, max=np.log10(200), step=0.05,
                                 description="β (negative scale)", readout_format=".3g", **style),
        "lam": W.FloatSlider(value=v["lam"], min=-1.0, max=1.0, step=0.05, description="λ (threshold)", **style),
        "eps": W.FloatSlider(value=v["eps"], min=0.0, max=0.8, step=0.02, description="ε (mining margin)", **style),
        "margin": W.FloatSlider(value=v["margin"], min=0.0, max=1.0, step=0.02, description="triplet margin", **style),
        "mining": W.Checkbox(value=v["mining"], description="MS mining", indent=False),
        "weighting": W.Checkbox(value=v["weighting"], description="MS weighting", indent=False),
    }


def knobs_for(loss: str, values: dict) -> dict:
    """The keyword arguments of ``loss`` taken from a panel's control values."""
    return {k: values[k] for k in LOSS_KNOBS[loss] if k in values}


def _in_kernel() -> bool:
    from IPython import get_ipython

    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def _live_canvas(fig):
    """Give ``fig`` an ipympl canvas widget (in a running kernel), so that a redraw updates the
    figure in place in JupyterLab and Voila instead of sending a new image.  ``None`` elsewhere."""
    if not _in_kernel():
        return None
    try:
        from ipympl.backend_nbagg import Canvas, FigureManager
    except ImportError:
        return None
    canvas = Canvas(fig)
    FigureManager(canvas, 0)  # the manager gives the canvas its toolbar and resize handling
    canvas.header_visible = False
    return canvas


class Panel:
    """Controls + one persistent figure + a redraw function ``draw(values) -> state``.

    In a notebook the figure is an ipympl canvas widget: a control change updates the artists and
    redraws in place (smooth in JupyterLab and Voila, and nothing new is printed, so nbval sees no
    change).  Without a browser (``nbconvert --execute``, tests) the canvas keeps a PNG snapshot of
    the last drawing, which is what a saved notebook shows before it is run.
    """

    def __init__(self, controls: dict, fig, draw: Callable[[dict], dict], *, extra=(), layout=None,
                 freeze_layout: bool = True):
        self.controls, self.fig, self._draw = controls, fig, draw
        self.canvas = _live_canvas(fig)
        self.status = W.HTML()
        self.state: dict = {}
        self.redraws = 0
        self._extra = list(extra)
        self._layout = layout
        self._freeze = freeze_layout
        self._freeze_cid = None
        self.initial = self.values()
        self.reset_button = W.Button(description="reset", icon="undo", tooltip="back to the values the panel started with",
                                     layout=W.Layout(width="90px"))
        self.reset_button.on_click(lambda _b: self.reset())
        self._holding = False
        for control in controls.values():
            if isinstance(control, W.ValueWidget):
                control.observe(lambda _change: None if self._holding else self.update(), names="value")
        self.update()

    def values(self) -> dict:
        return {k: c.value for k, c in self.controls.items() if isinstance(c, W.ValueWidget)}

    def reset(self) -> None:
        """Put every control back to the value it had when the panel was made, and redraw once."""
        self._holding = True
        try:
            for key, value in self.initial.items():
                self.controls[key].value = value
        finally:
            self._holding = False
        self.update()

    def relayout(self) -> None:
        """Let the next draw lay the figure out again (after its content changed shape)."""
        if self.fig.get_layout_engine() is not None:
            self.fig.set_layout_engine("constrained")

    def _freeze_at_next_draw(self) -> None:
        """Keep the layout that the figure's next drawing computes (constrained layout runs once,
        not on every change: a slider then only moves artists, which halves a redraw).

        The layout is taken from the first real drawing (the browser's, or the saved snapshot's)
        rather than from a drawing of its own: a page with several panels opens faster."""
        engine = self.fig.get_layout_engine()
        if not self._freeze or engine is None or type(engine).__name__ == "PlaceHolderLayoutEngine" \
                or self._freeze_cid is not None:
            return
        if hasattr(engine, "set"):  # room for tick labels that grow later (0.5 -> 0.005)
            engine.set(w_pad=0.15, h_pad=0.08)

        def freeze(_event) -> None:
            self.fig.canvas.mpl_disconnect(self._freeze_cid)
            self._freeze_cid = None
            self.fig.set_layout_engine("none")

        self._freeze_cid = self.fig.canvas.mpl_connect("draw_event", freeze)

    def update(self) -> None:
        """Redraw the figure from the current control values (its layout is fixed at the first drawing)."""
        self.state = self._draw(self.values()) or {}
        self.status.value = self.state.get("status", "")
        self.redraws += 1
        self._freeze_at_next_draw()
        if self.canvas is not None:
            self.canvas.draw_idle()
            if self.canvas.syncing_data_url and not in_voila():  # no browser attached yet: keep
                self.canvas._repr_mimebundle_()                    # the static snapshot fresh

    @property
    def widget(self) -> W.Widget:
        """The panel's widget tree (controls, a reset button and the status line, figure), built once.

        A slider whose description is long gets it as a label above its track, so that every track
        keeps a usable length (a 300-px slider with a long description would leave none)."""
        if getattr(self, "_widget", None) is None:
            rows = self._layout or [W.HBox(list(self.controls.values()), layout=W.Layout(flex_flow="row wrap"))]
            rows = [_label_long_sliders(row) for row in rows]
            view = self.canvas if self.canvas is not None else W.HTML("(the figure shows in a notebook)")
            tools = [self.reset_button]
            if any(isinstance(c, _SLIDERS) for c in self.controls.values()):
                tools.append(W.HTML(KEYBOARD_HINT))
            status = W.HBox([*tools, self.status], layout=W.Layout(align_items="center", flex_flow="row wrap"))
            self._widget = W.VBox([*rows, *self._extra, status, view])
        return self._widget

    def _repr_mimebundle_(self, **kwargs) -> dict:
        """The live widget, plus a PNG of the figure as drawn now: the static fallback that an
        HTML export (`make html`) shows where no Python runs the sliders.  A Voila page has no use
        for it (the live view draws the figure), so there only the widget is sent."""
        import base64
        import io

        bundle = self.widget._repr_mimebundle_(**kwargs)
        if in_voila():
            return bundle
        png = io.BytesIO()
        self.fig.savefig(png, format="png")
        bundle["image/png"] = base64.b64encode(png.getvalue()).decode("ascii")
        return bundle


#: Shown beside a panel's reset button when it has sliders: how to step a value from the keyboard.
KEYBOARD_HINT = ("<span style='color:#666; font-size:0.9em; margin:0 12px 0 4px'>"
                 "click a slider, then ← / → step it</span>")
#: A slider description longer than this many characters moves to a label above the track.
LONG_DESCRIPTION = 14
_SLIDERS = (W.FloatSlider, W.FloatLogSlider, W.IntSlider, W.FloatRangeSlider, W.IntRangeSlider,
            W.SelectionSlider, W.SelectionRangeSlider)


def _label_long_sliders(widget: W.Widget) -> W.Widget:
    """``widget`` with every slider inside it whose description is long replaced by a box that puts
    the description above a full-width track (the slider object itself is kept: its value, its
    observers and the panel's ``controls`` entry are unchanged)."""
    if isinstance(widget, _SLIDERS) and len(widget.description) > LONG_DESCRIPTION:
        label = W.Label(widget.description, layout=W.Layout(margin="0 0 -6px 6px"))
        widget.tooltip = widget.tooltip or widget.description
        widget.description = ""
        if not widget.layout.width:
            widget.layout.width = "320px"
        box = W.VBox([label, widget], layout=W.Layout(margin="0 6px 0 0", display=widget.layout.display))
        widget.layout.observe(lambda change: setattr(box.layout, "display", change["new"]), names="display")
        return box
    if isinstance(widget, W.Box):
        widget.children = tuple(_label_long_sliders(child) for child in widget.children)
        if isinstance(widget, W.HBox) and not widget.layout.flex_flow:
            widget.layout.flex_flow = "row wrap"  # a row of controls wraps on a narrow screen, never clips
    return widget


def _show_only(controls: dict, names) -> None:
    for key, c in controls.items():
        if key in ("alpha", "beta", "lam", "eps", "margin", "mining", "weighting"):
            c.layout.display = None if key in names else "none"


def weights_panel(S, labels, *, losses=("ms", "contrastive", "triplet", "binomial", "lifted"),
                  loss: str = "ms", **knob_values) -> Panel:
    """The S heat-map next to the signed pair weights ``dL/dS`` of the chosen loss, on a fixed batch.

    Pure maths: one autograd call per change."""
    S = torch.as_tensor(S).detach()
    labels = torch.as_tensor(labels)
    controls = {"loss": W.Dropdown(options=list(losses), value=loss, description="loss")}
    controls.update(knob_controls(**knob_values))
    fig, axes = plots.new_figure(2, width=4.6, height=4.0)
    plots.similarity_heatmap(axes[0, 0], S, labels)
    im = plots.weight_heatmap(axes[0, 1], torch.zeros_like(S), labels)

    def draw(v):
        name = v["loss"]
        _show_only(controls, LOSS_KNOBS[name])
        knobs = knobs_for(name, v)
        Wt = pair_weights(PAIR_LOSSES[name], S, labels, signed=True, **knobs)
        plots.set_weight_image(im, Wt, labels)
        axes[0, 1].set_title(f"pair weights of {name}")
        fp, fn = active_fraction(Wt, labels)
        return {"W": Wt, "loss": name, "knobs": knobs, "active": (fp, fn),
                "status": f"<b>{name}</b>: non-zero weight on {fp:.0%} of positive and {fn:.0%} of negative pairs"}

    return Panel(controls, fig, draw)


def ms_curve_panel(pos_sims=(0.55, 0.7, 0.8), neg_sims=(0.1, 0.3, 0.45), **knob_values) -> Panel:
    """MS pair weights against similarity, the anchor's other pairs fixed (no mining, to see the weighting).

    Left: ``w-`` of one negative as its similarity sweeps [-1, 1], with the one-negative sigmoid
    ``sigmoid(beta (S - lam))`` (the binomial limit) dashed.  Right: ``w+`` of one positive.
    The "λ limit" buttons move λ to -10 or +10, where the weights turn into softmaxes (lifted).
    """
    from .pairs import ms_loss

    controls = knob_controls(**knob_values)
    controls = {k: controls[k] for k in ("alpha", "beta", "lam")}
    controls["limit"] = W.ToggleButtons(options=["slider", "λ = -10", "λ = +10"], value="slider",
                                        description="λ limit", style={"button_width": "70px"})
    grid = torch.linspace(-1, 1, 121, dtype=torch.float64)
    fig, axes = plots.new_figure(2, width=4.6, height=3.6)
    (neg_line,) = axes[0, 0].plot(grid, grid * 0, color=plots.NEG_COLOR, lw=2, label="MS $w^-$")
    (sig_line,) = axes[0, 0].plot(grid, grid * 0, color=plots.MUTED, ls="--", label="sigmoid (|N|=1)")
    (pos_line,) = axes[0, 1].plot(grid, grid * 0, color=plots.POS_COLOR, lw=2, label="MS $w^+$")
    for ax, who, kind in ((axes[0, 0], "negative", "-"), (axes[0, 1], "positive", "+")):
        ax.set(xlabel=f"similarity of the {who} pair", ylabel=f"weight $w^{kind}$")
        ax.legend(loc="upper left" if kind == "-" else "upper right")
    others = dict(pos_sims=torch.tensor(pos_sims, dtype=torch.float64),
                  neg_sims=torch.tensor(neg_sims, dtype=torch.float64))

    def draw(v):
        lam = {"slider": v["lam"], "λ = -10": -10.0, "λ = +10": 10.0}[v["limit"]]
        knobs = dict(alpha=v["alpha"], beta=v["beta"], lam=lam, mining=False)
        wn = weight_curve(ms_loss, grid, others["pos_sims"], others["neg_sims"], vary="neg", **knobs)
        wp = weight_curve(ms_loss, grid, others["pos_sims"][1:], others["neg_sims"], vary="pos", **knobs)
        neg_line.set_ydata(wn.numpy())
        sig_line.set_ydata(torch.sigmoid(v["beta"] * (grid - lam)).numpy())
        pos_line.set_ydata(wp.numpy())
        for ax, w in ((axes[0, 0], wn), (axes[0, 1], wp)):
            ax.set_ylim(0, max(float(w.max()), 1e-3) * 1.1 if lam != -10.0 or ax is axes[0, 1] else 1.05)
        axes[0, 0].set_title(f"negative pair, β={v['beta']:.3g}, λ={lam:g}")
        axes[0, 1].set_title(f"positive pair, α={v['alpha']:.3g}, λ={lam:g}")
        return {"w_neg": wn, "w_pos": wp, "lam": lam}

    return Panel(controls, fig, draw)


def training_panel(*, data: str = "digits", dim: int = 2, iters: int = 300, loss: str = "ms",
                   autorun: bool = True, **knob_values) -> Panel:
    """Re-train with other knob values: a Train button runs :func:`lossviz.train.train` (cached by
    parameters, so returning to a setting is instant) and redraws the learning curves and, for 2-D
    embeddings, the test embeddings on the circle after training (MAP@R otherwise).

    Besides the loss knobs: an MS preset (paper / official code / pytorch-metric-learning / MLRC),
    the embedding dimension, and K, the samples per class in a P x K batch (K = 1: no positives)."""
    from .pairs import MS_PRESETS
    from .train import DEFAULT_PK, train

    p_default, k_default = DEFAULT_PK.get(data, (5, 8))
    controls = {"loss": W.Dropdown(options=list(PAIR_LOSSES), value=loss, description="loss")}
    controls.update(knob_controls(**knob_values))
    controls["preset"] = W.Dropdown(options=["custom", *MS_PRESETS], value="custom", description="MS preset")
    controls["dim"] = W.Dropdown(options=sorted({2, 3, 16, dim}), value=dim, description="dim", layout=W.Layout(width="150px"))
    controls["k"] = W.Dropdown(options=sorted({1, 2, 4, 8, k_default}), value=k_default,
                               description=f"K (P={p_default})", layout=W.Layout(width="150px"))
    controls["seed"] = W.BoundedIntText(value=0, min=0, max=99, description="seed", layout=W.Layout(width="140px"))

    def apply_preset(change):
        if change["new"] != "custom":
            for key, value in MS_PRESETS[change["new"]].items():
                controls[key].value = value

    def setting(v) -> dict:
        return dict(loss=v["loss"], dim=v["dim"], k=v["k"], seed=v["seed"], knobs=knobs_for(v["loss"], v))

    def run(v, progress):
        s_ = setting(v)
        return train(s_["loss"], data=data, dim=s_["dim"], iters=iters, p=p_default, k=s_["k"],
                     seed=s_["seed"], progress=progress, **s_["knobs"])

    def show_relevant(v):
        _show_only(controls, LOSS_KNOBS[v["loss"]])
        controls["preset"].layout.display = None if v["loss"] == "ms" else "none"

    def draw(axes, run, _v):
        flat = axes.ravel()  # 2 x 2: fits a notebook's width (and a projector) at full size
        plots.learning_curves(flat[:3], {run.params["loss"]: run})
        if run.params["dim"] == 2:
            plots.circle(flat[3], run.emb_after, run.y_test, lam=run.params.get("knob_lam"),
                         title="test embeddings after training")
        else:
            plots.learning_curves(flat[3:], {run.params["loss"]: run}, what=("map_at_r",))
        return {"run": run, "status": f"{run!r} in {run.seconds:.1f} s"}

    def layout(button):
        return [W.HBox([controls["loss"], controls["preset"], controls["dim"], controls["k"], controls["seed"], button]),
                W.HBox([c for k, c in controls.items() if k in LOSS_KNOBS["ms"] + ("margin",)],
                       layout=W.Layout(flex_flow="row wrap"))]

    controls["preset"].observe(apply_preset, names="value")
    return run_panel(controls, run, draw, ncols=2, nrows=2, width=4.6, height=3.2, autorun=autorun,
                     setting=setting, on_change=show_relevant, layout=layout)


def compare_panel(runs: dict, *, title: str = "") -> Panel:
    """Per loss, test Recall@1 (or MAP@R) and the fraction of negative pairs still weighted, against
    iterations, for runs already trained (instant)."""
    names = list(runs)
    controls = {
        "show": W.SelectMultiple(options=names, value=tuple(names), description="losses", rows=min(len(names), 8)),
        "metric": W.ToggleButtons(options=[("Recall@1", "recall_at_1"), ("MAP@R", "map_at_r")], value="recall_at_1"),
    }
    fig, axes = plots.new_figure(2, width=5.0, height=3.8)
    metric_ax, active_ax = axes[0]
    metric_lines, active_lines = {}, {}
    for name, run in runs.items():  # every line drawn once; a change shows, hides or re-points them
        color = plots.LOSS_COLORS.get(name)
        metric_lines[name] = metric_ax.plot(run.evals["iter"], run.evals["recall_at_1"], marker=".",
                                            label=name, color=color)[0]
        active_lines[name] = active_ax.plot(run.history["iter"], run.history["active_neg"], label=name,
                                            color=color, lw=1)[0]
    active_ax.set(title="negative pairs with non-zero weight", xlabel="iteration", ylabel="fraction of pairs")
    active_ax.set_yscale("symlog", linthresh=1e-3)
    metric_ax.set(xlabel="iteration")
    metric_ax.legend(loc="best")
    if title:
        fig.suptitle(title)
    names_of = {"recall_at_1": "Recall@1", "map_at_r": "MAP@R"}

    def draw(v):
        metric = v["metric"]
        chosen = {n: runs[n] for n in v["show"]}
        for name, run in runs.items():
            metric_lines[name].set_ydata(run.evals[metric])
            metric_lines[name].set_visible(name in chosen)
            active_lines[name].set_visible(name in chosen)
        values = np.concatenate([r.evals[metric] for r in chosen.values()]) if chosen else np.array([0.0, 1.0])
        low, high = float(values.min()), float(values.max())
        metric_ax.set_ylim(low - 0.05 * (high - low + 1e-3), high + 0.05 * (high - low + 1e-3))
        metric_ax.set(title=f"test {names_of[metric]}", ylabel=names_of[metric])
        best = {n: float(r.evals[metric].max()) for n, r in chosen.items()}
        return {"shown": tuple(chosen), "best": best}

    return Panel(controls, fig, draw)


def mining_panel(S, labels, *, eps: float = 0.1, anchors=None) -> Panel:
    """MS epsilon-mining on a fixed batch: which pairs each anchor keeps as ``eps`` moves."""
    from .mining import ms_mining

    S = torch.as_tensor(S).detach()
    labels = torch.as_tensor(labels)
    controls = {"eps": knob_controls(eps=eps)["eps"]}
    fig, axes = plots.new_figure(1, width=7.0, height=4.4)
    view = plots.mining_view(axes[0, 0], S, labels, eps, anchors=anchors)

    def draw(v):
        mined = ms_mining(S, labels, eps=v["eps"])
        view.update(v["eps"], mined)
        pos, neg = pair_masks(labels)
        fp = float(mined[0].sum() / pos.sum())
        fn = float(mined[1].sum() / neg.sum())
        return {"mined": mined, "status": f"kept: {fp:.0%} of positive and {fn:.0%} of negative pairs "
                                          f"(a larger ε keeps more)"}

    return Panel(controls, fig, draw)




def _progress_bar():
    """A progress bar and ``report(it, total)``, the ``progress`` callback of :func:`lossviz.train.loop`."""
    bar = W.IntProgress(value=0, min=0, max=1, description="training", layout=W.Layout(width="360px"))

    def report(it: int, total: int) -> None:
        bar.max = max(int(total), 1)
        bar.value = int(it)

    return bar, report


def _untrained(axes) -> dict:
    """The figure of a run panel before its first run: blank axes that ask for a press of Train."""
    for ax in axes.ravel():
        ax.clear()
        ax.set_axis_off()
    axes[0, 0].text(0, 0.5, "press Train to run this setting", fontsize=14, transform=axes[0, 0].transAxes)
    return {"status": "press <b>Train</b> to run this setting"}


def run_panel(controls: dict, run: Callable[[dict, Callable], object], draw: Callable, *, ncols: int = 3,
              nrows: int = 1, width: float = 3.8, height: float = 3.3, autorun: bool = True,
              describe: Callable[[object], str] = repr, setting: Callable[[dict], object] = dict,
              on_change: Callable[[dict], None] | None = None,
              layout: Callable[[W.Button], list] | None = None) -> Panel:
    """A Train button for any training run: the generic form of :func:`training_panel`.

    ``run(values, progress)`` trains with the controls' current ``values`` and returns a result;
    it calls ``progress(it, iters)`` as it goes (pass it to :func:`lossviz.train.loop`) and
    should cache itself with :func:`lossviz.train.memo`, so that revisiting a setting is instant.
    ``draw(axes, result, values)`` draws a result into the panel's (cleared) ``nrows x ncols``
    axes and may return a dict that joins ``panel.state``.  Until the first run the figure asks
    for a press of Train; a control changed after the run is flagged in the status line.
    ``panel.train()`` presses the button (tests, notebooks).

    Optional: ``setting(values)`` is what must match the trained run for it to count as current
    (all values by default); ``on_change(values)`` runs on every control change, trained or not
    (to show only the relevant controls, say); ``layout(button)`` returns the rows of widgets
    above the figure (default: the controls and the button in one wrapping row).
    """
    button = W.Button(description="Train", button_style="primary", icon="play")
    progress, report = _progress_bar()
    fig, axes = plots.new_figure(ncols, nrows, width=width, height=height)
    last = {"result": None, "values": None}

    def press(_button=None):
        values = panel.values()
        if last["result"] is not None and setting(values) == setting(last["values"]):
            return last["result"]  # this setting is what the figure shows already: nothing to do
        busy = [c for c in (*controls.values(), panel.reset_button) if hasattr(c, "disabled") and not c.disabled]
        button.disabled, button.description, button.icon = True, "training…", "hourglass-half"
        for c in busy:  # a control moved mid-run would wait for the run anyway: say so by greying it
            c.disabled = True
        panel.status.value = "training… (the controls answer again when the run is done)"
        progress.value = 0
        try:
            last["result"], last["values"] = run(values, report), values
        finally:
            button.disabled, button.description, button.icon = False, "Train", "play"
            for c in busy:
                c.disabled = False
        progress.value = progress.max
        panel.relayout()
        panel.update()
        return last["result"]

    def redraw(v):
        if on_change is not None:
            on_change(v)
        if last["result"] is None:
            return _untrained(axes)
        for ax in axes.ravel():
            ax.clear()
            ax.set_axis_on()
        state = dict(draw(axes, last["result"], last["values"]) or {})
        stale = " (controls changed since: press Train)" if setting(v) != setting(last["values"]) else ""
        state.setdefault("status", describe(last["result"]))
        state["status"] += stale
        return {"result": last["result"], "stale": bool(stale), **state}

    rows = (layout(button) if layout is not None
            else [W.HBox([*controls.values(), button], layout=W.Layout(flex_flow="row wrap"))])
    panel = Panel(controls, fig, redraw, extra=[progress], layout=rows)
    panel.train = press
    panel.button = button
    button.on_click(press)
    if autorun:
        press()
    return panel
