r"""The Mann-Whitney (MW) loss: training a retriever for global AUC (Sheikholeslami et al., 2025,
arXiv:2510.00137), in miniature.

A dual-encoder retriever scores query q against document d, ``S_qd``.  InfoNCE (the contrastive loss
of DPR and SimCLR) is a softmax cross-entropy over each query's *row* of ``S``: adding a constant
``c_q`` to every score of query q changes nothing.  So InfoNCE never learns a threshold that holds
*across* queries, which is what the global ROC-AUC measures.  The MW loss compares every positive
score with every negative score of the batch, whichever query they belong to, through a logistic
(binary cross-entropy) loss on the difference: a smooth Mann-Whitney U statistic, i.e. a smooth AUC.

* :func:`info_nce_loss` ``(S, labels=None, *, tau)``: InfoNCE on the rows of a query x document
  score matrix (the query->document half of notebook 09's NT-Xent).
* :func:`mw_loss` ``(S, labels=None, *, tau, scope)``: the MW loss over every (positive, negative)
  pair of the batch (``scope="global"``), or within each query only (``scope="query"``).
* :func:`global_auc`, :func:`query_auc`, :func:`row_recall_at_1`, :func:`offset_spread`: what a
  retriever is judged on; :func:`aoc_bound` is ``L_MW / ln 2``, which is never below ``1 - AUC``.
* :func:`demo_scores`: a seeded score matrix and a per-query offset direction for the pictures.
* :func:`train_retrieval` (on :class:`lossviz.train.Trainer` + :func:`lossviz.train.memo`) and
  :func:`paired_runs`: two-view digits retrieval with separate query and document encoders and
  plain dot-product scores; the panels :func:`shift_panel` (pure maths) and :func:`training_panel`.

Reconstructed from the abstract and summaries of the paper (no official code was found): the
normalisation (a mean over pairs) and the temperature knob ``tau`` (1 = none) are our choices.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import augment, checks, data, plots
from ..models import mlp
from ..similarity import masked_logsumexp, upcast
from ..train import Run, Trainer, memo

#: The losses a run can train with.
LOSSES = ("infonce", "mw", "mw_query")
NAMES = {"infonce": "InfoNCE (per query)", "mw": "MW (global pairs)", "mw_query": "MW (within query)"}
#: One colour per loss (never the pair colours, which mean positive / negative).
COLORS = {"infonce": plots.LOSS_COLORS["infonce"], "mw": "#009E73", "mw_query": "#56B4E9"}
SCOPES = ("global", "query")
#: The learning curves of a run are measured on this many test images (the final scores on all 597).
CURVE_ITEMS = 256
HEADS = ("dot", "cosine")


# ------------------------------------------------------------------------------------------------
# The losses on a query x document score matrix
# ------------------------------------------------------------------------------------------------

def retrieval_masks(S, labels=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Validate a query x document score matrix and return ``(S, pos, neg)``.

    ``labels=None``: ``S`` is Q x D with ``D >= Q`` and query q's relevant document is column q (the
    diagonal); the columns beyond Q are extra (hard) negatives of every query.  ``labels`` (Q,) integer
    ids with a square ``S``: query q and document d are relevant when their labels agree (two views
    of one item share a label).  Every other entry is a negative.  With validation on, a matrix
    without a positive or without a negative entry is refused."""
    S = checks.as_float_tensor(S, "S (query x document scores)", 2)
    Q, D = S.shape
    if labels is None:
        if D < Q:
            raise ValueError(f"S has {Q} queries but {D} documents: with labels=None query q's positive is "
                             "column q, so S needs at least as many columns as rows")
        pos = torch.zeros(Q, D, dtype=torch.bool, device=S.device)
        pos[:, :Q] = torch.eye(Q, dtype=torch.bool, device=S.device)
    else:
        if Q != D:
            raise ValueError(f"with labels, S must be square (query i and document i are one item); got {(Q, D)}")
        labels = checks.check_labels(labels, D, S.device)
        pos = labels[:, None] == labels[None, :]
    neg = ~pos
    if checks.validation_enabled() and not (bool(pos.any()) and bool(neg.any())):
        raise ValueError("S needs at least one positive and one negative entry (a relevant and an "
                         "irrelevant document) to compare")
    return upcast(S), pos, neg


