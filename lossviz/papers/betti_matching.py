r"""Betti matching in dimension 0 (Stucki, Paetzold, Shit, Menze, Bauer, ICML 2023), in miniature.

A pixel-overlap loss such as Dice can score a segmentation well even when it breaks a thin
structure into pieces.  Betti matching compares the *topology* of the prediction ``P`` and the
ground truth ``G``, feature by feature and at the same place: each connected component of ``P`` is
matched to the component of ``G`` that it overlaps in the comparison image ``C = max(P, G)``.

* :func:`barcode0`: the dimension-0 persistence barcode of an image by union-find on its
  superlevel (or sublevel) filtration, V-construction (pixels are vertices, 4-neighbour edges enter
  when both pixels are present), elder rule.  Each bar keeps its *birth pixel* and *death edge*.
* :func:`betti_matching`: the induced matchings ``Bar(P) -> Bar(C) <- Bar(G)`` by image persistence
  (C's edges in C's order, components labelled by their oldest vertex in P's, resp. G's, order) and
  the Betti matching through the shared bar of ``C``.
* :func:`betti_matching_loss` ``(pred, target)``: the differentiable loss

  .. math::
      L_{BM} = \sum_{(q, q') \in M} 2\,\|q - q'\|^2 + \sum_{q \text{ unmatched}} (b_q - d_q)^2

  on the critical values (an infinite death counts as 0 for the superlevel filtration, 1 for the
  sublevel one).  Its gradient reaches only birth and death pixels.

The conventions follow the official code (nstucki/Betti-matching, ``BettiMatching.py``): vertex
order descending value, equal values by descending pixel index; edges numbered while pixels are
visited in ascending (value, index) order, each numbering its new edges up, left, down, right, the
filtration order being the reverse of that numbering; bars of zero length dropped from the
barcodes of P, G and C, but kept in the image persistence (``valid_image='all'``).

The experiment (:func:`stroke_data`, :func:`train_seg`, :func:`paired_runs`): a small dilated CNN
segments 16 x 16 strokes whose input has gaps, trained with Dice + BCE with and without ``alpha *
BM_0``; scored by Dice, Betti-0 error and BM_0 error.  Panels: :func:`matching_panel` (pure maths)
and :func:`training_panel` (a Train button).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import ipywidgets as W
import numpy as np
import torch
from torch import nn

from .. import checks, plots
from ..train import Run, Trainer, loop, memo
from ..widgets import Panel, run_panel

FILTRATIONS = ("superlevel", "sublevel")
#: Colours: matched pairs, unmatched bars of the prediction, unmatched bars of the ground truth.
MATCH_COLOR, PRED_COLOR, TRUE_COLOR = "#009E73", plots.NEG_COLOR, plots.POS_COLOR
ARM_COLORS = {"dice": "#E69F00", "bm": "#009E73"}
ARM_NAMES = {"dice": "Dice + BCE", "bm": "Dice + BCE + α·BM₀"}


# ------------------------------------------------------------------------------------------------
# Barcodes by union-find
# ------------------------------------------------------------------------------------------------

@dataclass
class Filtration:
    """The V-construction filtration of one (possibly padded) image, as the official code orders it.

    ``order``: pixels in filtration order; ``rank[p]``: position of pixel ``p`` in it;
    ``edges``: E x 2 pixel pairs in filtration order; ``edge_pixel``: the pixel whose value each
    edge takes (the later of its two ends; the one that numbered it)."""

    shape: tuple
    order: np.ndarray
    rank: np.ndarray
    edges: np.ndarray
    edge_pixel: np.ndarray


def _grid_edges(m: int, n: int):
    """All 4-neighbour edges (u, v) of an m x n grid and, for each, its direction seen from u and v
    (0 up, 1 left, 2 down, 3 right: the order in which the official code numbers a pixel's edges)."""
    idx = np.arange(m * n).reshape(m, n)
    h = np.stack([idx[:, :-1].ravel(), idx[:, 1:].ravel()], 1)        # u left of v
    v = np.stack([idx[:-1, :].ravel(), idx[1:, :].ravel()], 1)        # u above v
    e = np.concatenate([h, v])
    dir_u = np.concatenate([np.full(len(h), 3), np.full(len(v), 2)])  # from u: right, down
    dir_v = np.concatenate([np.full(len(h), 1), np.full(len(v), 0)])  # from v: left, up
    return e, dir_u, dir_v


def filtration(values: np.ndarray, kind: str = "superlevel") -> Filtration:
    """The filtration of a 2-D array of ``values`` (see :class:`Filtration`)."""
    values = np.asarray(values, dtype=float)
    m, n = values.shape
    g = -values.ravel() if kind == "superlevel" else values.ravel()   # sublevel order on g
    pix = np.arange(m * n)
    visit = np.lexsort((pix, -g))              # the official loop: largest g first, ties by pixel index
    order = visit[::-1]                        # filtration: smallest g first, ties by descending index
    rank = np.empty(m * n, dtype=np.int64)
    rank[order] = pix
    pos = np.empty(m * n, dtype=np.int64)
    pos[visit] = pix
    e, du, dv = _grid_edges(m, n)
    u_first = pos[e[:, 0]] < pos[e[:, 1]]      # the end visited first numbers the edge
    owner = np.where(u_first, e[:, 0], e[:, 1])
    dirn = np.where(u_first, du, dv)
    numbering = np.lexsort((dirn, pos[owner]))
    fil = numbering[::-1]
    return Filtration((m, n), order, rank, e[fil], owner[fil])


def _merges(fil: Filtration, *labels: np.ndarray) -> list:
    """Union-find over ``fil``'s edges in filtration order.  Components are labelled, for each array
    in ``labels``, by the smallest label of their pixels (the oldest vertex in that order); when an
    edge joins two components, the younger one dies (elder rule).  Returns, per labelling, the list
    of merges ``(dying label, edge index)`` (one union-find serves all labellings: the components are
    those of ``fil``'s image, only their labels differ)."""
    parent = list(range(len(labels[0])))
    labs = [lab.tolist() for lab in labels]
    outs = [[] for _ in labels]
    pairs = list(zip(labs, outs))
    for k, (x, y) in enumerate(zip(fil.edges[:, 0].tolist(), fil.edges[:, 1].tolist())):
        while parent[x] != x:                       # find, with path halving
            parent[x] = x = parent[parent[x]]
        while parent[y] != y:
            parent[y] = y = parent[parent[y]]
        if x == y:
            continue
        for lab, out in pairs:
            lx, ly = lab[x], lab[y]
            if lx < ly:
                out.append((ly, k))
            else:
                out.append((lx, k))
                lab[x] = ly
        parent[y] = x
    return outs


@dataclass
class Barcode:
    """Dimension-0 bars of one image: ``birth`` pixel, ``death`` pixel (-1 for the infinite bar),
    ``death_edge`` (index into the filtration's edges, -1 for the infinite bar), and their values
    (``death_value`` of the infinite bar: 0 for superlevel, 1 for sublevel, as the official loss)."""

    birth: np.ndarray
    death: np.ndarray
    death_edge: np.ndarray
    birth_value: np.ndarray
    death_value: np.ndarray

    def __len__(self) -> int:
        return len(self.birth)


def _inf_value(kind: str) -> float:
    return 0.0 if kind == "superlevel" else 1.0


def barcode0(values, kind: str = "superlevel", *, fil: Filtration | None = None) -> Barcode:
    """The dimension-0 barcode of a 2-D image (numpy or torch), bars of zero length dropped; the
    infinite bar first, then the finite bars in the order they die."""
    kind = checks.choice(kind, "filtration", FILTRATIONS)
    v = _as_numpy_image(values)
    fil = filtration(v, kind) if fil is None else fil
    return _bars(v.ravel(), fil, _merges(fil, fil.rank)[0], kind)


def _bars(flat: np.ndarray, fil: Filtration, merges: list, kind: str) -> Barcode:
    lab, k = (np.asarray(v, dtype=np.int64) for v in zip(*merges)) if merges else (np.zeros(0, np.int64),) * 2
    born, dead = fil.order[lab], fil.edge_pixel[k]
    keep = flat[born] != flat[dead]                           # bars of zero length are dropped
    births = np.concatenate([fil.order[:1], born[keep]])
    deaths = np.concatenate([[-1], dead[keep]])
    edges = np.concatenate([[-1], k[keep]])
    dv = np.where(deaths >= 0, flat[np.maximum(deaths, 0)], _inf_value(kind))
    return Barcode(births, deaths, edges, flat[births], dv)


def _as_numpy_image(values) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().double().numpy()
    return np.asarray(values, dtype=float)


# ------------------------------------------------------------------------------------------------
# Induced matchings and the Betti matching
# ------------------------------------------------------------------------------------------------

@dataclass
class Matching:
    """The dimension-0 Betti matching of a prediction P and a ground truth G (both padded when
    ``relative``).  ``pairs``: list of ``(i, j)`` (bar i of ``bars_p`` matched to bar j of
    ``bars_g``); ``unmatched_p``, ``unmatched_g``: indices of bars without a partner."""

    bars_p: Barcode
    bars_g: Barcode
    bars_c: Barcode
    pairs: list
    unmatched_p: list
    unmatched_g: list
    shape: tuple
    relative: bool = False
    kind: str = "superlevel"

    def critical_pixels(self) -> np.ndarray:
        """The pixels of P whose values the loss reads (births and finite deaths of P's bars), as a
        boolean mask of the (unpadded) image."""
        used = np.concatenate([self.bars_p.birth, self.bars_p.death[self.bars_p.death >= 0]])
        mask = np.zeros(self.shape, dtype=bool).ravel()
        mask[used] = True
        mask = mask.reshape(self.shape)
        return mask[1:-1, 1:-1] if self.relative else mask


def _induced(fil_x: Filtration, bars_x: Barcode, bars_c: Barcode, merges: list) -> dict:
    """The induced matching Bar(X) -> Bar(C) by image persistence of H0(X_t) -> H0(C_t): C's edges
    in C's order, components labelled by their oldest vertex in X's order.  An image bar (birth
    vertex b, death edge e of C; ``merges`` from :func:`_merges` on C with X's ranks) matches X's
    bar born at b with C's bar that dies at e; image bars of zero or negative length are kept (the
    official ``valid_image='all'``).  Returns {x bar: c bar}."""
    by_birth = dict(zip(bars_x.birth.tolist(), range(len(bars_x))))
    by_death = dict(zip(bars_c.death_edge.tolist(), range(len(bars_c))))     # -1: the infinite bar
    image = [(int(fil_x.order[0]), -1)] + list(zip(fil_x.order[[lab for lab, _ in merges]].tolist(),
                                                   [k for _, k in merges]))
    out = {}
    for b, e in image:
        i, j = by_birth.get(b), by_death.get(e)
        if i is not None and j is not None:
            out[i] = j
    return out


def _pad(x, relative: bool, kind: str):
    if not relative:
        return x
    fill = x.max() if kind == "superlevel" else x.min()
    if isinstance(x, torch.Tensor):
        out = fill.expand(x.shape[0] + 2, x.shape[1] + 2).clone()
    else:
        out = np.full((x.shape[0] + 2, x.shape[1] + 2), fill, dtype=float)
    out[1:-1, 1:-1] = x
    return out


def betti_matching(pred, target, *, relative: bool = False, kind: str = "superlevel") -> Matching:
    """The dimension-0 Betti matching of two 2-D images (likelihoods, or binary maps): barcodes of
    P, G and C = max(P, G) (min for the sublevel filtration), the induced matchings of P and G into
    C, and their composition.  ``relative`` pads each image with its maximum (minimum for sublevel),
    as the official configs do."""
    kind = checks.choice(kind, "filtration", FILTRATIONS)
    p = _pad(_as_numpy_image(pred), relative, kind)
    g = _pad(_as_numpy_image(target), relative, kind)
    c = np.maximum(p, g) if kind == "superlevel" else np.minimum(p, g)
    fp, fg, fc = filtration(p, kind), filtration(g, kind), filtration(c, kind)
    bp, bg = barcode0(p, kind, fil=fp), barcode0(g, kind, fil=fg)
    merges_c, merges_p, merges_g = _merges(fc, fc.rank, fp.rank, fg.rank)    # one pass over C's edges
    bc = _bars(c.ravel(), fc, merges_c, kind)
    into_c_p, into_c_g = _induced(fp, bp, bc, merges_p), _induced(fg, bg, bc, merges_g)
    from_c_g = {j: i for i, j in into_c_g.items()}
    pairs = [(i, from_c_g[j]) for i, j in sorted(into_c_p.items()) if j in from_c_g]
    mp, mg = {i for i, _ in pairs}, {j for _, j in pairs}
    shape = tuple(np.shape(_as_numpy_image(pred)))
    shape = (shape[0] + 2, shape[1] + 2) if relative else shape
    return Matching(bp, bg, bc, pairs, [i for i in range(len(bp)) if i not in mp],
                    [j for j in range(len(bg)) if j not in mg], shape, relative, kind)


def _values(x_flat: torch.Tensor, pixels: np.ndarray, kind: str) -> torch.Tensor:
    """x at ``pixels``, with -1 (an infinite death) read as the official code's 0 or 1."""
    idx = torch.as_tensor(np.maximum(pixels, 0), device=x_flat.device)
    inf = torch.as_tensor(pixels < 0, device=x_flat.device)
    return torch.where(inf, torch.as_tensor(_inf_value(kind), dtype=x_flat.dtype, device=x_flat.device), x_flat[idx])


def matching_loss(pred: torch.Tensor, target: torch.Tensor, m: Matching) -> torch.Tensor:
    """The loss of one image pair from its matching ``m``, differentiable in both images:
    ``sum_pairs 2 ((b_p - b_g)^2 + (d_p - d_g)^2) + sum_unmatched (b - d)^2``."""
    p = _pad(pred, m.relative, m.kind).reshape(-1)
    g = _pad(target, m.relative, m.kind).reshape(-1)
    i = np.asarray([a for a, _ in m.pairs], dtype=np.int64)
    j = np.asarray([b for _, b in m.pairs], dtype=np.int64)
    up, ug = np.asarray(m.unmatched_p, dtype=np.int64), np.asarray(m.unmatched_g, dtype=np.int64)
    bp, bg = m.bars_p, m.bars_g
    matched = 2 * ((_values(p, bp.birth[i], m.kind) - _values(g, bg.birth[j], m.kind)) ** 2
                   + (_values(p, bp.death[i], m.kind) - _values(g, bg.death[j], m.kind)) ** 2).sum()
    lone_p = ((_values(p, bp.birth[up], m.kind) - _values(p, bp.death[up], m.kind)) ** 2).sum()
    lone_g = ((_values(g, bg.birth[ug], m.kind) - _values(g, bg.death[ug], m.kind)) ** 2).sum()
    return matched + lone_p + lone_g


def _check_pair(pred, target) -> tuple[torch.Tensor, torch.Tensor]:
    pred = checks.as_float_tensor(pred, "pred (likelihoods, H x W or B x H x W)", pred.ndim if
                                  isinstance(pred, torch.Tensor) and pred.ndim in (2, 3) else 3)
    target = torch.as_tensor(target, device=pred.device)
    if target.dtype == torch.bool or not target.is_floating_point():
        target = target.to(pred.dtype)
    target = checks.as_float_tensor(target, "target (ground truth, same shape as pred)", pred.ndim)
    if target.shape != pred.shape:
        raise ValueError(f"target must have pred's shape {tuple(pred.shape)}; got {tuple(target.shape)}")
    if min(pred.shape[-2:]) < 2:
        raise ValueError(f"images must be at least 2 x 2; got {tuple(pred.shape[-2:])}")
    return pred, target.to(pred.dtype)


def betti_matching_loss(pred, target, *, relative: bool = False, kind: str = "superlevel") -> torch.Tensor:
    """Dimension-0 Betti matching loss of likelihood maps ``pred`` against ``target`` (H x W, or
    B x H x W averaged over the batch), equal to the official
    ``BettiMatching(pred, target, relative, filtration=kind).loss(dimensions=[0])``.  Differentiable
    in ``pred`` (and ``target``); the gradient reaches only critical pixels.  The matching itself is
    computed on the CPU; the loss stays on the input's device."""
    kind = checks.choice(kind, "filtration", FILTRATIONS)
    pred, target = _check_pair(pred, target)
    if pred.ndim == 2:
        return matching_loss(pred, target, betti_matching(pred, target, relative=relative, kind=kind))
    losses = [matching_loss(p, t, betti_matching(p, t, relative=relative, kind=kind)) for p, t in zip(pred, target)]
    return torch.stack(losses).mean()


def bm_error(pred, target, *, threshold: float = 0.5) -> int:
    """The Betti matching error (dimension 0): the number of unmatched components of the maps
    binarised at ``threshold`` (the loss on binary maps, which is that integer)."""
    p = (_as_numpy_image(pred) > threshold).astype(float)
    g = (_as_numpy_image(target) > threshold).astype(float)
    m = betti_matching(p, g)
    lengths = np.concatenate([m.bars_p.birth_value[m.unmatched_p] - m.bars_p.death_value[m.unmatched_p],
                              m.bars_g.birth_value[m.unmatched_g] - m.bars_g.death_value[m.unmatched_g]])
    return int((lengths != 0).sum())


def n_components(mask) -> int:
    """Number of 4-connected components of a binary image (scipy ``label``)."""
    from scipy.ndimage import label

    return int(label(np.asarray(mask, dtype=bool))[1])


# ------------------------------------------------------------------------------------------------
# The fixture: reference values of the official code
# ------------------------------------------------------------------------------------------------

def fixture_pairs(n: int = 60, seed: int = 0):
    """The random image pairs of the fixture, as ``(P, G, relative, kind)``: sizes 4 x 4 to 9 x 9,
    binary ground truth on even ``k`` and continuous otherwise, every fifth P rounded to thirds (ties),
    relative on every third pair, the sublevel filtration on every fourth."""
    rng = np.random.default_rng(seed)
    for k in range(n):
        m, w = (int(v) for v in rng.integers(4, 10, 2))
        P = rng.random((m, w))
        G = (rng.random((m, w)) > 0.6).astype(float) if k % 2 == 0 else rng.random((m, w))
        if k % 5 == 0:
            P = np.round(P * 3) / 3
        yield P, G, k % 3 == 0, "superlevel" if k % 4 else "sublevel"


#: ``BettiMatching(P, G, relative, filtration=kind).loss(dimensions=[0])`` of the official code
#: (nstucki/Betti-matching, commit 3e7eca2, its ``panel`` and ``gudhi`` imports stubbed and ``np.infty``
#: restored) on :func:`fixture_pairs`: numbers generated once, the code itself is not vendored.
OFFICIAL_LOSSES = (
    3.333333333333333, 0.6491800688825127, 5.268541865170565, 0.03716605715313829,
    5.201241824085935, 1.012206826371616, 0.5391783257050158, 0.8257512542498163,
    3.805203869225026, 0.29579160896210943, 3.7777777777777777, 1.7520719121067712,
    2.092945981762867, 1.371073579832097, 5.604797804742482, 1.5363410540105757,
    2.3485030021530915, 0.9919022977341405, 0.12097074324289574, 3.2447773794914903,
    0.33333333333333337, 0.7590878500833419, 6.746772792934804, 1.3064593789061154,
    0.04318839982703365, 1.5673601606128025, 2.6373384359873495, 1.035511284500557,
    5.5952563530941415, 1.872197721350866, 1.1111111111111112, 0.3883892431905475,
    2.7666208827692396, 0.05465056814833338, 1.0103917550345674, 2.1248450500518383,
    0.005959906156728912, 0.86584488857254, 1.9404667336301593, 1.3935531914420816,
    2.2222222222222223, 1.4849662879575674, 0.5550328572190169, 0.9463228282784832,
    2.4270652232185697, 0.6218875329030876, 5.303948414359096, 2.65376029085294,
    0.2761393080269469, 3.8460829502285074, 5.444444444444445, 0.6525570382628281,
    1.062546812827398, 3.4192069800553524, 1.3501757469580933, 1.7058955864401217,
    0.7696826247908255, 0.25735216538831723, 3.8679245369616417, 2.327397424097899,
)


# ------------------------------------------------------------------------------------------------
# The toy task: strokes with gaps
# ------------------------------------------------------------------------------------------------

def _stroke(rng, size: int) -> list:
    """A random straight 4-connected 1-pixel stroke, endpoints at least 2 px from the border and at
    least 5 px apart."""
    while True:
        (r0, c0), (r1, c1) = rng.integers(2, size - 2, (2, 2))
        if max(abs(r1 - r0), abs(c1 - c0)) >= 5:
            break
    t = np.linspace(0, 1, 4 * size)
    pts = np.stack([np.rint(r0 + t * (r1 - r0)), np.rint(c0 + t * (c1 - c0))], 1).astype(int)
    out = [tuple(pts[0])]
    for r, c in pts[1:]:
        pr, pc = out[-1]
        if (r, c) == (pr, pc):
            continue
        if r != pr and c != pc:                 # a diagonal step: add a pixel to keep it 4-connected
            out.append((r, pc))
        out.append((r, c))
    return out


def stroke_data(n: int, *, seed: int, size: int = 16, gaps: int = 2, blur: float = 0.6, noise: float = 0.35):
    """``n`` images of 1-2 strokes: ``(x, y)``, inputs (n x 1 x size x size) and binary targets
    (n x size x size).  The input has ``gaps`` 3 x 3 holes cut out of the strokes, a Gaussian blur
    ``blur`` and Gaussian noise ``noise``."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    x, y = np.zeros((n, size, size)), np.zeros((n, size, size))
    for k in range(n):
        pix = [p for _ in range(int(rng.integers(1, 3))) for p in _stroke(rng, size)]
        r, c = np.asarray(pix).T
        y[k, r, c] = 1.0
        inp = y[k].copy()
        for g in rng.choice(len(pix), gaps, replace=False):
            gr, gc = pix[g]
            inp[max(gr - 1, 0):gr + 2, max(gc - 1, 0):gc + 2] = 0.0
        x[k] = gaussian_filter(inp, blur) + noise * rng.standard_normal((size, size))
    return torch.tensor(x, dtype=torch.float32)[:, None], torch.tensor(y, dtype=torch.float32)


def seg_net(width: int = 16) -> nn.Module:
    """Four 3 x 3 convolutions (dilations 1, 2, 2, 1; ReLU) and a 1 x 1 convolution to one logit."""
    layers, c = [], 1
    for d in (1, 2, 2, 1):
        layers += [nn.Conv2d(c, width, 3, padding=d, dilation=d), nn.ReLU()]
        c = width
    return nn.Sequential(*layers, nn.Conv2d(c, 1, 1))


def dice_loss(prob: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Soft Dice loss ``1 - (2 sum p g + eps) / (sum p + sum g + eps)`` per image, averaged."""
    inter = (prob * target).sum((-2, -1))
    return (1 - (2 * inter + eps) / (prob.sum((-2, -1)) + target.sum((-2, -1)) + eps)).mean()


def seg_scores(prob, target, *, threshold: float = 0.5, bm: bool = True) -> dict:
    """Scores of likelihood maps against binary targets (N x H x W), binarised at ``threshold``:
    mean hard ``dice``, ``betti0`` error |#components(pred) - #components(truth)| (4-connectivity),
    and ``bm0`` error (unmatched components, :func:`bm_error`) when ``bm``."""
    pred = (np.asarray(prob) > threshold).astype(float)
    tgt = np.asarray(target)
    inter = (pred * tgt).sum((1, 2))
    den = pred.sum((1, 2)) + tgt.sum((1, 2))
    dice = np.where(den > 0, 2 * inter / np.maximum(den, 1), 1.0)
    betti = [abs(n_components(p) - n_components(t)) for p, t in zip(pred, tgt)]
    out = {"dice": float(dice.mean()), "betti0": float(np.mean(betti))}
    if bm:
        out["bm0"] = float(np.mean([bm_error(p, t) for p, t in zip(pred, tgt)]))
    return out


@dataclass(repr=False)
class SegRun(Run):
    """One segmentation run: ``history`` (loss, bm per step), ``evals`` (dice, betti0 on the test
    images every ``eval_every`` steps), ``scores`` (dice, betti0, bm0 at the end) and the first
    test images' inputs, targets and likelihoods (``examples``)."""

    examples: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        s, p = self.scores, self.params
        return (f"SegRun({ARM_NAMES['bm' if p['alpha'] > 0 else 'dice']}, α={p['alpha']:.3g}, seed {p['seed']}: "
                f"Dice {s['dice']:.3f}, Betti-0 error {s['betti0']:.3f}, BM₀ error {s['bm0']:.3f})")


def train_seg(alpha: float = 0.5, *, seed: int = 0, steps: int = 200, warmup: int = 100, batch: int = 4,
              lr: float = 3e-3, n_test: int = 200, relative: bool = False, progress=False) -> SegRun:
    """Train :func:`seg_net` with Dice + BCE (+ ``alpha`` * BM_0 after ``warmup`` steps), Adam,
    ``steps`` steps of ``batch`` fresh images; seed ``seed`` fixes the network, the training images
    and the ``n_test`` test images, so two arms of one seed are paired.  Cached by its parameters."""
    alpha = checks.non_negative(alpha, "alpha (weight of the Betti matching term)")
    params = dict(alpha=float(alpha), seed=checks.integer(seed, "seed"), steps=checks.integer(steps, "steps", 1),
                  warmup=checks.integer(warmup, "warmup"), batch=checks.integer(batch, "batch", 1),
                  lr=float(checks.positive(lr, "lr")), n_test=checks.integer(n_test, "n_test", 1),
                  relative=bool(relative))
    return memo("betti_matching.train_seg", params, lambda: _train(params, progress))


@functools.lru_cache(maxsize=4)
def _split(n_train: int, n_test: int, seed: int):
    """The training and test images of one seed (shared by both arms of a paired run; read-only)."""
    return stroke_data(n_train, seed=10_000 + seed), stroke_data(n_test, seed=20_000 + seed)


def _train(p: dict, progress) -> SegRun:
    (x_tr, y_tr), (x_te, y_te) = _split(p["steps"] * p["batch"], p["n_test"], p["seed"])
    trainer = Trainer(seg_net, lr=p["lr"], seed=p["seed"])
    bce = nn.BCEWithLogitsLoss()

    def step(it: int) -> dict:
        sl = slice((it - 1) * p["batch"], it * p["batch"])
        logits = trainer.model(x_tr[sl])[:, 0]
        prob = torch.sigmoid(logits)
        loss = dice_loss(prob, y_tr[sl]) + bce(logits, y_tr[sl])
        out = {}
        if p["alpha"] > 0 and it > p["warmup"]:
            bm = betti_matching_loss(prob, y_tr[sl], relative=p["relative"])
            loss = loss + p["alpha"] * bm
            out["bm"] = bm
        trainer.update(loss)
        return {"loss": loss, **out}

    def evaluate() -> dict:
        return seg_scores(torch.sigmoid(trainer.model(x_te)[:, 0]), y_te, bm=False)

    history, evals, seconds = trainer.run(step, p["steps"], evaluate=evaluate, eval_every=max(p["steps"] // 4, 1),
                                          progress=progress)
    trainer.model.eval()
    with torch.no_grad():
        prob = torch.sigmoid(trainer.model(x_te)[:, 0])
    scores = seg_scores(prob, y_te)
    examples = {"x": x_te[:16, 0].numpy(), "y": y_te[:16].numpy(), "prob": prob[:16].numpy()}
    return SegRun(dict(p), history, evals, scores, seconds, examples)


def input_scores(n_test: int = 200, *, seed: int = 0) -> dict:
    """The no-learning reference: the test inputs themselves thresholded at 0.5."""
    x, y = stroke_data(n_test, seed=20_000 + seed)
    return seg_scores(x[:, 0].clamp(0, 1), y)


def paired_runs(seeds=range(8), *, alpha: float = 0.5, progress=True, **kw) -> dict:
    """Both arms (``"dice"``: alpha = 0, ``"bm"``: ``alpha``) on each seed, one progress bar for all
    runs: ``{arm: [SegRun per seed]}``.  Seed s gives both arms the same network, batches and test
    images (paired runs)."""
    seeds = [checks.integer(s, "seed") for s in seeds]
    jobs = [(arm, a, s) for s in seeds for arm, a in (("dice", 0.0), ("bm", alpha))]
    out = {"dice": [], "bm": []}

    def step(it: int) -> dict:
        arm, a, s = jobs[it - 1]
        out[arm].append(train_seg(a, seed=s, **kw))
        return {}

    loop(step, len(jobs), desc="paired runs", progress=progress, every=1)
    return out


# ------------------------------------------------------------------------------------------------
# Pictures
# ------------------------------------------------------------------------------------------------

def loss_and_gradient(pred, target, *, relative: bool = False, kind: str = "superlevel"):
    """``(loss, dL/dpred, matching)`` of one 2-D pair, float64."""
    p = torch.as_tensor(pred, dtype=torch.float64).detach().clone().requires_grad_(True)
    t = torch.as_tensor(target, dtype=torch.float64)
    m = betti_matching(p, t, relative=relative, kind=kind)
    loss = matching_loss(p, t, m)
    loss.backward()
    return float(loss.detach()), p.grad.numpy(), m


def diagram_data(m: Matching) -> dict:
    """Points and segments of the persistence diagram of a matching: ``p`` and ``g`` (birth, death)
    of every bar, ``matched`` segments joining matched bars, ``lonely`` segments from each unmatched
    bar to its nearest point of the diagonal (where the loss pushes it)."""
    pp = np.stack([m.bars_p.birth_value, m.bars_p.death_value], 1)
    gg = np.stack([m.bars_g.birth_value, m.bars_g.death_value], 1)
    matched = [(pp[i], gg[j]) for i, j in m.pairs]
    lonely = [(q, np.full(2, q.mean())) for q in [*pp[m.unmatched_p], *gg[m.unmatched_g]]]
    return {"p": pp, "g": gg, "matched": matched, "lonely": lonely}


def example_pair(gap: float = 0.3, blob: float = 0.6, noise: float = 0.05, size: int = 12, seed: int = 0):
    """A likelihood map and its ground truth for the pure-maths panel: the truth is an L-shaped
    stroke; the prediction follows it at 0.9, except for a 2-pixel gap at value ``gap``, and adds a
    spurious blob of height ``blob`` and seeded noise of amplitude ``noise``."""
    g = np.zeros((size, size))
    g[3, 2:size - 2] = 1.0
    g[3:size - 2, size - 3] = 1.0
    p = 0.1 + 0.8 * g
    p[3, 5:7] = gap
    p[size - 4:size - 2, 2:4] = blob
    p = p + noise * np.random.default_rng(seed).standard_normal((size, size))
    return np.clip(p, 0, 1), g


class MatchingView:
    """Three axes that show one Betti matching and update in place: the prediction P with the truth
    outlined and the critical pixels circled, the gradient dL/dP, and the persistence diagram with
    matched bars joined and unmatched bars drawn to the diagonal."""

    def __init__(self, axes, pred, target):
        from matplotlib.collections import LineCollection

        p0, g0 = np.asarray(pred, dtype=float), np.asarray(target, dtype=float)
        self.im = axes[0].imshow(p0, cmap="gray", vmin=0, vmax=1)
        axes[0].contour(g0, levels=[0.5], colors=[TRUE_COLOR], linewidths=1)
        self.crit = axes[0].scatter([], [], s=30, facecolors="none", edgecolors=PRED_COLOR, lw=1.5)
        self.gim = axes[1].imshow(np.zeros_like(p0), cmap=plots.WEIGHT_CMAP, vmin=-1, vmax=1)
        for ax, t in ((axes[0], "P, truth outlined, critical ○"), (axes[1], "gradient dL/dP")):
            ax.set(title=t, xticks=[], yticks=[])
            ax.grid(False)
        ax = axes[2]
        ax.plot([0, 1], [0, 1], color=plots.MUTED, lw=1)
        self.seg_m = ax.add_collection(LineCollection([], colors=MATCH_COLOR, lw=2, label="matched"))
        self.seg_l = ax.add_collection(LineCollection([], colors=plots.MUTED, lw=1, linestyles="--",
                                                      label="unmatched → diagonal"))
        self.dp = ax.scatter([], [], s=40, color=PRED_COLOR, label="bars of P", zorder=3)
        self.dg = ax.scatter([], [], s=70, marker="x", color=TRUE_COLOR, label="bars of G", zorder=3)
        ax.set(xlim=(-0.02, 1.05), ylim=(-0.05, 1.05), xlabel="birth (value)", ylabel="death (value)",
               title="persistence diagram, dim 0")
        ax.legend(loc="upper left", fontsize=8)
        self.state = self.update(p0, g0)

    def update(self, p, g) -> dict:
        loss, grad, m = loss_and_gradient(p, g)
        mask = m.critical_pixels()
        self.im.set_array(p)
        r, c = np.nonzero(mask)
        self.crit.set_offsets(np.c_[c, r] if len(r) else np.empty((0, 2)))
        scale = max(float(np.abs(grad).max()), 1e-12)
        self.gim.set_array(grad)
        self.gim.set_clim(-scale, scale)
        d = diagram_data(m)
        self.dp.set_offsets(d["p"])
        self.dg.set_offsets(d["g"])
        self.seg_m.set_segments(d["matched"])
        self.seg_l.set_segments(d["lonely"])
        support = int((np.abs(grad) > 0).sum())
        self.state = {"loss": loss, "grad": grad, "critical": mask, "support": support, "matching": m,
                      "n_matched": len(m.pairs), "n_unmatched": len(m.unmatched_p) + len(m.unmatched_g),
                      "status": f"L_BM = {loss:.3f}; {len(m.pairs)} matched, {len(m.unmatched_p)} unmatched in P, "
                                f"{len(m.unmatched_g)} in G; gradient on {support} of {np.size(p)} pixels"}
        return self.state


def matching_figure(pred, target):
    """``(fig, view)``: a :class:`MatchingView` of one pair in a new figure."""
    fig, axes = plots.new_figure(3, width=3.3, height=3.3)
    return fig, MatchingView(axes[0], pred, target)


def matching_panel(gap: float = 0.3, blob: float = 0.6, noise: float = 0.0) -> Panel:
    """Pure maths: move the depth of a gap, the height of a spurious blob and the noise of a
    prediction (:func:`example_pair`); see the critical pixels, the gradient of L_BM and the matched
    persistence diagram."""
    style = dict(continuous_update=True, readout_format=".2f")
    controls = {"gap": W.FloatSlider(value=gap, min=0.0, max=0.9, step=0.05, description="gap value", **style),
                "blob": W.FloatSlider(value=blob, min=0.0, max=0.9, step=0.05, description="blob height", **style),
                "noise": W.FloatSlider(value=noise, min=0.0, max=0.2, step=0.01, description="noise", **style)}
    fig, view = matching_figure(*example_pair(gap, blob, noise))
    return Panel(controls, fig, lambda v: view.update(*example_pair(v["gap"], v["blob"], v["noise"])))


def plot_examples(axes, runs: dict, idx) -> None:
    """Input, truth and both arms' predictions (binarised at 0.5) for test images ``idx``, one row
    each, with the number of components written on each."""
    base, bm = runs["dice"], runs["bm"]
    for row, k in enumerate(idx):
        ex = base.examples
        images = [(ex["x"][k], "input", False), (ex["y"][k], "truth", True),
                  (ex["prob"][k] > 0.5, ARM_NAMES["dice"], True), (bm.examples["prob"][k] > 0.5, "+ α·BM₀", True)]
        for col, (img, title, count) in enumerate(images):
            ax = axes[row, col]
            ax.imshow(img, cmap="gray", vmin=0, vmax=1)
            ax.set(xticks=[], yticks=[])
            ax.grid(False)
            if count:
                title = f"{title}: β₀ = {n_components(img)}"
            ax.set_title(title, fontsize=10)


def pick_examples(runs: dict, n: int = 4) -> list:
    """Indices of ``n`` of the stored test images: first those where the two arms' predictions have
    different Betti-0 errors, then the others, in test order."""
    ex_d, ex_b = runs["dice"].examples, runs["bm"].examples
    truth = [n_components(y) for y in ex_d["y"]]
    err = {arm: [abs(n_components(p > 0.5) - t) for p, t in zip(ex["prob"], truth)]
           for arm, ex in (("dice", ex_d), ("bm", ex_b))}
    differ = [k for k in range(len(truth)) if err["dice"][k] != err["bm"][k]]
    return (differ + [k for k in range(len(truth)) if k not in differ])[:n]


def plot_curves(axes, runs: dict, warmup: int) -> None:
    """Test Dice and Betti-0 error along training for the runs in ``runs`` ({arm: SegRun})."""
    for arm, run in runs.items():
        for ax, key in zip(axes, ("dice", "betti0")):
            ax.plot(run.evals["iter"], run.evals[key], "o-", color=ARM_COLORS[arm], label=ARM_NAMES[arm])
    for ax, (key, label) in zip(axes, (("dice", "test Dice"), ("betti0", "test Betti-0 error"))):
        ax.axvline(warmup, color=plots.MUTED, ls=":", lw=1)
        ax.set(xlabel="step", ylabel=label, title=label)
    axes[0].plot([], [], ":", color=plots.MUTED, label="BM₀ switched on")
    axes[0].legend(loc="lower right", fontsize=9)


def training_panel(*, alpha: float = 0.5, warmup: int = 100, seed: int = 0, steps: int = 200, autorun: bool = True,
                   **kw) -> Panel:
    """Train both arms of one seed (Dice + BCE, and + ``alpha`` BM_0 switched on after ``warmup``
    steps) with a Train button; runs are cached by their settings."""
    style = dict(continuous_update=False, style={"description_width": "initial"})
    controls = {"alpha": W.FloatSlider(value=alpha, min=0.0, max=2.0, step=0.1, description="α", **style),
                "warmup": W.IntSlider(value=warmup, min=0, max=steps - 25, step=25, description="warm-up", **style),
                "seed": W.IntSlider(value=seed, min=0, max=15, description="seed", **style)}

    def run(v, progress):
        base = train_seg(0.0, seed=v["seed"], steps=steps, warmup=v["warmup"], **kw)
        return {"dice": base, "bm": train_seg(v["alpha"], seed=v["seed"], steps=steps, warmup=v["warmup"],
                                              progress=progress, **kw)}

    def draw(axes, runs, v):
        plot_curves(axes[0, :2], runs, v["warmup"])
        ex = runs["bm"].examples
        axes[0, 2].imshow(ex["prob"][0], cmap="gray", vmin=0, vmax=1)
        axes[0, 2].contour(ex["y"][0], levels=[0.5], colors=[TRUE_COLOR], linewidths=1)
        axes[0, 2].set(title="with BM₀: a test image", xticks=[], yticks=[])
        axes[0, 2].grid(False)
        return {"scores": {arm: r.scores for arm, r in runs.items()}}

    def describe(runs):
        return " | ".join(f"{ARM_NAMES[a]}: Dice {r.scores['dice']:.3f}, Betti-0 error {r.scores['betti0']:.3f}"
                          for a, r in runs.items())

    return run_panel(controls, run, draw, ncols=3, width=3.3, height=3.2, autorun=autorun, describe=describe)
