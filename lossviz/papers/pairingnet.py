r"""PairingNet in miniature (Zhou et al., ECCV 2024): tear photos into fragments, then learn to
**match** (which contour points meet) and to **search** (which fragment fits which).

Two losses on two similarity matrices:

* **matching**, contour point x contour point: a dual-softmax of the point features' dot products
  (:func:`dual_softmax`) under a focal loss (:func:`focal_matching_loss`, :func:`matching_loss`);
* **searching**, fragment x fragment: a multi-positive InfoNCE on L2-normalised fragment
  embeddings (:func:`multi_positive_infonce`, :func:`searching_loss`), with the official code's
  triplet baseline (:func:`triplet_search_loss`).

The data are real photos (scikit-learn's two bundled images) cut into tiles, each torn along random
frayed cut lines, deterministically from a seed (:func:`tear`): every fragment has an ordered
contour, and every pair of neighbouring fragments the ground-truth correspondence of their contour
points.  Loss defaults are the official code's (zhourixin/PairingNet): search ``tau = 0.12`` and
intra-set weight ``0.5``; matching ``tau_m = sqrt(d)`` (8 for its d = 64), focal ``alpha = 0.55``,
``gamma = 8``, ``x 400``.  As in the paper, search (stage 2) runs on the frozen point features of
the matching network (stage 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.colors import LinearSegmentedColormap
from torch import nn

from .. import checks
from ..similarity import masked_logsumexp, upcast
from ..train import Run, Trainer, memo

# ----------------------------------------------------------------------------------------------
# Matching: which contour points meet
# ----------------------------------------------------------------------------------------------

#: The large finite value that masks padding before both softmaxes (official code; -inf would turn
#: a fully padded row into 0/0 = NaN).
PAD = -1e9

#: Focal-loss settings: the official ``FocalLoss``, its ``ori_focal_loss`` (gamma 2, no alpha,
#: x1000; written here as alpha = 0.5 and scale 2000), and binary cross-entropy (gamma = 0).
FOCAL_PRESETS = {
    "official": dict(alpha=0.55, gamma=8.0, scale=400.0),
    "ori_focal": dict(alpha=0.5, gamma=2.0, scale=2000.0),
    "bce": dict(alpha=0.5, gamma=0.0, scale=400.0),
}


def _bool_mask(M, shape, name: str, device) -> torch.Tensor:
    M = torch.as_tensor(M, device=device)
    if M.dtype != torch.bool:
        raise ValueError(f"{name} must be a boolean mask (True = positive); got dtype {M.dtype}. "
                         f"Use {name}.bool() or {name} > 0.")
    if tuple(M.shape) != tuple(shape):
        raise ValueError(f"{name} must have the shape of the matrix, {tuple(shape)}; got {tuple(M.shape)}")
    return M


def _matrices(x, name: str) -> torch.Tensor:
    """A float n x m matrix (one fragment pair) or a B x n x m batch of them."""
    nd = x.ndim if isinstance(x, torch.Tensor) else np.ndim(x)
    if nd not in (2, 3):
        raise ValueError(f"{name} must be n x m (one fragment pair) or B x n x m (a batch); got {nd} dimension(s)")
    return checks.as_float_tensor(x, name, nd)


def _valid_mask(valid, shape, device):
    return None if valid is None else _bool_mask(valid, shape, "valid", device)


def dual_softmax(S, valid=None, *, tau: float = 1.0) -> torch.Tensor:
    r"""PairingNet's matching matrix: :math:`P = \mathrm{softmax}_{\text{row}}(S/\tau) \odot
    \mathrm{softmax}_{\text{column}}(S/\tau)`.

    ``S`` is n x m (one fragment pair) or B x n x m; ``valid`` (same shape, bool) marks the entries
    between real contour points.  Padding is set to ``PAD = -1e9`` *before* both softmaxes
    (official code) and to exactly 0 in ``P``.  ``P_ij`` is large only if ``j`` is ``i``'s
    preferred partner *and* ``i`` is ``j``'s, and no row or column of ``P`` sums to more than 1.
    """
    S = upcast(_matrices(S, "S"))
    tau = checks.temperature(tau)
    valid = _valid_mask(valid, S.shape, S.device)
    z = S / tau
    if valid is not None:
        z = z.masked_fill(~valid, PAD)
    P = torch.softmax(z, dim=-1) * torch.softmax(z, dim=-2)
    return P if valid is None else P.masked_fill(~valid, 0.0)


def focal_matching_loss(P, gt, valid=None, *, alpha: float = 0.55, gamma: float = 8.0,
                        scale: float = 400.0, eps: float = 1e-9) -> torch.Tensor:
    r"""PairingNet's matching loss: a focal loss on the dual-softmax matrix ``P``,

    .. math::
        L = \text{scale}\cdot\operatorname*{mean}_{(i,j)\in\mathcal P\cup\mathcal N}
        \begin{cases} -\alpha\,(1-P_{ij})^\gamma \log(P_{ij}+\epsilon) & (i,j)\in\mathcal P \\
                      -(1-\alpha)\,P_{ij}^\gamma \log(1-P_{ij}+\epsilon) & (i,j)\in\mathcal N \end{cases}

    :math:`\mathcal P` = the ground-truth correspondences ``gt``, :math:`\mathcal N` = every other
    valid entry.  **One** mean over positives and negatives together (official code), so the many
    negatives set the normaliser.  Defaults: the official ``alpha = 0.55, gamma = 8, x400`` and
    ``eps = 1e-9`` (``P`` underflows to exactly 0).  ``gamma = 0`` is a weighted cross-entropy.
    """
    P = upcast(_matrices(P, "P"))
    gt = _bool_mask(gt, P.shape, "gt", P.device)
    valid = _valid_mask(valid, P.shape, P.device)
    alpha = checks.fraction(alpha, "alpha (the positives' share)")
    gamma = checks.non_negative(gamma, "gamma")
    scale = checks.positive(scale, "scale")
    eps = checks.positive(eps, "eps")
    pos = gt if valid is None else gt & valid
    neg = ~gt if valid is None else valid & ~gt
    if checks.validation_enabled():
        if not bool(pos.any()):
            raise ValueError("gt marks no valid correspondence: a matching loss needs at least one "
                             "true point pair (are the fragments neighbours? is gt inside valid?)")
        if not bool(((P >= 0) & (P <= 1)).all()):
            raise ValueError("P must hold probabilities in [0, 1]; pass dual_softmax(S), not S itself")
    tiny = torch.finfo(P.dtype).tiny      # keeps x**gamma differentiable at x = 0 when gamma < 1
    l_pos = -alpha * (1 - P).clamp(min=tiny) ** gamma * torch.log(P + eps)
    l_neg = -(1 - alpha) * P.clamp(min=tiny) ** gamma * torch.log(1 - P + eps)
    total = torch.where(pos, l_pos, 0.0).sum() + torch.where(neg, l_neg, 0.0).sum()
    return scale * total / (pos.sum() + neg.sum())


def matching_loss(S, gt, *, valid=None, tau_m: float = 8.0, alpha: float = 0.55, gamma: float = 8.0,
                  scale: float = 400.0) -> torch.Tensor:
    r"""The matching loss as a function of the point features' dot products ``S = F_s F_t^T``:
    :func:`focal_matching_loss` of :func:`dual_softmax` ``(S / tau_m)``.  ``tau_m = sqrt(d)`` in
    the official code (8 for its 64-d features).  A function of ``S``, so
    :func:`lossviz.pair_weights` reads its weights ``dL/dS_ij``."""
    P = dual_softmax(S, valid, tau=tau_m)
    return focal_matching_loss(P, gt, valid, alpha=alpha, gamma=gamma, scale=scale)


# ----------------------------------------------------------------------------------------------
# Searching: which fragment fits which
# ----------------------------------------------------------------------------------------------

def multi_positive_infonce(S, M, *, tau: float = 0.12, positives: str = "sum_prob") -> torch.Tensor:
    r"""PairingNet's searching loss: InfoNCE with several positives per row, on a similarity matrix.

    .. math::
        \ell = \frac1A \sum_i -\log \sum_j M_{ij}\,\mathrm{softmax}_j(S_{i\cdot}/\tau)
             = \frac1A \sum_i \Big[\operatorname{LSE}_j \frac{S_{ij}}{\tau}
                                   - \operatorname{LSE}_{j:\,M_{ij}} \frac{S_{ij}}{\tau}\Big]

    ``S`` (A x N) holds the cosines of A query fragments and N candidates, ``M`` (A x N, bool)
    marks the candidates that fit.  The positives' probabilities are *summed* inside the log
    (official ``compute_loss``), so with one positive per row this is cross-entropy.
    ``positives="mean_log"`` takes SupCon's form, ``mean_{j: M_ij} -log softmax_j``, for
    comparison.  A row without a positive is refused (with value checks off: left out).

    Weights: ``dl/dS_ij = (softmax_j - [M_ij] q_ij) / (tau A)``, where ``q_ij`` is ``j``'s share of
    the row's positive probability: the positives split the pull in proportion to how likely each
    already is.  With ``"mean_log"`` every positive gets ``1/|M_i|`` instead of ``q_ij``.
    """
    S = checks.as_float_tensor(S, "S", 2)
    M = _bool_mask(M, S.shape, "M", S.device)
    tau = checks.temperature(tau)
    checks.choice(positives, "positives", ("sum_prob", "mean_log"))
    has_pos = M.any(dim=1)
    if checks.validation_enabled() and not bool(has_pos.all()):
        raise ValueError(f"{int((~has_pos).sum())} row(s) of M have no positive: every query fragment "
                         "needs at least one fitting candidate in the batch")
    z = upcast(S) / tau
    lse = torch.logsumexp(z, dim=1)
    if positives == "sum_prob":
        per_row = lse - masked_logsumexp(z, M)          # +inf on a row without positive: left out below
    else:
        per_row = torch.where(M, lse[:, None] - z, 0.0).sum(dim=1) / M.sum(dim=1).clamp(min=1)
    return torch.where(has_pos, per_row, 0.0).sum() / has_pos.sum().clamp(min=1)


def searching_loss(g_s, g_t, M_st, *, tau: float = 0.12, intra_weight: float = 0.5,
                   positives: str = "sum_prob") -> torch.Tensor:
    r"""PairingNet's total searching loss on source and target fragment embeddings,

    .. math::
        L = \ell(s, t) + \lambda\,\frac{\ell(s, s) + \ell(t, t)}{2}, \qquad \lambda = 0.5,

    each :math:`\ell` a :func:`multi_positive_infonce` on cosines of the L2-normalised embeddings.
    ``M_st`` marks the (source, target) pairs that fit.  In the intra-set terms a fragment is
    positive only with itself (official code), so they push the other fragments of the same set
    apart ("only negatives", as the code names their weight).
    """
    g_s = checks.as_float_tensor(g_s, "g_s (source embeddings)", 2)
    g_t = checks.as_float_tensor(g_t, "g_t (target embeddings)", 2)
    if g_s.shape[1] != g_t.shape[1]:
        raise ValueError(f"g_s and g_t must have the same width; got {g_s.shape[1]} and {g_t.shape[1]}")
    intra_weight = checks.non_negative(intra_weight, "intra_weight")
    s, t = F.normalize(g_s, dim=1), F.normalize(g_t, dim=1)
    loss = multi_positive_infonce(s @ t.T, M_st, tau=tau, positives=positives)
    if intra_weight > 0:
        eye = lambda n: torch.eye(n, dtype=torch.bool, device=s.device)
        l_ss = multi_positive_infonce(s @ s.T, eye(len(s)), tau=tau, positives=positives)
        l_tt = multi_positive_infonce(t @ t.T, eye(len(t)), tau=tau, positives=positives)
        loss = loss + intra_weight * (l_ss + l_tt) / 2
    return loss


def triplet_search_loss(S, M, *, margin: float = 1.0, generator=None) -> torch.Tensor:
    r"""The official code's searching baseline: a triplet loss on squared Euclidean distances with
    one random positive and one random negative per row,

    .. math::  L = \frac1A \sum_i [\,d_{ip} - d_{in} + m\,]_+, \qquad d_{ij} = \|\hat g_i - \hat g_j\|^2 = 2 - 2 S_{ij}

    on the cosines ``S`` (A x N) of L2-normalised embeddings (the official code skips the
    normalisation; we keep it, so that both losses see the same geometry); margin 1 (official).
    Rows without a positive or without a negative are left out."""
    S = checks.as_float_tensor(S, "S", 2)
    M = _bool_mask(M, S.shape, "M", S.device)
    margin = checks.non_negative(margin, "margin")
    ok = M.any(dim=1) & (~M).any(dim=1)
    if checks.validation_enabled() and not bool(ok.any()):
        raise ValueError("no row of M has both a positive and a negative: nothing to compare")
    u = torch.rand(S.shape, generator=generator, device=S.device)
    p = torch.where(M, u, -1.0).argmax(dim=1, keepdim=True)      # uniform among the positives
    n = torch.where(~M, u, -1.0).argmax(dim=1, keepdim=True)     # uniform among the negatives
    d = 2.0 - 2.0 * upcast(S)
    hinge = F.relu(d.gather(1, p) - d.gather(1, n) + margin).squeeze(1)
    return torch.where(ok, hinge, 0.0).sum() / ok.sum().clamp(min=1)


# ----------------------------------------------------------------------------------------------
# Tearing photos into fragments
# ----------------------------------------------------------------------------------------------

#: The two photos scikit-learn ships (no download).
PHOTOS = ("china", "flower")

#: Shortest wavelength (pixels) of a cut's fraying: finer than the contour's point spacing, so every
#: point of a cut carries its own small sideways offset, the same on both fragments (the fibres).
FRAY_WAVELENGTH = 1.5


def photo(name: str = "china", *, scale: int = 1) -> np.ndarray:
    """One of scikit-learn's bundled photos (``"china"`` or ``"flower"``, 427 x 640), shrunk by
    ``scale`` (box average), as an ``H x W x 3`` float32 array in [0, 1]."""
    checks.choice(name, "photo", PHOTOS)
    scale = checks.integer(scale, "scale", 1)
    from sklearn.datasets import load_sample_image

    im = load_sample_image(f"{name}.jpg").astype(np.float32) / 255.0
    h, w = im.shape[0] // scale, im.shape[1] // scale
    return im[:h * scale, :w * scale].reshape(h, scale, w, scale, 3).mean(axis=(1, 3))


@dataclass(frozen=True, eq=False)
class Tear:
    """One image torn into ``rows x cols`` fragments.

    ``contours[k]`` is fragment k's closed contour, ``n_k x 2`` points ``(x, y)`` in pixels, all
    walked in the same direction (clockwise on screen: the inside is on the right), about
    ``spacing`` pixels apart.  ``pairs`` (E x 2, ``a < b``) lists the neighbouring fragments, and
    ``matches[e]`` (m_e x 2) the ground truth of pair e: contour point ``i`` of ``a`` is contour
    point ``j`` of ``b``.  The two contours walk their shared cut in opposite directions, so the
    matches form an anti-diagonal band of the ``n_a x n_b`` matrix.
    """

    image: np.ndarray
    contours: tuple
    grid: tuple
    pairs: np.ndarray
    matches: tuple
    seed: int = 0

    @property
    def n_fragments(self) -> int:
        return len(self.contours)

    def neighbours(self) -> np.ndarray:
        """``n x n`` boolean adjacency of the fragments (symmetric, no diagonal)."""
        A = np.zeros((self.n_fragments,) * 2, dtype=bool)
        A[self.pairs[:, 0], self.pairs[:, 1]] = A[self.pairs[:, 1], self.pairs[:, 0]] = True
        return A

    def labels(self) -> np.ndarray:
        """``h x w`` map: which fragment owns each pixel (its centre inside the fragment's contour;
        the slivers that the contours' noise leaves between fragments go to the nearest owner)."""
        from matplotlib.path import Path
        from scipy.ndimage import distance_transform_edt

        h, w = self.image.shape[:2]
        yy, xx = np.mgrid[0:h, 0:w]
        centres = np.stack([xx.ravel() + 0.5, yy.ravel() + 0.5], axis=1)
        out = np.full(h * w, -1)
        for k, c in enumerate(self.contours):
            out[(out < 0) & Path(c).contains_points(centres)] = k
        out = out.reshape(h, w)
        if (out < 0).any():
            iy, ix = distance_transform_edt(out < 0, return_distances=False, return_indices=True)
            out = out[iy, ix]
        return out


def _cut(p, q, rng, amp: float, rough: float, spacing: float, terms: int = 5) -> np.ndarray:
    """A random cut from ``p`` to ``q``, sampled at evenly spaced points along the segment (about
    ``spacing`` apart, both ends included) and bent sideways by a random sine series that vanishes
    at both ends: ``terms`` slow waves of amplitude ``amp`` x the segment's length, plus the
    fraying, fast waves down to :data:`FRAY_WAVELENGTH` of amplitude ``rough`` pixels.  A straight
    cut (the tile's border) has ``amp = rough = 0``."""
    d = q - p
    length = float(np.hypot(*d))
    t = np.linspace(0.0, 1.0, max(1, round(length / spacing)) + 1)
    line = p + np.outer(t, d)
    if amp == 0 and rough == 0:
        return line
    n_waves = max(terms + 1, int(2 * length / FRAY_WAVELENGTH))
    k = np.arange(1, n_waves + 1)
    coef = rng.standard_normal(n_waves) * np.where(k <= terms, amp * length / k, rough * np.sqrt(terms / k))
    offset = np.sin(np.pi * np.outer(t, k)) @ coef
    return line + np.outer(offset, np.array([-d[1], d[0]]) / length)


def tear(image, *, rows: int = 2, cols: int = 3, seed: int = 0, jitter: float = 0.2, amp: float = 0.1,
         rough: float = 0.6, spacing: float = 2.5, noise: float = 0.1) -> Tear:
    """Tear ``image`` (h x w x 3) into a ``rows x cols`` grid of fragments along random cuts.

    The grid's inner corners move by up to ``jitter`` of a cell; every inner cut is a random wavy,
    frayed line (:func:`_cut`: slow waves of ``amp`` x its length, fraying of ``rough`` pixels),
    sampled once every ``spacing`` pixels and shared by the two fragments it separates; then every
    contour point moves by Gaussian noise of ``noise`` pixels, independently on each fragment (the
    two sides of a real tear never fit exactly).  Deterministic given ``seed``.
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be h x w x 3 (RGB); got shape {image.shape}")
    rows, cols = checks.integer(rows, "rows", 1), checks.integer(cols, "cols", 1)
    if rows * cols < 2:
        raise ValueError("a tear needs at least 2 fragments (rows x cols >= 2)")
    for name, value in (("jitter", jitter), ("amp", amp), ("rough", rough), ("noise", noise)):
        checks.non_negative(value, name)
    spacing = checks.positive(spacing, "spacing")
    if jitter >= 0.4 or amp > 0.2:
        raise ValueError(f"jitter must be < 0.4 and amp <= 0.2 (got {jitter}, {amp}), or neighbouring cuts may cross")
    h, w = image.shape[:2]
    if min(h / rows, w / cols) < 4 * spacing:
        raise ValueError(f"cells of {h / rows:.1f} x {w / cols:.1f} px are too small for a point "
                         f"spacing of {spacing} px; use a larger image or fewer rows/cols")
    rng = np.random.default_rng(seed)      # one generator, drawn in this order: corners, cuts, noise
    V = _grid_corners(rng, rows, cols, h, w, jitter)
    contours, sides_at = _fragment_contours(_grid_cuts(rng, V, amp, rough, spacing), rows, cols)
    pairs, matches = _ground_truth(contours, sides_at, rows, cols)
    contours = [c + rng.normal(0.0, noise, c.shape) if noise > 0 else c for c in contours]
    return Tear(image, tuple(contours), (rows, cols), np.asarray(pairs, dtype=np.int64), tuple(matches), seed)


def _grid_corners(rng, rows: int, cols: int, h: int, w: int, jitter: float) -> np.ndarray:
    """The ``(rows+1) x (cols+1) x 2`` corners of the grid, each moved by up to ``jitter`` of a cell;
    the corners on the image's border slide along it."""
    V = np.stack(np.meshgrid(np.linspace(0, w, cols + 1), np.linspace(0, h, rows + 1)), axis=-1)
    J = rng.uniform(-jitter, jitter, V.shape) * np.array([w / cols, h / rows])
    J[[0, -1], :, 1] = 0.0
    J[:, [0, -1], 0] = 0.0
    return V + J


def _grid_cuts(rng, V: np.ndarray, amp: float, rough: float, spacing: float) -> dict:
    """Every edge of the grid as a sampled cut, ``{("h", r, c) or ("v", r, c): points}``: wavy and
    frayed inside the image, straight on its border.  Each cut is sampled once, so that the two
    fragments it separates share it point for point."""
    rows, cols = V.shape[0] - 1, V.shape[1] - 1
    edge = {}
    for r in range(rows + 1):
        for c in range(cols):
            wavy = (amp, rough) if 0 < r < rows else (0.0, 0.0)
            edge["h", r, c] = _cut(V[r, c], V[r, c + 1], rng, *wavy, spacing)
    for r in range(rows):
        for c in range(cols + 1):
            wavy = (amp, rough) if 0 < c < cols else (0.0, 0.0)
            edge["v", r, c] = _cut(V[r, c], V[r + 1, c], rng, *wavy, spacing)
    return edge


def _fragment_contours(edge: dict, rows: int, cols: int) -> tuple[list, list]:
    """Each cell's closed contour, clockwise on screen (top, right, bottom, left), and where each side
    starts in it: ``(contours, sides_at)``, ``sides_at[k][side] = (first point, points)``."""
    contours, sides_at = [], []
    for r in range(rows):
        for c in range(cols):
            sides = [edge["h", r, c], edge["v", r, c + 1], edge["h", r + 1, c][::-1], edge["v", r, c][::-1]]
            starts = np.cumsum([0] + [len(s) - 1 for s in sides])
            sides_at.append({name: (int(start), len(side)) for name, start, side
                             in zip(("top", "right", "bottom", "left"), starts, sides)})
            contours.append(np.concatenate([s[:-1] for s in sides]))
    return contours, sides_at


def _ground_truth(contours: list, sides_at: list, rows: int, cols: int) -> tuple[list, list]:
    """The neighbouring fragments ``(a, b)`` (right and bottom neighbours) and, for each pair, the
    matched contour points ``(i, j)``: the shared cut, walked in opposite directions by the two."""
    pairs, matches = [], []
    for r in range(rows):
        for c in range(cols):
            a = r * cols + c
            for b, side_a, side_b, ok in ((a + 1, "right", "left", c < cols - 1),
                                          (a + cols, "bottom", "top", r < rows - 1)):
                if not ok:
                    continue
                (sa, m), (sb, _) = sides_at[a][side_a], sides_at[b][side_b]
                i = (sa + np.arange(m)) % len(contours[a])
                j = (sb + np.arange(m)[::-1]) % len(contours[b])
                pairs.append((a, b))
                matches.append(np.stack([i, j], axis=1))
    return pairs, matches


def tear_tiles(image, *, size=(48, 72), rows: int = 2, cols: int = 3, seed: int = 0, limit: int | None = None,
               **knobs) -> list:
    """Cut ``image`` into non-overlapping ``size`` tiles (reading order; the partial last row and
    column are dropped) and tear each one with :func:`tear` (seed ``seed * 100003 + k`` for tile k;
    ``knobs`` go to :func:`tear`).  ``limit`` keeps the first tiles only."""
    image = np.asarray(image, dtype=np.float32)
    h, w = size
    if image.ndim != 3 or image.shape[0] < h or image.shape[1] < w:
        raise ValueError(f"image of shape {image.shape} is smaller than the tile size {size}")
    corners = [(y, x) for y in range(0, image.shape[0] - h + 1, h) for x in range(0, image.shape[1] - w + 1, w)]
    return [tear(image[y:y + h, x:x + w], rows=rows, cols=cols, seed=seed * 100003 + k, **knobs)
            for k, (y, x) in enumerate(corners[:limit])]


# ----------------------------------------------------------------------------------------------
# What a network sees at each contour point
# ----------------------------------------------------------------------------------------------

#: Scales (in contour points) of the turning angles, and depths (pixels) of the colour samples.
ANGLE_SCALES = (1, 2)
COLOUR_DEPTHS = (0.5, 2.0)
N_CHANNELS = len(ANGLE_SCALES) + 3 * len(COLOUR_DEPTHS)


def _bilinear(image: np.ndarray, xy: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    x = np.clip(xy[:, 0] - 0.5, 0, w - 1)     # pixel centres sit at +0.5
    y = np.clip(xy[:, 1] - 0.5, 0, h - 1)
    x0, y0 = np.minimum(x.astype(int), w - 2), np.minimum(y.astype(int), h - 2)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    return ((1 - fy) * ((1 - fx) * image[y0, x0] + fx * image[y0, x0 + 1])
            + fy * ((1 - fx) * image[y0 + 1, x0] + fx * image[y0 + 1, x0 + 1]))


def point_inputs(contour: np.ndarray, image: np.ndarray) -> np.ndarray:
    """Per contour point (``n x N_CHANNELS``) what the encoders see, none of it tied to where the
    fragment lies or how it is turned:

    * the contour's turning angle at scales 1 and 2 points (radians; positive = turning right on
      screen).  Walking a cut the other way, as the partner fragment does, flips its sign;
    * the colour just inside the fragment, 0.5 and 2 pixels deep along the inward normal, minus 0.5.
    """
    c = np.asarray(contour, dtype=np.float64)
    angles = []
    for s in ANGLE_SCALES:
        a, b = c - np.roll(c, s, axis=0), np.roll(c, -s, axis=0) - c
        angles.append(np.arctan2(a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0], (a * b).sum(1)))
    t = np.roll(c, -1, axis=0) - np.roll(c, 1, axis=0)
    inward = np.stack([-t[:, 1], t[:, 0]], axis=1) / np.maximum(np.hypot(*t.T), 1e-9)[:, None]
    colours = [_bilinear(image, c + d * inward) - 0.5 for d in COLOUR_DEPTHS]
    return np.concatenate([np.stack(angles, axis=1), *colours], axis=1).astype(np.float32)


@dataclass(eq=False)
class FragmentSet:
    """Every fragment of a list of tears, ready for the encoders.

    ``x``: (N, L, (2r+1) N_CHANNELS), each contour point's window of ``2r+1`` points (wrapping
    round the closed contour; zeros past a contour's end); ``valid``: (N, L), which points exist;
    ``tear``: (N,) the tear of each fragment; ``colour``: (N,) its checkerboard colour (neighbours
    always differ); ``adjacency``: (N, N) bool; ``pairs``: (E, 2) neighbouring fragments (global
    indices); ``matches``: their ground truth (list of m_e x 2); ``raw``: each fragment's
    :func:`point_inputs`; ``name``: a label for the result cache.
    """

    tears: list
    x: torch.Tensor
    valid: torch.Tensor
    tear: torch.Tensor
    colour: torch.Tensor
    adjacency: torch.Tensor
    pairs: torch.Tensor
    matches: list
    raw: list = field(repr=False, default_factory=list)
    name: str = ""

    def __len__(self) -> int:
        return self.x.shape[0]

    def __repr__(self) -> str:
        return (f"FragmentSet({self.name!r}: {len(self.tears)} tears, {len(self)} fragments, "
                f"{len(self.pairs)} neighbouring pairs, contours of {int(self.valid.sum(1).min())}-{self.x.shape[1]} points)")

    def gt_masks(self, pair_idx) -> torch.Tensor:
        """(B, L, L) boolean ground truth of the pairs ``pair_idx``: the matched point pairs."""
        pair_idx = torch.as_tensor(pair_idx).reshape(-1)
        L = self.x.shape[1]
        gt = torch.zeros(len(pair_idx), L, L, dtype=torch.bool)
        for b, e in enumerate(pair_idx.tolist()):
            m = torch.as_tensor(self.matches[e])
            gt[b, m[:, 0], m[:, 1]] = True
        return gt

    def fragment(self, k: int) -> tuple:
        """``(tear, index within it)`` of fragment ``k``."""
        t = int(self.tear[k])
        return self.tears[t], k - int(torch.nonzero(self.tear == t)[0])


def fragment_set(tears, *, window: int = 2, name: str = "") -> FragmentSet:
    """Stack the fragments of ``tears``: point windows (:func:`point_inputs`), masks, adjacency."""
    window = checks.integer(window, "window", 0)
    tears = list(tears)
    if not tears:
        raise ValueError("fragment_set needs at least one tear")
    raw, tear_id, colour, pairs, matches = [], [], [], [], []
    for t_idx, t in enumerate(tears):
        base = len(raw)
        cols = t.grid[1]
        for k, c in enumerate(t.contours):
            raw.append(point_inputs(c, t.image))
            tear_id.append(t_idx)
            colour.append((k // cols + k % cols) % 2)
        pairs.extend((t.pairs + base).tolist())
        matches.extend(t.matches)
    L = max(len(r) for r in raw)
    offsets = np.arange(-window, window + 1)
    x = np.zeros((len(raw), L, len(offsets) * N_CHANNELS), dtype=np.float32)
    valid = np.zeros((len(raw), L), dtype=bool)
    for k, r in enumerate(raw):
        n = len(r)
        x[k, :n] = r[(np.arange(n)[:, None] + offsets) % n].reshape(n, -1)
        valid[k, :n] = True
    pairs_t = torch.as_tensor(np.asarray(pairs, dtype=np.int64).reshape(-1, 2))
    A = torch.zeros(len(raw), len(raw), dtype=torch.bool)
    A[pairs_t[:, 0], pairs_t[:, 1]] = A[pairs_t[:, 1], pairs_t[:, 0]] = True
    return FragmentSet(tears, torch.as_tensor(x), torch.as_tensor(valid), torch.as_tensor(tear_id),
                       torch.as_tensor(colour), A, pairs_t, matches, raw, name)


def photo_split(*, size=(48, 72), rows: int = 2, cols: int = 3, seed: int = 0, **knobs) -> tuple:
    """The lesson's data: both photos at full size cut into ``size`` tiles, every tile torn into
    ``rows x cols`` fragments (:func:`tear_tiles`); the even tiles (in reading order) train, the
    odd ones test, so no test pixel is ever seen in training.  Returns ``(train, test)``
    :class:`FragmentSet` s (cached by their parameters)."""
    def compute():
        tiles = [tear_tiles(photo(name), size=tuple(size), rows=rows, cols=cols, seed=seed + i, **knobs)
                 for i, name in enumerate(PHOTOS)]
        extra = "".join(f", {k}={v}" for k, v in sorted(knobs.items()))
        label = f"{'+'.join(PHOTOS)}, {size[0]}x{size[1]} tiles torn {rows}x{cols}, seed {seed}{extra}"
        return tuple(fragment_set([t for ts in tiles for t in ts[part::2]], name=f"{label}: {split}")
                     for part, split in ((0, "train"), (1, "test")))

    return memo("fragments.photo_split", dict(size=tuple(size), rows=rows, cols=cols, seed=seed, **knobs), compute)


# ----------------------------------------------------------------------------------------------
# Metrics
# ----------------------------------------------------------------------------------------------

def search_scores(G, adjacency, *, ks=(1, 5)) -> dict:
    """Pair search in a pool of fragments: every fragment queries all the others by cosine.

    ``recall_at_k``: the fraction of queries with a true neighbour among their k nearest;
    ``pair_recall_at_k`` (PairingNet's top-k): the fraction of ground-truth pairs ``(i, j)``
    with ``j`` among the k nearest of ``i`` (a fragment with 3 neighbours can have only one of
    them first, so this is lower).  Ties go to the lower index."""
    G = checks.as_float_tensor(G, "G (fragment embeddings, N x D)", 2)
    n = G.shape[0]
    A = _bool_mask(adjacency, (n, n), "adjacency", G.device)
    ks = tuple(ks)
    for k in ks:
        checks.integer(k, "k", 1, n - 1)
    f = F.normalize(G.detach().double(), dim=1)
    S = f @ f.T
    S.fill_diagonal_(-math.inf)                       # a fragment does not fit itself
    top = S.topk(max(ks), dim=1).indices
    hit = A.gather(1, top)                            # hit[i, r]: the r-th nearest of i fits i
    has = A.any(dim=1)
    out = {}
    for k in ks:
        out[f"recall_at_{k}"] = float(hit[has, :k].any(dim=1).double().mean())
        out[f"pair_recall_at_{k}"] = float(hit[:, :k].sum() / A.sum().clamp(min=1))
    return out


def cosine_by_kind(G, fs: FragmentSet) -> dict:
    """Mean cosine of the fragment embeddings ``G`` (N x D) over three kinds of pair of ``fs``:
    ``"fits"`` (neighbours), ``"same tile"`` (same tear, not touching) and ``"other tiles"``."""
    f = F.normalize(checks.as_float_tensor(G, "G (fragment embeddings, N x D)", 2).detach().double(), dim=1)
    S = f @ f.T
    same = (fs.tear[:, None] == fs.tear[None, :]) & ~torch.eye(len(fs), dtype=torch.bool)
    return {"fits": float(S[fs.adjacency].mean()), "same tile": float(S[same & ~fs.adjacency].mean()),
            "other tiles": float(S[fs.tear[:, None] != fs.tear[None, :]].mean())}


def match_scores(P, gt, valid=None, *, threshold: float = 0.2) -> dict:
    """Precision, recall and F1 of the predicted correspondences ``{P > threshold}`` against ``gt``
    (micro-averaged over all valid entries)."""
    P = _matrices(P, "P")
    gt = _bool_mask(gt, P.shape, "gt", P.device)
    valid = _valid_mask(valid, P.shape, P.device)
    threshold = checks.finite(threshold, "threshold")
    pred = P.detach() > threshold
    if valid is not None:
        pred, gt = pred & valid, gt & valid
    tp = int((pred & gt).sum())
    precision = tp / max(int(pred.sum()), 1)
    recall = tp / max(int(gt.sum()), 1)
    f1 = 2 * precision * recall / max(precision + recall, 1e-12)
    return {"precision": precision, "recall": recall, "f1": f1}


def mutual_nearest(S, valid=None) -> torch.Tensor:
    """Boolean mask of the entries that are the largest of both their row and their column of ``S``."""
    S = _matrices(S, "S")
    valid = _valid_mask(valid, S.shape, S.device)
    z = S if valid is None else S.masked_fill(~valid, -math.inf)
    out = (z == z.amax(dim=-1, keepdim=True)) & (z == z.amax(dim=-2, keepdim=True))
    return out if valid is None else out & valid


# ----------------------------------------------------------------------------------------------
# Encoders (the miniature of PairingNet's graph-convolution contour encoder and search module)
# ----------------------------------------------------------------------------------------------

def _input_scale(in_dim: int) -> torch.Tensor:
    """Angles (radians) as they are, colours x4 (their spread is about 0.1), for every window slot."""
    if in_dim % N_CHANNELS:
        raise ValueError(f"the input width {in_dim} is not a whole number of {N_CHANNELS}-channel points")
    per_point = torch.tensor([1.0] * len(ANGLE_SCALES) + [4.0] * (N_CHANNELS - len(ANGLE_SCALES)))
    return per_point.repeat(in_dim // N_CHANNELS)


def mirror(x: torch.Tensor) -> torch.Tensor:
    """A contour point's window as the partner fragment sees it: the points in reverse order and the
    turning angles negated (the colours stay: the partner's pixels across the cut are about the
    same).  ``x``: (..., (2r+1) N_CHANNELS)."""
    w = x.reshape(*x.shape[:-1], x.shape[-1] // N_CHANNELS, N_CHANNELS).flip(-2)
    sign = torch.ones(N_CHANNELS, dtype=x.dtype, device=x.device)
    sign[:len(ANGLE_SCALES)] = -1
    return (w * sign).reshape(x.shape)


class PointEncoder(nn.Module):
    """Contour point features for matching: an MLP on each point's window of ``2r+1`` points (the
    same as a circular Conv1d with kernel ``2r+1`` followed by 1x1 convolutions), symmetrised,
    ``f(x) = g(x) + g(mirror(x))``, so that a point of a cut looks the same from both of its
    fragments.  Not normalised, as in PairingNet: :func:`matching_loss` divides their dot products
    by ``tau_m = sqrt(dim)``."""

    def __init__(self, in_dim: int, dim: int = 16, hidden: int = 64):
        super().__init__()
        self.register_buffer("scale", _input_scale(in_dim))
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.LayerNorm(hidden), nn.ReLU(),
                                 nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:   # (N, L, in_dim) -> (N, L, dim)
        return self.net(x * self.scale) + self.net(mirror(x) * self.scale)


def search_features(encoder: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """What the search stage sees at each contour point (N, L, d + 6): the (frozen) matching
    features and the point's own colours (PairingNet's search stage too works on contour *and*
    texture features)."""
    r = x.shape[-1] // N_CHANNELS // 2                     # the window's centre slot
    k = len(ANGLE_SCALES)
    with torch.no_grad():
        return torch.cat([encoder(x), 4.0 * x[..., r * N_CHANNELS + k:(r + 1) * N_CHANNELS]], dim=-1)


class SearchHead(nn.Module):
    """PairingNet's second stage in miniature: one L2-normalised embedding per fragment from its
    contour points' :func:`search_features`, through a per-point layer, mean- and max-pooled over
    the fragment's real contour points, then linear."""

    def __init__(self, in_dim: int, dim: int = 32, hidden: int = 64):
        super().__init__()
        self.points = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU())
        self.head = nn.Linear(2 * hidden, dim)

    def forward(self, f: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:   # (N, L, d) -> (N, dim)
        m = valid.unsqueeze(-1)
        h = self.points(f) * m                          # padding -> 0
        mean = h.sum(dim=1) / m.sum(dim=1).clamp(min=1)
        peak = h.max(dim=1).values                      # h >= 0 (ReLU), so a padded 0 never beats a real point
        return F.normalize(self.head(torch.cat([mean, peak], dim=1)), dim=1)


class SearchNet(nn.Module):
    """The whole searcher: the frozen matching encoder, then the search head.  ``(x, valid) -> (N, dim)``."""

    def __init__(self, encoder: PointEncoder, head: SearchHead):
        super().__init__()
        self.encoder, self.head = encoder, head

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        return self.head(search_features(self.encoder, x), valid)


# ----------------------------------------------------------------------------------------------
# Hand-crafted baselines (no training)
# ----------------------------------------------------------------------------------------------

def handcrafted_descriptor(fs: FragmentSet) -> torch.Tensor:
    """A classical global descriptor per fragment: mean and spread of the colours along its contour,
    each dimension standardised over the pool (N x 12).  The fragments of one tile share colours,
    so it finds the right tile; it cannot tell a neighbour from a non-neighbour in it."""
    k = len(ANGLE_SCALES)
    d = torch.stack([torch.as_tensor(np.concatenate([r[:, k:].mean(0), r[:, k:].std(0)])) for r in fs.raw])
    return (d - d.mean(0)) / d.std(0).clamp(min=1e-6)


def handcrafted_point_features(fs: FragmentSet) -> torch.Tensor:
    """A classical contour-point descriptor that both sides of a cut see alike (N, L, ...): the
    part of the window's turning angles and of its colours that :func:`mirror` leaves unchanged
    (angles: the window minus its reversal; colours: the window plus its reversal)."""
    N, L, _ = fs.x.shape
    w = fs.x.reshape(N, L, -1, N_CHANNELS)
    k = len(ANGLE_SCALES)
    ang = w[..., :k] - w[..., :k].flip(2)
    col = (w[..., k:] + w[..., k:].flip(2)) * 2.0          # x4 like the encoders' inputs, / 2
    return torch.cat([ang.reshape(N, L, -1), col.reshape(N, L, -1)], dim=-1) * fs.valid.unsqueeze(-1)


def handcrafted_similarity(fs: FragmentSet, pair_idx) -> torch.Tensor:
    """Minus the squared distance of :func:`handcrafted_point_features`, for the pairs ``pair_idx``
    (B x L_a x L_b, padded as :func:`match_batch`): a similarity matrix that needs no training."""
    h = handcrafted_point_features(fs)
    pair_idx = torch.as_tensor(pair_idx).reshape(-1)
    a, b = fs.pairs[pair_idx, 0], fs.pairs[pair_idx, 1]
    la, lb = int(fs.valid[a].sum(1).max()), int(fs.valid[b].sum(1).max())   # as match_batch pads
    return -torch.cdist(h[a, :la], h[b, :lb]) ** 2


def pooled_features(encoder: nn.Module, fs: FragmentSet) -> torch.Tensor:
    """The matching encoder's point features averaged over each fragment's contour (N x d): a search
    descriptor without any search training.  The dot product of two of them is the mean of the
    pair's point similarity matrix."""
    with torch.no_grad():
        f = encoder(fs.x)
    m = fs.valid.unsqueeze(-1)
    return (f * m).sum(dim=1) / m.sum(dim=1)


# ----------------------------------------------------------------------------------------------
# Training runs (cached: a widget that returns to a setting answers at once)
# ----------------------------------------------------------------------------------------------

@dataclass(repr=False)
class FragmentRun(Run):
    """A matching or search run: ``history`` (the loss every iteration), ``evals`` (``iter`` and the
    test metrics, before training, every ``eval_every`` iterations and at the end) and the trained
    model (eval mode)."""

    model: nn.Module | None = None

    @property
    def before(self) -> dict:
        """The test metrics before training."""
        return {key: float(v[0]) for key, v in self.evals.items() if key != "iter"}

    @property
    def after(self) -> dict:
        """The test metrics after training."""
        return {key: float(v[-1]) for key, v in self.evals.items() if key != "iter"}

    def curve(self, key: str) -> tuple:
        """``(iterations, values)`` of test metric ``key``, from before training (iteration 0) on."""
        return self.evals["iter"], self.evals[key]

    def __repr__(self) -> str:
        key = "f1" if self.params["task"] == "match" else "recall_at_1"
        what = {"match": f"gamma {self.params.get('gamma')}", "search": self.params.get("loss")}[self.params["task"]]
        return (f"FragmentRun({self.params['task']}, {what}, {self.params['iters']} it: "
                f"test {key} {self.before[key]:.3f} -> {self.after[key]:.3f})")


def _fit(trainer: Trainer, batch_loss, evaluate, *, iters: int, eval_every: int, desc: str,
         progress) -> tuple[dict, dict, float]:
    """:meth:`lossviz.train.Trainer.run` on ``batch_loss()`` with the official schedule: the Adam
    learning rate annealed to 0 over ``iters`` (cosine), a scheduler the Trainer does not have."""
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(trainer.optimizer, T_max=iters)

    def step(it: int) -> dict:
        loss = batch_loss()
        trainer.update(loss)
        schedule.step()
        return {"loss": loss.detach()}

    return trainer.run(step, iters, evaluate=evaluate, eval_every=eval_every, desc=desc, progress=progress)


def match_batch(fs: FragmentSet, pair_idx, *, swap=None):
    """Inputs of the neighbouring pairs ``pair_idx``: ``(x_a, x_b, valid, gt)``, padded to the
    batch's longest contours; ``swap`` (bool per pair) exchanges source and target (the ground
    truth is transposed)."""
    pair_idx = torch.as_tensor(pair_idx).reshape(-1)
    a, b = fs.pairs[pair_idx, 0], fs.pairs[pair_idx, 1]
    gt = fs.gt_masks(pair_idx)
    if swap is not None:
        a, b = torch.where(swap, b, a), torch.where(swap, a, b)
        gt = torch.where(swap[:, None, None], gt.transpose(1, 2), gt)
    la, lb = int(fs.valid[a].sum(1).max()), int(fs.valid[b].sum(1).max())   # no all-padding rows
    valid = fs.valid[a, :la][:, :, None] & fs.valid[b, :lb][:, None, :]
    return fs.x[a, :la], fs.x[b, :lb], valid, gt[:, :la, :lb]


def train_matching(train: FragmentSet, test: FragmentSet, *, alpha: float = 0.55, gamma: float = 8.0,
                   scale: float = 400.0, tau_m: float | None = None, dim: int = 16, iters: int = 300,
                   pairs: int = 16, lr: float = 1e-2, seed: int = 0, eval_every: int = 50,
                   threshold: float = 0.2, progress=True, cache: bool = True) -> FragmentRun:
    """Stage 1: train a :class:`PointEncoder` with :func:`matching_loss` on ``pairs`` random
    neighbouring pairs per step (random source/target order); Adam with cosine annealing (official).
    ``tau_m`` defaults to ``sqrt(dim)`` (official rule).  Test F1 of ``{P > threshold}``
    (:func:`match_scores`) over every neighbouring pair of ``test``, before training, every
    ``eval_every`` iterations and at the end."""
    dim, iters = checks.integer(dim, "dim", 1), checks.integer(iters, "iters", 1)
    tau_m = math.sqrt(dim) if tau_m is None else checks.positive(tau_m, "tau_m")
    params = dict(task="match", data=(train.name, test.name), alpha=alpha, gamma=gamma, scale=scale,
                  tau_m=tau_m, dim=dim, iters=iters, pairs=pairs, lr=lr, seed=seed, eval_every=eval_every,
                  threshold=threshold)

    def compute() -> FragmentRun:
        trainer = Trainer(lambda: PointEncoder(train.x.shape[-1], dim), lr=lr, seed=seed)
        model = trainer.model
        gen = torch.Generator().manual_seed(seed)
        xa_test, xb_test, valid_test, gt_test = match_batch(test, torch.arange(len(test.pairs)))

        def evaluate() -> dict:
            P = dual_softmax(model(xa_test) @ model(xb_test).transpose(1, 2), valid_test, tau=tau_m)
            return match_scores(P, gt_test, valid_test, threshold=threshold)

        def batch_loss() -> torch.Tensor:
            e = torch.randint(len(train.pairs), (pairs,), generator=gen)
            xa, xb, valid, gt = match_batch(train, e, swap=torch.rand(pairs, generator=gen) < 0.5)
            S = model(xa) @ model(xb).transpose(1, 2)
            return matching_loss(S, gt, valid=valid, tau_m=tau_m, alpha=alpha, gamma=gamma, scale=scale)

        history, evals, seconds = _fit(trainer, batch_loss, evaluate, iters=iters, eval_every=eval_every,
                                       desc=f"matching, gamma {gamma:g}", progress=progress)
        return FragmentRun(params=params, history=history, evals=evals, seconds=seconds, model=model.eval())

    return memo("fragments.train_matching", params, compute, cache=cache)


def search_step_batch(fs: FragmentSet, tears: torch.Tensor):
    """The fragments of ``tears``, split by checkerboard colour into sources and targets (every fit
    joins a source and a target), and the fit mask ``M_st``: ``(s, t, M_st)``."""
    idx = torch.nonzero(torch.isin(fs.tear, torch.as_tensor(tears))).squeeze(1)
    s, t = idx[fs.colour[idx] == 0], idx[fs.colour[idx] == 1]
    return s, t, fs.adjacency[s][:, t]


def train_search(train: FragmentSet, test: FragmentSet, stage1: FragmentRun, *, loss: str = "infonce",
                 tau: float = 0.12, intra_weight: float = 0.5, margin: float = 1.0, iters: int = 300,
                 tears: int = 16, dim: int = 32, lr: float = 1e-3, seed: int = 0, eval_every: int = 50,
                 progress=True, cache: bool = True) -> FragmentRun:
    """Stage 2: train a :class:`SearchHead` on the frozen point features of ``stage1`` (a
    :func:`train_matching` run) to search with ``loss`` = ``"infonce"`` (:func:`searching_loss`)
    or ``"triplet"`` (:func:`triplet_search_loss`); Adam with cosine annealing.  Each step takes
    the fragments of ``tears`` random training tiles.  Test pair search (:func:`search_scores`, the
    whole test pool) before training, every ``eval_every`` iterations and at the end.  ``run.model``
    is the whole :class:`SearchNet`."""
    checks.choice(loss, "loss", ("infonce", "triplet"))
    iters = checks.integer(iters, "iters", 1)
    params = dict(task="search", stage1=tuple(sorted(stage1.params.items())), loss=loss, tau=tau,
                  intra_weight=intra_weight, margin=margin, iters=iters, tears=tears, dim=dim, lr=lr,
                  seed=seed, eval_every=eval_every)
    for unused in (("tau", "intra_weight") if loss == "triplet" else ("margin",)):
        params.pop(unused)

    def compute() -> FragmentRun:
        f_train, f_test = search_features(stage1.model, train.x), search_features(stage1.model, test.x)
        trainer = Trainer(lambda: SearchHead(f_train.shape[-1], dim), lr=lr, seed=seed)
        head = trainer.model
        gen = torch.Generator().manual_seed(seed)

        def evaluate() -> dict:
            return search_scores(head(f_test, test.valid), test.adjacency)

        def batch_loss() -> torch.Tensor:
            s, t, M = search_step_batch(train, torch.randperm(len(train.tears), generator=gen)[:tears])
            g = head(f_train[torch.cat([s, t])], train.valid[torch.cat([s, t])])
            g_s, g_t = g[:len(s)], g[len(s):]
            if loss == "infonce":
                return searching_loss(g_s, g_t, M, tau=tau, intra_weight=intra_weight)
            return triplet_search_loss(g_s @ g_t.T, M, margin=margin, generator=gen)

        history, evals, seconds = _fit(trainer, batch_loss, evaluate, iters=iters, eval_every=eval_every,
                                       desc=f"search, {loss}", progress=progress)
        return FragmentRun(params=params, history=history, evals=evals, seconds=seconds,
                           model=SearchNet(stage1.model, head.eval()).eval())

    return memo("fragments.train_search", params, compute, cache=cache)


def predict_matches(encoder: nn.Module, fs: FragmentSet, *, tau_m: float, pair_idx=None) -> tuple:
    """For the neighbouring pairs ``pair_idx`` (default: all) of ``fs``: ``(S, P, gt, valid)``, the
    point features' dot products, the dual-softmax matrices, the ground truth and the padding mask
    (B x L_a x L_b each)."""
    pair_idx = torch.arange(len(fs.pairs)) if pair_idx is None else pair_idx
    xa, xb, valid, gt = match_batch(fs, pair_idx)
    with torch.no_grad():
        S = encoder(xa) @ encoder(xb).transpose(1, 2)
    return S, dual_softmax(S, valid, tau=tau_m), gt, valid


def handcrafted_matching(train: FragmentSet, test: FragmentSet, *, taus=(0.03, 0.1, 0.3, 1.0, 3.0),
                         threshold: float = 0.2) -> dict:
    """The hand-crafted matcher (:func:`handcrafted_similarity` under the dual-softmax), its one
    knob, the temperature, chosen on ``train`` among ``taus``; returns the chosen ``tau``, its
    training F1 and its test :func:`match_scores`."""
    def f1(fs, tau):
        _, _, valid, gt = match_batch(fs, torch.arange(len(fs.pairs)))
        P = dual_softmax(handcrafted_similarity(fs, torch.arange(len(fs.pairs))), valid, tau=tau)
        return match_scores(P, gt, valid, threshold=threshold)

    train_f1 = {tau: f1(train, tau)["f1"] for tau in taus}
    best = max(taus, key=train_f1.get)
    return {"tau": best, "train_f1": train_f1[best], **f1(test, best)}


def pair_similarity(fs: FragmentSet, e: int, encoder: nn.Module | None = None) -> tuple:
    """For neighbouring pair ``e`` of ``fs``: the point similarity ``S`` (n_a x n_b, float64, no
    padding) and the ground truth ``gt`` (bool, same shape).  ``S`` is the dot products of
    ``encoder``'s point features, or with ``encoder=None`` the hand-crafted similarity
    (:func:`handcrafted_similarity`)."""
    a, b = (int(v) for v in fs.pairs[e])
    na, nb = int(fs.valid[a].sum()), int(fs.valid[b].sum())
    if encoder is None:
        S = handcrafted_similarity(fs, [e])[0, :na, :nb].double()
    else:
        with torch.no_grad():
            S = encoder(fs.x[a, :na]).double() @ encoder(fs.x[b, :nb]).double().T
    gt = torch.zeros(na, nb, dtype=torch.bool)
    m = torch.as_tensor(fs.matches[e])
    gt[m[:, 0], m[:, 1]] = True
    return S, gt


# ----------------------------------------------------------------------------------------------
# Pictures
# ----------------------------------------------------------------------------------------------

def fragment_rgba(t: Tear, k: int, labels=None, *, crop: bool = False) -> np.ndarray:
    """Fragment ``k`` of tear ``t`` as an RGBA image of the whole tile (transparent elsewhere), or
    with ``crop=True`` of its bounding box only."""
    labels = t.labels() if labels is None else labels
    rgba = np.concatenate([t.image, (labels == k)[..., None].astype(np.float32)], axis=-1)
    if not crop:
        return rgba
    ys, xs = np.nonzero(labels == k)
    return rgba[ys.min():ys.max() + 1, xs.min():xs.max() + 1]


def draw_tear(ax, t: Tear, *, spread: float = 0.3, links: int = 3, title: str | None = None):
    """The fragments of ``t`` pulled apart (``spread`` x their distance from the tile's centre),
    each with its contour; the ground-truth matched points of every cut in the positive colour,
    and every ``links``-th correspondence joined by a line across the gap."""
    from .. import plots

    labels = t.labels()
    h, w = t.image.shape[:2]
    centre = np.array([w / 2, h / 2])
    shift = [spread * (c.mean(0) - centre) for c in t.contours]
    for k, c in enumerate(t.contours):
        dx, dy = shift[k]
        ax.imshow(fragment_rgba(t, k, labels), extent=(dx, w + dx, h + dy, dy), interpolation="nearest")
        loop_ = np.vstack([c, c[:1]]) + shift[k]
        ax.plot(loop_[:, 0], loop_[:, 1], color="k", lw=0.8)
    for (a, b), m in zip(t.pairs, t.matches):
        pa, pb = t.contours[a][m[:, 0]] + shift[a], t.contours[b][m[:, 1]] + shift[b]
        ax.plot(pa[:, 0], pa[:, 1], ".", color=plots.POS_COLOR, ms=3)
        ax.plot(pb[:, 0], pb[:, 1], ".", color=plots.POS_COLOR, ms=3)
        for i in range(0, len(m), max(links, 1)):
            ax.plot([pa[i, 0], pb[i, 0]], [pa[i, 1], pb[i, 1]], color=plots.POS_COLOR, lw=0.6, alpha=0.7)
    pad = spread * max(h, w) / 2 + 2
    ax.set(xlim=(-pad, w + pad), ylim=(h + pad, -pad), aspect="equal", xticks=[], yticks=[],
           title=title or f"a {h}x{w} px tile torn {t.grid[0]}x{t.grid[1]}")
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(False)
    return ax


#: Heat-maps of similarities and probabilities: white to dark grey, so that the ground truth's outline
#: (in the positive colour) stays visible on the darkest cells.
VALUE_CMAP = LinearSegmentedColormap.from_list("lossviz_values", ["#ffffff", "#3a3a3a"])


def _outline(ax, mask, color, lw=1.0):
    """Hollow squares around the True cells of ``mask`` (matrix coordinates)."""
    from matplotlib.collections import PatchCollection
    from matplotlib.patches import Rectangle

    ii, jj = np.nonzero(np.asarray(mask))
    boxes = [Rectangle((j - 0.5, i - 0.5), 1, 1) for i, j in zip(ii, jj)]
    return ax.add_collection(PatchCollection(boxes, facecolor="none", edgecolor=color, linewidth=lw))


def matrix_heatmap(ax, M, positives, *, title: str = "", signed: bool = False, label: str = "",
                   xlabel: str = "", ylabel: str = "", vmin: float = 0.0, vmax: float | None = None,
                   colorbar: bool = True):
    """A matrix as a heat-map (darker = larger, from ``vmin`` to ``vmax``) with its ground-truth
    positives outlined in the positive colour.  ``signed=True`` uses the pair-weight colours
    instead (blue pull, vermillion push, white 0; outlines in black)."""
    from matplotlib.colors import TwoSlopeNorm

    from .. import plots

    from matplotlib.ticker import MaxNLocator

    M = np.asarray(M.detach().cpu().double() if isinstance(M, torch.Tensor) else M, dtype=float)
    pos = np.asarray(positives.cpu() if isinstance(positives, torch.Tensor) else positives, dtype=bool)
    if signed:
        v = vmax or max(np.abs(M).max(), 1e-12)
        im = ax.imshow(M, cmap=plots.WEIGHT_CMAP, norm=TwoSlopeNorm(0.0, -v, v))
    else:
        im = ax.imshow(M, cmap=VALUE_CMAP, vmin=vmin, vmax=vmax or max(M.max(), vmin + 1e-12))
    _outline(ax, pos, "k" if signed else plots.POS_COLOR, lw=1.0 if signed else 1.4)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(False)
    if colorbar:
        ax.figure.colorbar(im, ax=ax, shrink=0.8, label=label)
    return im


def set_heatmap(im, M, *, signed: bool = False, vmax: float | None = None) -> None:
    """Update a :func:`matrix_heatmap` image in place (for widgets)."""
    from matplotlib.colors import TwoSlopeNorm

    M = np.asarray(M.detach().cpu().double() if isinstance(M, torch.Tensor) else M, dtype=float)
    im.set_data(M)
    if signed:
        v = vmax or max(np.abs(M).max(), 1e-12)
        im.set_norm(TwoSlopeNorm(0.0, -v, v))
    else:
        im.set_clim(0, vmax or max(M.max(), 1e-12))


def method_colors() -> dict:
    """One colour per trained method of the lesson, in every figure (never the pair colours, which
    mean pull and push): the loss colours of :data:`lossviz.plots.LOSS_COLORS` where a loss has one,
    black and green for the two matching losses, grey for the hand-crafted baselines."""
    from .. import plots

    return {"focal γ=8": "#000000", "cross-entropy": "#009E73", "InfoNCE τ=0.12": plots.LOSS_COLORS["infonce"],
            "triplet": plots.LOSS_COLORS["triplet"], "hand-crafted": plots.MUTED}


def seed_curves(ax, runs: dict, key: str, *, baseline: float | None = None, baseline_label: str = "hand-crafted"):
    """Test metric ``key`` against iterations for ``{method: [FragmentRun per seed]}``: every seed
    as a thin line, the mean over seeds bold, in the method's colour (:func:`method_colors`);
    ``baseline`` (a method without training) as a dashed grey line."""
    from .. import plots

    colors = method_colors()
    for name, seeded in runs.items():
        color = colors.get(name, "k")
        for run in seeded:
            ax.plot(*run.curve(key), color=color, lw=0.8, alpha=0.35)
        it = seeded[0].curve(key)[0]
        ax.plot(it, np.mean([run.curve(key)[1] for run in seeded], axis=0), marker=".", color=color, lw=2.2,
                label=f"{name} (mean of {len(seeded)} seeds)")
    if baseline is not None:
        ax.axhline(baseline, color=plots.MUTED, ls="--", label=baseline_label)
    ax.set(xlabel="iteration")
    return ax


def focal_curves(ax, *, gammas=(0.0, 2.0, 8.0), alpha: float = 0.55):
    """The focal modulation: ``alpha (1-p)^gamma`` on a positive (its weight, against its P) and
    ``(1-alpha) p^gamma`` on a negative, for several gamma."""
    from .. import plots

    p = np.linspace(0, 1, 201)
    lines = []
    for g, ls in zip(gammas, ("-", "--", ":", "-.")):
        lines += ax.plot(p, alpha * (1 - p) ** g, color=plots.POS_COLOR, ls=ls, label=f"positive, γ={g:g}")
        lines += ax.plot(p, (1 - alpha) * p ** g, color=plots.NEG_COLOR, ls=ls, label=f"negative, γ={g:g}")
    ax.set(xlabel="$P_{ij}$ (dual-softmax probability)", ylabel="focal factor",
           title=f"focal modulation (α = {alpha:g})", ylim=(0, 1.02))
    ax.legend(loc="center right", fontsize=9)
    return lines


def draw_retrieval(axes, fs: FragmentSet, G, query: int, *, k: int = 5):
    """Query fragment ``query`` (first axes) and its ``k`` nearest fragments by cosine of ``G`` (the
    next axes), framed in the positive colour if they fit the query, the negative one if not.
    Returns the indices of the ``k`` nearest."""
    from .. import plots

    f = F.normalize(torch.as_tensor(G).double(), dim=1)
    s = f @ f[query]
    s[query] = -math.inf
    top = s.topk(k).indices.tolist()
    titles = ["query"] + [f"#{r + 1}, cos {float(s[j]):.2f}" for r, j in enumerate(top)]
    for ax, j, title in zip(axes, [query] + top, titles):
        t, kk = fs.fragment(j)
        ax.imshow(fragment_rgba(t, kk, crop=True))
        ax.set(xticks=[], yticks=[], title=title)
        ax.grid(False)
        fits = j != query and bool(fs.adjacency[query, j])
        for spine in ax.spines.values():
            spine.set(visible=j != query, color=plots.POS_COLOR if fits else plots.NEG_COLOR, linewidth=3)
    return top


# ----------------------------------------------------------------------------------------------
# Widgets (ipywidgets imported inside, so the module loads without them)
# ----------------------------------------------------------------------------------------------

def matching_panel(S, gt, *, tau_m: float = 4.0, alpha: float = 0.55, gamma: float = 8.0,
                   threshold: float = 0.2):
    """The matching loss on one fragment pair's dot products ``S`` (fixed): the focal curves, the
    dual-softmax ``P`` with the ground truth outlined, and the weights ``dL/dS``.  Sliders: tau_m,
    alpha, gamma, the F1 threshold.  Pure maths: one autograd call per change."""
    import ipywidgets as W

    from .. import plots
    from ..weights import pair_weights

    S = torch.as_tensor(S).detach().double()
    gt = torch.as_tensor(gt)
    style = dict(continuous_update=False, style={"description_width": "initial"})
    controls = {
        "tau_m": W.FloatLogSlider(value=tau_m, base=2, min=0, max=4, step=0.25, description="τ_m (matching temperature)", **style),
        "alpha": W.FloatSlider(value=alpha, min=0.25, max=0.75, step=0.05, description="α (positives' share)", **style),
        "gamma": W.FloatSlider(value=gamma, min=0.0, max=8.0, step=0.5, description="γ (focusing)", **style),
        "threshold": W.FloatSlider(value=threshold, min=0.1, max=0.5, step=0.05, description="F1 threshold on P", **style),
    }
    fig, axes = plots.new_figure(3, width=4.4, height=4.0)
    p = np.linspace(0, 1, 201)
    (pos_line,) = axes[0, 0].plot(p, p, color=plots.POS_COLOR, lw=2, label=r"positive: $\alpha(1-P)^\gamma$")
    (neg_line,) = axes[0, 0].plot(p, p, color=plots.NEG_COLOR, lw=2, label=r"negative: $(1-\alpha)P^\gamma$")
    axes[0, 0].set(xlabel="$P_{ij}$", ylabel="focal factor", ylim=(0, 1.02))
    axes[0, 0].legend(loc="center right", fontsize=9)
    im_p = matrix_heatmap(axes[0, 1], torch.zeros_like(S), gt, label="$P_{ij}$", xlabel="target point j",
                          ylabel="source point i", vmax=1.0)
    im_w = matrix_heatmap(axes[0, 2], torch.zeros_like(S), gt, signed=True, label=r"$\partial L/\partial S_{ij}$",
                          xlabel="target point j", ylabel="source point i")

    def draw(v):
        knobs = dict(tau_m=v["tau_m"], alpha=v["alpha"], gamma=v["gamma"])
        P = dual_softmax(S, tau=v["tau_m"])
        Wt = pair_weights(matching_loss, S, gt, signed=True, **knobs)
        pos_line.set_ydata(v["alpha"] * (1 - p) ** v["gamma"])
        neg_line.set_ydata((1 - v["alpha"]) * p ** v["gamma"])
        axes[0, 0].set_title(f"focal factors, γ = {v['gamma']:g}, α = {v['alpha']:g}")
        set_heatmap(im_p, P, vmax=1.0)
        set_heatmap(im_w, Wt, signed=True)
        score = match_scores(P, gt, threshold=v["threshold"])
        axes[0, 1].set_title(f"P at τ_m = {v['tau_m']:.3g}: F1 {score['f1']:.2f}")
        axes[0, 2].set_title("weights dL/dS (blue: pull up)")
        return {"P": P, "W": Wt, "scores": score,
                "status": f"F1 {score['f1']:.2f} (precision {score['precision']:.2f}, recall {score['recall']:.2f}); "
                          f"largest row sum of P {float(P.sum(1).max()):.2f}"}

    return _panel(controls, fig, draw)


def search_panel(S, M, *, tau: float = 0.12, positives: str = "sum_prob", row: int = 0):
    """The searching loss on a fixed batch of cosines ``S`` (sources x targets) with fit mask ``M``:
    the weights ``dl/dS`` as a heat-map (fits outlined), and for one source row the softmax
    probabilities and the weights, bar by bar.  Controls: tau, the positives' form, the row."""
    import ipywidgets as W

    from .. import plots
    from ..weights import pair_weights

    S = torch.as_tensor(S).detach().double()
    M = torch.as_tensor(M)
    style = dict(continuous_update=False, style={"description_width": "initial"})
    controls = {
        "tau": W.FloatLogSlider(value=tau, base=10, min=np.log10(0.05), max=0, step=0.05, description="τ (search temperature)",
                                readout_format=".3g", **style),
        "positives": W.Dropdown(options=[("log of summed probability (PairingNet)", "sum_prob"),
                                         ("mean of log-probabilities (SupCon)", "mean_log")],
                                value=positives, description="positives"),
        "row": W.IntSlider(value=row, min=0, max=S.shape[0] - 1, description="source row", **style),
    }
    fig, axes = plots.new_figure(2, width=5.0, height=4.0)
    im = matrix_heatmap(axes[0, 0], torch.zeros_like(S), M, signed=True, label=r"$\partial \ell/\partial S_{ij}$",
                        xlabel="target fragment j", ylabel="source fragment i")
    (marker,) = axes[0, 0].plot([], [], ">", color="k", ms=8, clip_on=False)
    j = np.arange(S.shape[1])
    ax = axes[0, 1]
    prob_bars = ax.bar(j - 0.2, np.zeros(len(j)), width=0.4, alpha=0.35, label="softmax probability")
    pull_bars = ax.bar(j + 0.2, np.zeros(len(j)), width=0.4, label=r"pull $-\tau A\,\partial\ell/\partial S_{ij}$")
    ax.axhline(0, color="k", lw=0.8)
    ax.set(xlabel="target fragment j (blue: fits)", ylabel="probability / scaled weight")

    def draw(v):
        Wt = pair_weights(multi_positive_infonce, S, M, signed=True, tau=v["tau"], positives=v["positives"])
        set_heatmap(im, Wt, signed=True)
        axes[0, 0].set_title(f"weights of ℓ(s, t), τ = {v['tau']:.3g}")
        marker.set_data([-1.2], [v["row"]])
        r = v["row"]
        prob = torch.softmax(S[r] / v["tau"], 0)
        colors = [plots.POS_COLOR if bool(m) else plots.NEG_COLOR for m in M[r]]
        pull = -Wt[r].numpy() * S.shape[0] * v["tau"]
        for bars, heights in ((prob_bars, prob.numpy()), (pull_bars, pull)):
            for bar, height, color in zip(bars, heights, colors):
                bar.set_height(height)
                bar.set_facecolor(color)
        ax.relim()
        ax.autoscale_view()
        ax.set_title(f"source {r}: who gets the credit")
        ax.legend(loc="best", fontsize=9)      # made anew: its swatches take the row's first colour
        share = (-Wt[r][M[r]]).clamp(min=0)
        return {"W": Wt, "prob": prob,
                "status": f"row {r}: positives hold {float(prob[M[r]].sum()):.0%} of the probability; "
                          f"largest positive's share of the pull {float(share.max() / share.sum().clamp(min=1e-30)):.0%}"}

    return _panel(controls, fig, draw)


def _panel(controls, fig, draw):
    from ..widgets import Panel

    return Panel(controls, fig, draw)


def training_panel(train: FragmentSet, test: FragmentSet, *, iters: int = 300, example: int = 0,
                   autorun: bool = True, **defaults):
    """Re-train both stages with other knob values: a Train button runs :func:`train_matching`, then
    :func:`train_search` on its features (both cached by parameters), and draws the two learning
    curves and ``P`` of one test pair (``example``) after training."""
    import ipywidgets as W

    from ..widgets import run_panel

    v0 = dict(gamma=8.0, alpha=0.55, tau_m=4.0, loss="infonce", tau=0.12, intra_weight=0.5, seed=0) | defaults
    style = dict(continuous_update=False, style={"description_width": "initial"}, layout=W.Layout(width="300px"))
    controls = {
        "gamma": W.Dropdown(options=[0.0, 2.0, 8.0], value=v0["gamma"], description="focal γ", layout=W.Layout(width="160px")),
        "alpha": W.FloatSlider(value=v0["alpha"], min=0.25, max=0.75, step=0.05, description="focal α", **style),
        "tau_m": W.FloatLogSlider(value=v0["tau_m"], base=2, min=0, max=4, step=1, description="τ_m", **style),
        "loss": W.Dropdown(options=["infonce", "triplet"], value=v0["loss"], description="search loss",
                           layout=W.Layout(width="220px")),
        "tau": W.FloatLogSlider(value=v0["tau"], base=10, min=np.log10(0.05), max=0, step=0.05, description="τ (search)",
                                readout_format=".3g", **style),
        "intra_weight": W.FloatSlider(value=v0["intra_weight"], min=0.0, max=1.0, step=0.25, description="intra-set weight λ", **style),
        "seed": W.BoundedIntText(value=v0["seed"], min=0, max=99, description="seed", layout=W.Layout(width="140px")),
    }

    def run(v, progress):
        m = train_matching(train, test, alpha=v["alpha"], gamma=v["gamma"], tau_m=v["tau_m"], iters=iters,
                           seed=v["seed"], progress=progress)
        s = train_search(train, test, m, loss=v["loss"], tau=v["tau"], intra_weight=v["intra_weight"],
                         iters=iters, seed=v["seed"], progress=progress)
        return m, s

    def draw(axes, result, v):
        m, s = result
        ax = axes[0, 0]
        ax.plot(*m.curve("f1"), marker=".", color="k")
        ax.set(title="matching: test F1", xlabel="iteration", ylabel=f"F1 of P > {m.params['threshold']:g}", ylim=(0, 1))
        ax = axes[0, 1]
        ax.plot(*s.curve("recall_at_1"), marker=".", color="k", label="Recall@1")
        ax.plot(*s.curve("recall_at_5"), marker=".", color="k", ls="--", label="Recall@5")
        ax.set(title="search: test recall", xlabel="iteration", ylabel="recall", ylim=(0, 1))
        ax.legend(loc="best")
        S, gt = pair_similarity(test, example, m.model)
        matrix_heatmap(axes[0, 2], dual_softmax(S, tau=m.params["tau_m"]), gt, vmax=1.0, colorbar=False,
                       title=f"P of test pair {example} (truth outlined)", xlabel="target point j", ylabel="source point i")
        return {"status": f"matching F1 {m.after['f1']:.3f}, search Recall@1 {s.after['recall_at_1']:.3f} "
                          f"(before training: {m.before['f1']:.3f}, {s.before['recall_at_1']:.3f})",
                "f1": m.after["f1"], "recall_at_1": s.after["recall_at_1"]}

    return run_panel(controls, run, draw, ncols=3, width=4.0, height=3.5, autorun=autorun)
