"""Matplotlib views shared by the notebooks.

One colour convention everywhere (Okabe-Ito, readable with colour-blindness):
positive pairs are blue (``POS_COLOR``, they are pulled together), negative pairs are vermillion
(``NEG_COLOR``, they are pushed apart).  Signed pair weights use the same two colours: the
gradient ``dL/dS_ij`` is negative on positives and positive on negatives.

Every function draws into axes it is given (or makes its own) and returns the artists it drew,
so that a widget can update them in place.
"""

from __future__ import annotations

import matplotlib as mpl
import numpy as np
import torch
from matplotlib.colors import LinearSegmentedColormap, TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle, Wedge

POS_COLOR = "#0072B2"   # positive pairs: blue
NEG_COLOR = "#D55E00"   # negative pairs: vermillion
MUTED = "#999999"
#: Signed weights: pull (negative gradient, positives) in blue, push (negative pairs) in vermillion.
WEIGHT_CMAP = LinearSegmentedColormap.from_list("lossviz_weights", [POS_COLOR, "#ffffff", NEG_COLOR])
#: Similarity in [-1, 1].
SIM_CMAP = "cividis"
#: One colour per loss, the same in every notebook (never the pair colours, which mean pull / push).
LOSS_COLORS = {"ms": "#000000", "ms_paper": "#7F7F7F", "ms_mine_only": "#56B4E9", "ms_weight_only": "#009E73",
               "contrastive": "#E69F00", "triplet": "#CC79A7", "binomial": "#8C6D1F",
               "lifted": "#5D3A9B", "raw": MUTED, "pca": MUTED,
               "arcface": "#000000", "arcface_unpg": "#009E73",
               "infonce": "#E69F00", "gm_1st": "#009E73", "gm_2nd": "#5D3A9B", "groco": "#009E73"}


def use_style() -> None:
    """Figure defaults that read on a projector: larger fonts, light grid, no top/right spines.

    In a notebook it also registers the PNG formatter, so a figure left as a cell's last expression
    (or shown by a widget) is drawn as an image."""
    try:
        from IPython import get_ipython

        if get_ipython() is not None:
            from matplotlib_inline.backend_inline import set_matplotlib_formats

            set_matplotlib_formats("png")
    except ImportError:  # plain Python without IPython: nothing to register
        pass
    mpl.rcParams.update({
        "figure.dpi": 90, "savefig.dpi": 110, "font.size": 12, "axes.titlesize": 13,
        "axes.labelsize": 12, "legend.fontsize": 11, "lines.linewidth": 1.8, "axes.grid": True, "grid.alpha": 0.25,
        "axes.spines.top": False, "axes.spines.right": False, "image.interpolation": "nearest",
    })


#: The widest a figure is drawn, in screen pixels: JupyterLab's default output area is 968 px wide,
#: and a 1024-px projector leaves Voila about as much.  A live (ipympl) figure is drawn at its size
#: in pixels with no scroll bar, so a wider one would lose its right-hand plots.
MAX_WIDTH_PX = 920