def info_nce_loss(S, labels=None, *, tau: float = 1.0) -> torch.Tensor:
    r"""InfoNCE on the rows of a query x document score matrix (DPR's loss; the query->document half
    of :func:`lossviz.nt_xent_loss`).

    .. math::
        L = \frac{1}{|\mathcal P|} \sum_{(q, p) \in \mathcal P}
            -\log \frac{e^{S_{qp}/\tau}}{e^{S_{qp}/\tau} + \sum_{n \in N_q} e^{S_{qn}/\tau}}

    With one positive per row (``labels=None``) this is ``F.cross_entropy(S / tau, arange(Q))``.
    Every term reads one row of ``S`` only, through differences ``S_qn - S_qp``, so
    ``L(S + c 1^T) = L(S)`` for any per-query offsets ``c`` and each row of ``dL/dS`` sums to 0.
    """
    S, pos, neg = retrieval_masks(S, labels)
    tau = checks.temperature(tau)
    z = S / tau
    lse_neg = masked_logsumexp(z, neg, keepdim=True)            # log sum_{n in N_q} e^{S_qn / tau}
    terms = torch.logaddexp(z, lse_neg) - z                     # -log softmax of the positive
    return torch.where(pos, terms, 0.0).sum() / pos.sum().clamp(min=1)


def mw_loss(S, labels=None, *, tau: float = 1.0, scope: str = "global") -> torch.Tensor:
    r"""The Mann-Whitney loss: binary cross-entropy on the score difference of every
    (positive, negative) pair, a smooth ``1 - AUC``.

    .. math::
        L_{MW} = \frac{1}{|\mathcal P||\mathcal N|} \sum_{p \in \mathcal P} \sum_{n \in \mathcal N}
                 \log\big(1 + e^{-(S_p - S_n)/\tau}\big)

    ``scope="global"`` (the paper): ``p`` and ``n`` run over all positive and negative entries of the
    batch, across queries, so a positive of one query is compared with the negatives of every other
    query.  ``scope="query"``: only pairs within one row (a per-query ranking loss, shift-invariant
    like InfoNCE).  ``tau`` scales the differences (1 = none, our default: the paper's value is not
    known to us).  Since ``log(1 + e^{-x}) >= ln 2`` exactly when ``x <= 0``,
    ``1 - AUC <= L_MW / ln 2`` for every ``tau`` (:func:`aoc_bound`).

    Pair weights: pair (p, n) has ``sigma(-(S_p - S_n)/tau) / (tau |P||N|)``, large for mis-ordered
    pairs from whichever queries; entry ``S_p`` collects minus the sum over its negatives, ``S_n``
    the sum over its positives.  Memory O(|P||N|) (a broadcast difference, B^3 for a B x B batch).
    """
    S, pos, neg = retrieval_masks(S, labels)
    tau = checks.temperature(tau)
    scope = checks.choice(scope, "scope", SCOPES)
    if scope == "global":
        d = S[pos][:, None] - S[neg][None, :]                   # S_p - S_n, |P| x |N|
        return F.softplus(-d / tau).mean()
    d = S[:, :, None] - S[:, None, :]                           # d[q, p, n] = S_qp - S_qn
    keep = pos[:, :, None] & neg[:, None, :]
    return torch.where(keep, F.softplus(-d / tau), 0.0).sum() / keep.sum().clamp(min=1)


def mw_weights(S, labels=None, *, tau: float = 1.0) -> torch.Tensor:
    r"""The pair weights of the global :func:`mw_loss` in closed form: ``dL/dS`` (signed), Q x D.

    With :math:`w_{pn} = \sigma(-(S_p - S_n)/\tau) / (\tau |\mathcal P||\mathcal N|)`, the weight of the
    pair (p, n), a positive entry gets :math:`-\sum_n w_{pn}` (pulled up) and a negative entry
    :math:`+\sum_p w_{pn}` (pushed down), whichever queries p and n belong to.  Equal to
    ``lossviz.pair_weights(mw_loss, S, labels, signed=True, tau=tau)`` (tested)."""
    S, pos, neg = retrieval_masks(S, labels)
    tau = checks.temperature(tau)
    w = torch.sigmoid(-(S[pos][:, None] - S[neg][None, :]) / tau) / (tau * pos.sum() * neg.sum())
    G = torch.zeros_like(S)
    G[pos] = -w.sum(1)
    G[neg] = w.sum(0)
    return G


def bound_points(n: int = 200, *, tau: float = 1.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(bound, aoc)`` for ``n`` seeded random score matrices (B from 4 to 40, the relevant scores
    shifted by -1 to 4, per-query offsets of scale 0 to 3): ``L_MW(tau) / ln 2`` and ``1 - AUC``."""
    n = checks.integer(n, "n", 1)
    g = torch.Generator().manual_seed(checks.integer(seed, "seed", 0))
    bound, aoc = [], []
    for _ in range(n):
        B = int(torch.randint(4, 41, (1,), generator=g))
        signal, scale = float(torch.rand(1, generator=g)) * 5 - 1, float(torch.rand(1, generator=g)) * 3
        S = torch.randn(B, B, generator=g, dtype=torch.float64) + signal * torch.eye(B, dtype=torch.float64)
        S = shift_rows(S, scale * torch.randn(B, generator=g, dtype=torch.float64))
        bound.append(aoc_bound(S, tau=tau))
        aoc.append(1 - global_auc(S))
    return np.asarray(bound), np.asarray(aoc)


#: The losses by name, each ``loss(S, labels=None, *, tau)`` (``mw_query`` is ``mw_loss`` within queries).
LOSS_FNS = {"infonce": info_nce_loss, "mw": mw_loss,
            "mw_query": lambda S, labels=None, *, tau=1.0: mw_loss(S, labels, tau=tau, scope="query")}


def shift_rows(S, c) -> torch.Tensor:
    """``S + c 1^T``: add the offset ``c_q`` to every score of query q (the shift InfoNCE cannot see)."""
    S = checks.as_float_tensor(S, "S (query x document scores)", 2)
    c = checks.as_float_tensor(torch.as_tensor(c, dtype=S.dtype), "c (one offset per query)", 1)
    if len(c) != S.shape[0]:
        raise ValueError(f"c must hold one offset per query ({S.shape[0]}); got {len(c)}")
    return S + c.to(S.device)[:, None]


# ------------------------------------------------------------------------------------------------
# What a retriever is judged on
# ------------------------------------------------------------------------------------------------

def global_auc(S, labels=None) -> float:
    """ROC-AUC over all entries of ``S``: the probability that a positive scores above a negative of
    *any* query, ties counted 1/2 (the Mann-Whitney U over |P| x |N|, by sorting; pure torch)."""
    S, pos, neg = retrieval_masks(S, labels)
    s_pos, s_neg = S[pos].detach().double(), S[neg].detach().double().sort().values
    below = torch.searchsorted(s_neg, s_pos, side="left").double()
    upto = torch.searchsorted(s_neg, s_pos, side="right").double()
    return float((below + 0.5 * (upto - below)).sum() / (len(s_pos) * len(s_neg)))


def query_auc(S, labels=None) -> float:
    """The mean over queries of each query's own AUC (its positives against its negatives, ties 1/2):
    blind to per-query offsets, like InfoNCE and R@1."""
    S, pos, neg = retrieval_masks(S, labels)
    S = S.detach().double()
    qi, pj = pos.nonzero(as_tuple=True)
    row, sp, nm = S[qi], S[qi, pj][:, None], neg[qi]
    below, ties = ((row < sp) & nm).sum(1).to(S.dtype), ((row == sp) & nm).sum(1).to(S.dtype)
    per_pair = (below + 0.5 * ties) / nm.sum(1).clamp(min=1)
    has = nm.any(1)
    per_query = torch.zeros(S.shape[0], dtype=S.dtype).index_add_(0, qi[has], per_pair[has])
    n_pairs = torch.zeros(S.shape[0], dtype=S.dtype).index_add_(0, qi[has], torch.ones_like(per_pair[has]))
    live = n_pairs > 0
    return float((per_query[live] / n_pairs[live]).mean())


def aoc_bound(S, labels=None, *, tau: float = 1.0) -> float:
    """``L_MW(tau) / ln 2``, the paper's upper bound on the area over the ROC curve ``1 - AUC``."""
    return float(mw_loss(S, labels, tau=tau).detach()) / math.log(2)


def row_recall_at_1(S, labels=None) -> float:
    """The fraction of queries whose best-scored document is relevant (ties: the first column)."""
    S, pos, _ = retrieval_masks(S, labels)
    return float(pos.gather(1, S.argmax(1, keepdim=True)).double().mean())


def offset_spread(S) -> float:
    """How far apart the queries' score levels are: the standard deviation over queries of each row's
    mean score, over the standard deviation of the scores around their row's mean.  0 when every
    query's scores sit at the same level; :func:`global_auc` then equals a within-query comparison."""
    S = checks.as_float_tensor(S, "S (query x document scores)", 2).detach().double()
    level = S.mean(1, keepdim=True)
    return float(level.std() / (S - level).std().clamp(min=torch.finfo(S.dtype).tiny))


def centered(S) -> torch.Tensor:
    """``S`` minus each row's mean score: the per-query offsets removed after the fact."""
    S = checks.as_float_tensor(S, "S (query x document scores)", 2)
    return S - S.mean(1, keepdim=True)


def demo_scores(B: int = 32, *, signal: float = 1.5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded B x B score matrix (float64) and a per-query offset direction, for the pictures:
    ``S_qd ~ N(0, 1) + signal [q = d]`` (relevant documents score ``signal`` higher on average), and
    ``c ~ N(0, 1)`` (B,), to be added as ``shift_rows(S, scale * c)``."""
    B = checks.integer(B, "B", 2)
    signal = checks.finite(signal, "signal")
    g = torch.Generator().manual_seed(checks.integer(seed, "seed", 0))
    S = torch.randn(B, B, generator=g, dtype=torch.float64) + signal * torch.eye(B, dtype=torch.float64)
    return S, torch.randn(B, generator=g, dtype=torch.float64)


# ------------------------------------------------------------------------------------------------
# Training: two-view digits retrieval with a dual encoder
# ------------------------------------------------------------------------------------------------

@dataclass(repr=False)
class RetrievalRun(Run):
    """One retrieval run: ``history`` holds iter, loss; ``evals`` iter, auc, r1 (on the first
    :data:`CURVE_ITEMS` test images);
    ``scores`` auc, r1, auc_query, auc_centered, spread (:func:`offset_spread`), all on the test
    score matrix ``S_test`` (float32, queries x documents, the positive on the diagonal)."""

    S_test: np.ndarray = field(default=None)

    def __repr__(self) -> str:
        p, s = self.params, self.scores
        return (f"RetrievalRun({p['loss']}, {p['head']}, tau={p['tau']:g}, seed {p['seed']}: "
                f"AUC {s['auc']:.3f}, R@1 {s['r1']:.3f})")


def retrieval_split(seed: int = 0, n_train: int = 1200) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The 1,797 digits of :func:`lossviz.data.digits` (pixels / 16) re-split by a seeded permutation:
    ``(x_train (n_train x 64), test queries, test documents)``, the last two the test images seen
    through two random views drawn once (seed ``seed``)."""
    d = data.load("digits")
    x = torch.cat([d.x_train, d.x_test])
    n_train = checks.integer(n_train, "n_train", 2, len(x) - 2)
    g = torch.Generator().manual_seed(10_000 + checks.integer(seed, "seed", 0))
    perm = torch.randperm(len(x), generator=g)
    q_test, d_test = augment.two_views(x[perm[n_train:]], "digits", g)
    return x[perm[:n_train]], q_test, d_test


def train_retrieval(loss: str = "mw", *, tau: float = 1.0, head: str = "dot", bias_scale: float = 0.0,
                    epochs: int = 30, batch_size: int = 64, dim: int = 32, lr: float = 1e-3, seed: int = 0,
                    eval_every: int = 3, progress=True, cache: bool = True) -> RetrievalRun:
    """Train a dual encoder for two-view digits retrieval: the query is one random view of an image,
    its relevant document the other view, every other image's view a negative.

    Query and document encoders are separate MLPs 64 -> 128 -> ``dim`` (no normalisation).  ``head``:
    ``"dot"`` scores ``S_qd = f(q) . g(d)`` (the set-up where per-query offsets can grow: the
    component of f(q) along the mean document embedding shifts q's whole row), ``"cosine"`` the
    cosine of the two.  ``bias_scale > 0`` adds a per-query bias head ``b(q) = Linear(x_q)`` to every
    score of q, its initial weights multiplied by ``bias_scale`` (an explicit offset; InfoNCE gives it
    no gradient).  ``loss`` is one of :data:`LOSSES`, with temperature ``tau``.  Adam, batches of
    ``batch_size`` images (the last partial batch dropped), fresh views every batch.  The learning
    curves (``evals``: global AUC and R@1) are measured on the first :data:`CURVE_ITEMS` test images
    before training and every ``eval_every`` epochs; ``scores`` on the whole test split (597 images)
    after training.  Cached by its parameters."""
    checks.choice(loss, "loss", LOSSES)
    tau = checks.temperature(tau)
    checks.choice(head, "head", HEADS)
    bias_scale = checks.non_negative(bias_scale, "bias_scale")
    for name, value, low in (("epochs", epochs, 1), ("batch_size", batch_size, 2), ("dim", dim, 1),
                             ("eval_every", eval_every, 1), ("seed", seed, 0)):
        checks.integer(value, name, low)
    lr = checks.positive(lr, "lr")
    params = dict(loss=loss, tau=tau, head=head, bias_scale=bias_scale, epochs=epochs, batch_size=batch_size,
                  dim=dim, lr=lr, seed=seed, eval_every=eval_every)
    return memo("mw_auc", params, lambda: _train(params, progress), cache=cache)


def _train(p: dict, progress) -> RetrievalRun:
    x_train, q_test, d_test = retrieval_split(p["seed"])
    B = p["batch_size"]

    def build():
        f, g = mlp(64, p["dim"], 128)[:-1], mlp(64, p["dim"], 128)[:-1]       # no L2 normalisation
        if p["bias_scale"] == 0:
            return f, g
        b = nn.Linear(64, 1)
        with torch.no_grad():
            b.weight.mul_(p["bias_scale"])
            b.bias.mul_(p["bias_scale"])
        return f, g, b

    trainer = Trainer(build, lr=p["lr"], seed=p["seed"])
    f, g, *bias = trainer.model

    def scores(xq, xd):
        u, v = f(xq), g(xd)
        if p["head"] == "cosine":
            u, v = F.normalize(u, dim=1), F.normalize(v, dim=1)
        S = u @ v.T                                                            # S_qd = f(q) . g(d)
        return S + bias[0](xq) if bias else S                                  # + b(q) on q's whole row

    sampler = augment.TwoViewSampler(x_train, "digits", B, seed=p["seed"])
    per_epoch = len(x_train) // B
    fn = LOSS_FNS[p["loss"]]

    def step(_it: int) -> dict:
        views, _, _ = sampler.sample()
        value = fn(scores(views[:B], views[B:]), tau=p["tau"])
        trainer.update(value)
        return {"loss": value.detach()}

    def evaluate() -> dict:
        S = scores(q_test[:CURVE_ITEMS], d_test[:CURVE_ITEMS])
        return {"auc": global_auc(S), "r1": row_recall_at_1(S)}

    history, evals, seconds = trainer.run(step, p["epochs"] * per_epoch, evaluate=evaluate,
                                          eval_every=p["eval_every"] * per_epoch, desc=NAMES[p["loss"]],
                                          progress=progress)
    S = trainer.evaluating(lambda: scores(q_test, d_test)).double()
    result = dict(auc=global_auc(S), r1=row_recall_at_1(S), auc_query=query_auc(S),
                  auc_centered=global_auc(centered(S)), spread=offset_spread(S))
    return RetrievalRun(params=p, history=history, evals=evals, scores=result, seconds=seconds,
                        S_test=S.float().numpy())


def paired_runs(seeds=range(8), *, losses=("infonce", "mw"), progress=False, **knobs) -> dict:
    """``{loss: [RetrievalRun per seed]}``, :func:`train_retrieval` with ``knobs`` for every loss and seed.
    Seed s gives every loss the same split, test views, initial networks, batches and training views,
    so the runs are paired; compare them with :func:`lossviz.metrics.paired_difference`."""
    seeds = [checks.integer(s, "seed", 0) for s in seeds]
    if not seeds:
        raise ValueError("paired_runs needs at least one seed")
    for loss in losses:
        checks.choice(loss, "loss", LOSSES)
    return {loss: [train_retrieval(loss, seed=s, progress=progress, **knobs) for s in seeds] for loss in losses}


# ------------------------------------------------------------------------------------------------
# Pictures and panels
# ------------------------------------------------------------------------------------------------

def score_hist(ax, S, *, bins=None, title: str = ""):
    """Histograms (as step lines) of the positive and the negative entries of ``S`` (diagonal
    positives), each normalised to a density; returns the two ``StepPatch`` artists."""
    S = plots.as_numpy(S)
    eye = np.eye(*S.shape, dtype=bool)
    bins = np.linspace(S.min(), S.max(), 41) if bins is None else bins
    artists = []
    for vals, color, name in ((S[~eye], plots.NEG_COLOR, "irrelevant (q, d)"),
                              (S[eye], plots.POS_COLOR, "relevant (q, q)")):
        h, _ = np.histogram(vals, bins=bins, density=True)
        artists.append(ax.stairs(h, bins, color=color, lw=1.8, label=name))
    ax.set(xlabel="score $S_{qd}$", ylabel="density", title=title)
    ax.legend(loc="upper left", fontsize=9)
    return artists


def _negative_scale(G) -> float:
    """The colour scale of a dL/dS map: the largest weight on a negative (off-diagonal) entry.  The
    positives' pulls, each the sum over many negatives, saturate at this scale, and the pattern of
    the pushes stays visible."""
    G = plots.as_numpy(G)
    off = ~np.eye(*G.shape, dtype=bool)
    return max(float(np.abs(G[off]).max()), 1e-12)


def _signed_image(ax, G, title: str):
    """A signed dL/dS heat-map: blue pulls a score up (negative gradient), vermillion pushes it down;
    the scale is set by the negatives (:func:`_negative_scale`), so the positives saturate."""
    from matplotlib.colors import TwoSlopeNorm

    vmax = _negative_scale(G)
    im = ax.imshow(plots.as_numpy(G), cmap=plots.WEIGHT_CMAP, norm=TwoSlopeNorm(0.0, -vmax, vmax))
    ax.set(title=title, xlabel="document d", ylabel="query q")
    ax.grid(False)
    return im


def plot_weights(axes, S, *, tau: float = 1.0) -> dict:
    """The General Pair Weighting view of both losses on ``S`` (diagonal positives), by autograd
    (:func:`lossviz.pair_weights`): InfoNCE's ``dL/dS`` (each row a softmax, minus 1 on the positive),
    the global MW loss's ``dL/dS``, and the row sums ``sum_d dL/dS_qd = dL/dc_q``, the gradient of a
    per-query offset: 0 for InfoNCE on every query.  Returns the two weight matrices."""
    from ..weights import pair_weights

    G = {k: pair_weights(LOSS_FNS[k], S, None, signed=True, tau=tau) for k in ("infonce", "mw")}
    for ax, k in zip(axes[:2], G):
        im = _signed_image(ax, G[k], f"{NAMES[k]}: $\\partial L/\\partial S$")
        ax.figure.colorbar(im, ax=ax, shrink=0.75, extend="both")
    q = np.arange(len(S))
    for k, marker in (("mw", "o"), ("infonce", "s")):
        axes[2].plot(q, G[k].sum(1).numpy(), marker=marker, ms=4, lw=0.8, color=COLORS[k], label=NAMES[k])
    axes[2].axhline(0, color=plots.MUTED, lw=0.8)
    axes[2].set(xlabel="query q", ylabel="row sum of $\\partial L/\\partial S$",
                title="$\\partial L/\\partial c_q$: offset gradient")
    axes[2].legend(loc="best", fontsize=8)
    return G


def plot_bound(ax, bound, aoc, *, tau: float = 1.0) -> None:
    """``1 - AUC`` against the bound ``L_MW / ln 2`` (:func:`bound_points`), with the line y = x."""
    ax.scatter(bound, aoc, s=10, color=COLORS["mw"], alpha=0.6, label="random score matrices")
    top = float(max(np.max(bound), 1.0))
    ax.plot([0, top], [0, top], color="k", lw=1, ls="--", label="1 − AUC = bound")
    ax.set(xlim=(0, top), ylim=(0, 1), xlabel=f"$L_{{MW}}(\\tau={tau:g})\\,/\\ln 2$",
           ylabel="1 − AUC (global)", title="the bound holds for every matrix")
    ax.legend(loc="lower right", fontsize=9)


def shift_curves(S, c, scales, *, tau: float = 1.0) -> dict:
    """For each offset scale s: InfoNCE, MW (global), MW (within query), 1 - AUC and the bound
    ``L_MW / ln 2`` of ``shift_rows(S, s c)``: ``{name: array over scales}``."""
    out = {k: [] for k in ("infonce", "mw", "mw_query", "aoc", "bound")}
    for s in scales:
        Ss = shift_rows(S, s * c)
        out["infonce"].append(float(info_nce_loss(Ss, tau=tau)))
        out["mw"].append(float(mw_loss(Ss, tau=tau)))
        out["mw_query"].append(float(mw_loss(Ss, tau=tau, scope="query")))
        out["aoc"].append(1 - global_auc(Ss))
    out = {k: np.asarray(v) for k, v in out.items()}
    out["bound"] = out["mw"] / math.log(2)
    return out


def shift_panel(S, c, *, tau: float = 1.0, offset: float = 1.0, loss: str = "mw", max_offset: float = 4.0):
    """Pure maths on one score matrix ``S`` (diagonal positives) and an offset direction ``c``: knobs
    τ, the offset scale s (the matrix shown is ``S + s c 1^T``) and the loss whose pair weights
    ``dL/dS`` are drawn.  Left: relevant and irrelevant scores, with the global AUC.  Middle: the
    chosen loss's pair weights.  Right: every loss, 1 - AUC and the bound ``L_MW/ln 2`` against the
    offset scale (InfoNCE and within-query MW are flat), the current scale marked."""
    import ipywidgets as W

    from .. import widgets
    from ..weights import pair_weights

    S = torch.as_tensor(S, dtype=torch.float64).detach()
    c = torch.as_tensor(c, dtype=torch.float64).detach()
    style = dict(continuous_update=False, style={"description_width": "initial"})
    controls = {
        "tau": W.FloatLogSlider(value=tau, base=10, min=-1.3, max=0.7, step=0.05, description="τ",
                                readout_format=".3g", **style),
        "offset": W.FloatSlider(value=offset, min=0.0, max=max_offset, step=0.25, description="offset scale",
                                readout_format=".2f", **style),
        "loss": W.Dropdown(options=[(NAMES[k], k) for k in LOSSES], value=loss, description="loss",
                           layout=W.Layout(width="260px")),
    }
    scales = np.linspace(0.0, max_offset, 17)
    fig, axes = plots.new_figure(3, width=3.3, height=3.3)
    lim = float((S.abs().max() + c.abs().max() * max_offset))
    bins = np.linspace(-lim, lim, 33)
    hist = score_hist(axes[0, 0], S, bins=bins)
    axes[0, 0].set_xlim(-lim, lim)
    im = _signed_image(axes[0, 1], torch.eye(len(S)) - 0.5, "")
    ax = axes[0, 2]
    lines = {k: ax.plot(scales, scales * 0, color=COLORS[k], label=NAMES[k])[0] for k in LOSSES}
    lines["aoc"] = ax.plot(scales, scales * 0, color="k", label="1 − AUC (global)")[0]
    lines["bound"] = ax.plot(scales, scales * 0, color="k", ls="--", label="bound $L_{MW}/\\ln 2$")[0]
    marker = ax.axvline(offset, color=plots.MUTED, lw=1)
    ax.set(xlabel="offset scale s", ylabel="value", title="what sees the offsets")
    ax.legend(loc="upper left", fontsize=7)
    cache: dict = {}

    def draw(v):
        if cache.get("tau") != v["tau"]:                        # the curves depend on tau only
            cache.update(tau=v["tau"], curves=shift_curves(S, c, scales, tau=v["tau"]))
        curves = cache["curves"]
        for k, line in lines.items():
            line.set_ydata(curves[k])
        ax.set_ylim(0, 1.4 * max(float(np.max(y)) for y in curves.values()))      # room for the legend
        marker.set_xdata([v["offset"], v["offset"]])
        Ss = shift_rows(S, v["offset"] * c)
        for art, vals in zip(hist, (Ss[~torch.eye(len(S), dtype=torch.bool)], Ss.diagonal())):
            art.set_data(np.histogram(vals.numpy(), bins=bins, density=True)[0])
        top = max(float(a.get_data().values.max()) for a in hist)
        axes[0, 0].set_ylim(0, 1.1 * top)
        auc = global_auc(Ss)
        axes[0, 0].set_title(f"scores, global AUC {auc:.3f}")
        G = pair_weights(LOSS_FNS[v["loss"]], Ss, None, signed=True, tau=v["tau"])
        vmax = _negative_scale(G)
        im.set_data(G.numpy())
        im.set_clim(-vmax, vmax)
        row_sum = float(G.sum(1).abs().max())
        axes[0, 1].set_title(f"$\\partial L/\\partial S$, max |row sum| {row_sum:.1e}", fontsize=11)
        values = {k: float(LOSS_FNS[k](Ss, tau=v["tau"])) for k in LOSSES}
        return {"S": Ss, "G": G, "auc": auc, "row_sum": row_sum, "values": values, "curves": curves,
                "status": f"offset scale {v['offset']:.2f}, τ = {v['tau']:.3g}: global AUC {auc:.3f}; "
                          + ", ".join(f"{NAMES[k]} {x:.3f}" for k, x in values.items())}

    return widgets.Panel(controls, fig, draw)


def plot_runs(axes, runs: dict, *, what=("loss", "auc", "r1")) -> None:
    """Panels over iterations for ``{name: RetrievalRun}``, one per entry of ``what``: ``"loss"`` (each
    training loss over its value at the first step), ``"auc"`` (test global AUC) and ``"r1"`` (test
    R@1), the last two measured every ``eval_every`` epochs."""
    titles = {"loss": ("loss / loss at step 1", "training loss (relative)"),
              "auc": ("AUC", f"test AUC, global ({CURVE_ITEMS} images)"),
              "r1": ("R@1", f"test R@1 ({CURVE_ITEMS} images)")}
    for ax, key in zip(np.ravel(axes), what):
        for name, run in runs.items():
            kw = dict(color=COLORS[run.params["loss"]], label=name)
            if key == "loss":
                h = run.history
                ax.plot(h["iter"], h["loss"] / h["loss"][0], lw=1, **kw)
            else:
                ax.plot(run.evals["iter"], run.evals[key], marker=".", **kw)
        ax.set(xlabel="iteration", ylabel=titles[key][0], title=titles[key][1])
        if key == "r1":
            ax.set_ylim(0, None)
    np.ravel(axes)[0].legend(loc="best", fontsize=9)


def plot_offsets(axes, runs: dict) -> None:
    """For ``{name: RetrievalRun}``: the global ROC curves, the histogram of each query's score level
    (its row mean, relative to the within-row spread) and the test AUC three ways (global, with the
    rows' means removed, within each query)."""
    from ..metrics import roc_curve

    names = list(runs)
    for name, run in runs.items():
        S, color = run.S_test.astype(np.float64), COLORS[run.params["loss"]]
        eye = np.eye(len(S), dtype=bool)
        fpr, tpr = roc_curve(S[~eye], S[eye])
        axes[0].plot(fpr, tpr, color=color, label=f"{name}: AUC {run.scores['auc']:.3f}")
        level = S.mean(1)
        axes[1].hist((level - level.mean()) / (S - level[:, None]).std(), bins=30, histtype="step", lw=1.8,
                     color=color, label=f"{name}: spread {run.scores['spread']:.2f}")
    axes[0].plot([0, 1], [0, 1], color=plots.MUTED, lw=0.8)
    axes[0].set(xlabel="false positive rate", ylabel="true positive rate", title="global ROC (test)")
    axes[0].legend(loc="lower right", fontsize=8)
    axes[1].set(xlabel="row mean (centred, / within-row sd)", ylabel="queries",
                title="per-query score levels")
    axes[1].legend(loc="upper left", fontsize=8)
    kinds = (("auc", "global"), ("auc_centered", "centred"), ("auc_query", "in query"))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        run = runs[name]
        vals = [run.scores[k] for k, _ in kinds]
        axes[2].bar(np.arange(3) + (i - (len(names) - 1) / 2) * width, vals, width, color=COLORS[run.params["loss"]],
                    label=name)
    lo = min(runs[n].scores[k] for n in names for k, _ in kinds)
    axes[2].set_xticks(np.arange(3), [t for _, t in kinds])
    axes[2].set(ylim=(lo - 0.03, 1.0), ylabel="test AUC", title="AUC, three ways")
    axes[2].legend(loc="upper left", fontsize=8)


def training_panel(*, autorun: bool = True, **defaults):
    """A Train button over :func:`train_retrieval`: the loss, τ, the score head, the initial scale of a
    per-query bias head (0: none), epochs and seed.  Draws the learning curves and the per-query
    score levels of the run."""
    import ipywidgets as W

    from .. import widgets

    d = dict(loss="mw", tau=1.0, head="dot", bias_scale=0.0, epochs=30, seed=0) | defaults
    style = dict(continuous_update=False, style={"description_width": "initial"})
    controls = {
        "loss": W.Dropdown(options=[(NAMES[k], k) for k in LOSSES], value=d["loss"], description="loss",
                           layout=W.Layout(width="250px")),
        "tau": W.FloatLogSlider(value=d["tau"], base=10, min=-2, max=0, step=0.1, description="τ",
                                readout_format=".3g", **style),
        "head": W.Dropdown(options=list(HEADS), value=d["head"], description="scores", layout=W.Layout(width="160px")),
        "bias_scale": W.Dropdown(options=[0.0, 1.0, 3.0, 10.0], value=d["bias_scale"], description="bias head ×",
                                 layout=W.Layout(width="170px")),
        "epochs": W.IntSlider(value=d["epochs"], min=1, max=60, description="epochs", **style),
        "seed": W.BoundedIntText(value=d["seed"], min=0, max=99, description="seed", layout=W.Layout(width="140px")),
    }

    def run(v, progress):
        return train_retrieval(v["loss"], tau=v["tau"], head=v["head"], bias_scale=v["bias_scale"],
                               epochs=v["epochs"], seed=v["seed"], progress=progress)

    def draw(axes, result, _v):
        plot_runs(axes[0, :2], {NAMES[result.params["loss"]]: result}, what=("auc", "r1"))
        S = result.S_test.astype(np.float64)
        level = S.mean(1)
        axes[0, 2].hist((level - level.mean()) / (S - level[:, None]).std(), bins=30,
                        color=COLORS[result.params["loss"]])
        axes[0, 2].set(xlabel="row mean (centred, / sd)", ylabel="queries",
                       title=f"score levels, spread {result.scores['spread']:.2f}")
        return {"status": f"{result!r}; within-query AUC {result.scores['auc_query']:.3f} "
                          f"in {result.seconds:.1f} s"}

    return widgets.run_panel(controls, run, draw, ncols=3, width=3.3, height=3.2, autorun=autorun)