def new_figure(ncols: int = 1, nrows: int = 1, *, width: float = 4.2, height: float = 3.6, **kw):
    """A figure not registered with pyplot (so notebooks and widgets decide when to show it).

    A figure wider than :data:`MAX_WIDTH_PX` on screen gets a lower dpi, not smaller inches: the
    same picture, text included, drawn smaller, so that it fits the notebook and a projector."""
    size = (width * ncols, height * nrows)
    dpi = min(float(mpl.rcParams["figure.dpi"]), MAX_WIDTH_PX / size[0])
    fig = Figure(figsize=size, dpi=dpi, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


def as_numpy(t) -> np.ndarray:
    """A tensor (any device, with or without grad) or array-like as a float64 numpy array, for drawing."""
    return t.detach().cpu().double().numpy() if isinstance(t, torch.Tensor) else np.asarray(t, dtype=float)


def class_order(labels) -> np.ndarray:
    """Indices that sort a batch by class (stable), so positive pairs form diagonal blocks."""
    return np.argsort(as_numpy(labels), kind="stable")


def outline_classes(ax, labels_sorted) -> None:
    """Draw the same-class blocks of a class-sorted matrix (where the positive pairs are)."""
    start = 0
    for i in range(1, len(labels_sorted) + 1):
        if i == len(labels_sorted) or labels_sorted[i] != labels_sorted[start]:
            ax.add_patch(Rectangle((start - 0.5, start - 0.5), i - start, i - start, fill=False,
                                   edgecolor=POS_COLOR, linewidth=1.4))
            start = i


def similarity_heatmap(ax, S, labels, *, title: str = "similarity S"):
    """S sorted by class, same-class blocks outlined in the positive colour."""
    o = class_order(labels)
    im = ax.imshow(as_numpy(S)[np.ix_(o, o)], cmap=SIM_CMAP, vmin=-1, vmax=1)
    outline_classes(ax, as_numpy(labels)[o])
    ax.set(title=title, xlabel="sample j (sorted by class)", ylabel="anchor i")
    ax.grid(False)
    ax.figure.colorbar(im, ax=ax, shrink=0.8, label="$S_{ij}$ (cosine)")
    return im


def weight_heatmap(ax, W_signed, labels, *, title: str = "pair weights", colorbar: bool = True):
    """Signed pair weights ``dL/dS_ij`` sorted by class: blue pulls (positives), vermillion pushes.

    The colour scale is symmetric and set by the largest weight, so two losses compare by shape."""
    o = class_order(labels)
    W = as_numpy(W_signed)[np.ix_(o, o)]
    vmax = max(np.abs(W).max(), 1e-12)
    im = ax.imshow(W, cmap=WEIGHT_CMAP, norm=TwoSlopeNorm(0.0, -vmax, vmax))
    outline_classes(ax, as_numpy(labels)[o])
    ax.set(title=title, xlabel="sample j (sorted by class)", ylabel="anchor i")
    ax.grid(False)
    if colorbar:
        ax.figure.colorbar(im, ax=ax, shrink=0.8, label=r"$\partial L/\partial S_{ij}$")
    return im


def set_weight_image(im, W_signed, labels) -> None:
    """Update a :func:`weight_heatmap` image in place (for widgets)."""
    o = class_order(labels)
    W = as_numpy(W_signed)[np.ix_(o, o)]
    vmax = max(np.abs(W).max(), 1e-12)
    im.set_data(W)
    im.set_norm(TwoSlopeNorm(0.0, -vmax, vmax))


def weight_curves(ax, s, curves: dict, *, kind: str = "neg", title: str | None = None):
    """Pair weight against the pair's similarity, one line per setting (``{label: w}``)."""
    lines = []
    for label, w in curves.items():
        (line,) = ax.plot(as_numpy(s), as_numpy(w), label=label)
        lines.append(line)
    who = "negative" if kind == "neg" else "positive"
    ax.set(xlabel=f"similarity $S_{{ij}}$ of the {who} pair", ylabel=f"weight $w^{{{'-' if kind == 'neg' else '+'}}}_{{ij}}$",
           title=title or f"{who} pair weight")
    ax.legend(loc="best")
    return lines


def mining_view(ax, S, labels, eps: float, *, anchors=None, mined=None):
    """One row per anchor: its positive (blue) and negative (vermillion) similarities.

    Filled dots are the pairs MS mining keeps, hollow ones are dropped; the bars mark
    ``min_pos - eps`` (negatives to its right are kept) and ``max_neg + eps`` (positives to its left are kept).
    Returns a :class:`MiningView`, whose ``update(eps, mined)`` moves the bars and refills the dots in
    place (what the mining panel does on a slider change).
    """
    return MiningView(ax, S, labels, eps, anchors=anchors, mined=mined)


class MiningView:
    """The artists of :func:`mining_view`: one scatter per anchor (its positives and negatives, their
    fill saying kept or dropped) and two bars per anchor, updated in place by :meth:`update`."""

    def __init__(self, ax, S, labels, eps: float, *, anchors=None, mined=None):
        self.ax, self.S, self.labels = ax, torch.as_tensor(S).detach(), torch.as_tensor(labels)
        Sn, y = as_numpy(self.S), as_numpy(self.labels)
        self.anchors = list(range(min(len(y), 12)) if anchors is None else anchors)
        self.rows = []
        for row, i in enumerate(self.anchors):
            others = np.arange(len(y)) != i
            same, diff = (y == y[i]) & others, (y != y[i])
            cols = np.flatnonzero(same | diff)
            colors = np.where(same[cols], POS_COLOR, NEG_COLOR)
            dots = ax.scatter(Sn[i, cols], np.full(len(cols), row), s=28, edgecolors=colors, zorder=3)
            pos_bar = ax.plot([np.nan] * 2, [row - 0.35, row + 0.35], color=POS_COLOR, lw=2)[0]
            neg_bar = ax.plot([np.nan] * 2, [row - 0.35, row + 0.35], color=NEG_COLOR, lw=2)[0]
            self.rows.append(dict(anchor=i, cols=cols, same=same[cols], colors=colors, dots=dots,
                                  pos_bar=pos_bar, neg_bar=neg_bar,
                                  min_pos=Sn[i, same].min() if same.any() else None,
                                  max_neg=Sn[i, diff].max() if diff.any() else None))
        shown = Sn[self.anchors]
        ax.set(xlabel="similarity to the anchor", ylabel="anchor", xlim=(max(-1.05, shown.min() - 0.15), 1.05))
        ax.set_yticks(range(len(self.anchors)))
        ax.set_ylim(len(self.anchors) - 0.5, -0.5)  # the first anchor on top
        self.update(eps, mined)

    def update(self, eps: float, mined=None) -> None:
        from .mining import ms_mining

        mp, mn = ms_mining(self.S, self.labels, eps=eps) if mined is None else mined
        mp, mn = as_numpy(mp) > 0, as_numpy(mn) > 0
        for r in self.rows:
            i, cols = r["anchor"], r["cols"]
            kept = np.where(r["same"], mp[i, cols], mn[i, cols])
            r["dots"].set_facecolors(np.where(kept, r["colors"], "none"))
            for bar, edge in ((r["pos_bar"], r["min_pos"] is not None and r["min_pos"] - eps),
                              (r["neg_bar"], r["max_neg"] is not None and r["max_neg"] + eps)):
                bar.set_xdata([np.nan] * 2 if edge is False else [edge] * 2)
        self.ax.set_title(f"MS mining, ε = {eps:.2f}: filled = kept")


def circle(ax, emb, labels, *, lam: float | None = None, title: str = "embeddings on the circle"):
    """2-D unit embeddings on the circle, coloured by class (radius offset by class for legibility).

    With ``lam``, the cone ``S > lam`` around class 0's mean direction is shaded: a negative inside
    it is penalised by a loss with threshold ``lam``."""
    z = as_numpy(emb)
    y = as_numpy(labels).astype(int)
    if z.shape[1] != 2:
        raise ValueError(f"circle() draws 2-D embeddings; got {z.shape[1]}-D")
    ang = np.arctan2(z[:, 1], z[:, 0])
    r = 1.0 + 0.04 * (y - y.min())
    ax.add_patch(mpl.patches.Circle((0, 0), 1.0, fill=False, color=MUTED, lw=0.8))
    if lam is not None and -1 < lam < 1:
        c = z[y == y.min()].mean(axis=0)
        mid = np.degrees(np.arctan2(c[1], c[0]))
        half = np.degrees(np.arccos(lam))
        ax.add_patch(Wedge((0, 0), 1.5, mid - half, mid + half, color=NEG_COLOR, alpha=0.08))
    sc = ax.scatter(r * np.cos(ang), r * np.sin(ang), c=y, cmap="tab10", vmin=0, vmax=9, s=9, alpha=0.7)
    ax.set(xlim=(-1.55, 1.55), ylim=(-1.55, 1.55), aspect="equal", title=title, xticks=[], yticks=[])
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(False)
    return sc


def learning_curves(axes, runs: dict, *, what=("loss", "active", "recall_at_1")):
    """Training curves of several runs (``{name: Run}``), one panel per quantity in ``what``:
    ``"loss"``, ``"active"`` (fraction of negative pairs with non-zero weight), ``"recall_at_1"``,
    ``"map_at_r"`` (test metrics)."""
    labels = {"loss": ("training loss", "loss"),
              "active": ("negative pairs with non-zero weight", "fraction of pairs"),
              "recall_at_1": ("test Recall@1", "Recall@1"), "map_at_r": ("test MAP@R", "MAP@R")}
    for ax, key in zip(np.ravel(axes), what):
        for name, run in runs.items():
            color = LOSS_COLORS.get(name)
            if key in ("recall_at_1", "map_at_r"):
                ax.plot(run.evals["iter"], run.evals[key], marker=".", label=name, color=color)
            else:
                h = run.history["loss" if key == "loss" else "active_neg"]
                ax.plot(run.history["iter"], h, label=name, color=color, lw=1)
        ax.set(title=labels[key][0], xlabel="iteration", ylabel=labels[key][1])
        if key == "loss":
            ax.set_yscale("symlog", linthresh=1e-3)
    np.ravel(axes)[0].legend(loc="best")
    return axes


def class_colorbar(fig, mappable, axes, *, label: str = "class"):
    """One discrete colour bar (one tick per class) for :func:`circle` plots sharing the class colours."""
    return fig.colorbar(mappable, ax=axes, boundaries=[k - 0.5 for k in range(11)], ticks=range(10),
                        shrink=0.7, label=label)


def anchor_weights_view(ax, s_pos, s_neg, w_pos, w_neg, *, title: str = "one anchor's pair weights"):
    """One anchor's pair weights against similarity: the positive's pull as a blue stem pointing
    down, each negative's push as a vermillion stem pointing up, with their totals in the legend
    (for the InfoNCE family the two totals are equal)."""
    s_pos, s_neg = np.atleast_1d(as_numpy(s_pos)), as_numpy(s_neg)
    w_pos, w_neg = np.atleast_1d(as_numpy(w_pos)), as_numpy(w_neg)
    artists = []
    for s, w, color, sign, who in ((s_neg, w_neg, NEG_COLOR, 1, "push on negatives"),
                                   (s_pos, w_pos, POS_COLOR, -1, "pull on the positive")):
        artists.append(ax.vlines(s, 0, sign * w, color=color, lw=2, label=f"{who}: total {w.sum():.3g}"))
        artists.append(ax.scatter(s, sign * w, color=color, s=18, zorder=3))
    ax.axhline(0, color=MUTED, lw=0.8)
    ax.set(xlabel="similarity to the anchor (cosine)", ylabel=r"signed weight $\partial \ell / \partial s$ (× τ)",
           title=title)
    ax.legend(loc="best")
    return artists


def move_anchor_weights(ax, stems, s_pos, s_neg, w_pos, w_neg) -> None:
    """Move the stems that :func:`anchor_weights_view` made (``stems``, the artists it
    returned) to new weights, in place: stems, dots, the totals in the legend, and the axis limits
    (collections do not rescale an axis by themselves)."""
    ends = []
    for (lines, dots), s, w, sign in ((stems[:2], s_neg, w_neg, 1), (stems[2:], s_pos, w_pos, -1)):
        s, w = np.atleast_1d(as_numpy(s)), sign * np.atleast_1d(as_numpy(w))
        lines.set_segments([[(x, 0.0), (x, y)] for x, y in zip(s, w)])
        dots.set_offsets(np.column_stack([s, w]))
        ends.append(np.column_stack([s, w]))
    for text, w, who in zip(ax.get_legend().get_texts(), (w_neg, w_pos), ("push on negatives", "pull on the positive")):
        text.set_text(f"{who}: total {float(np.sum(as_numpy(w))):.3g}")
    xy = np.vstack(ends)
    (x0, y0), (x1, y1) = np.minimum(xy.min(0), [np.inf, 0.0]), np.maximum(xy.max(0), [-np.inf, 0.0])
    pad_x, pad_y = 0.05 * max(x1 - x0, 1e-3), 0.05 * max(y1 - y0, 1e-3)
    ax.set(xlim=(x0 - pad_x, x1 + pad_x), ylim=(y0 - pad_y, y1 + pad_y))


def temperature_curves(ax, s_neg, taus, *, cmap: str = "viridis"):
    """The relative penalty ``r`` of a fixed set of negatives, one line per temperature: ``r`` is the
    softmax of their similarities divided by tau (:func:`lossviz.contrastive.relative_penalty`).
    Small tau puts all the weight on the hardest negative; large tau spreads it evenly."""
    s = torch.as_tensor(np.sort(as_numpy(s_neg)), dtype=torch.float64)
    colors = mpl.colormaps[cmap](np.linspace(0.0, 0.85, len(taus)))
    lines = []
    for tau, color in zip(taus, colors):
        r = torch.softmax(s / tau, dim=0)
        (line,) = ax.plot(s.numpy(), r.numpy(), marker="o", ms=3, color=color, label=f"τ = {tau:g}")
        lines.append(line)
    ax.axhline(1 / len(s), color=MUTED, ls="--", lw=1, label=f"uniform 1/{len(s)}")
    ax.set(xlabel="similarity of the negative $s_{ik}$", ylabel="relative penalty $r_{ik}$",
           title="share of the push per negative", yscale="log", ylim=(1e-4, 1.5))
    ax.legend(loc="upper left", fontsize=9)
    return lines
