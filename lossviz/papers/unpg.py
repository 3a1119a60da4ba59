r"""Unified Negative Pair Generation (UNPG; Jung et al., arXiv 2203.11593).

A margin softmax (ArcFace, CosFace: :mod:`lossviz.margins`) pairs each sample with every class
proxy; a metric loss pairs it with the other samples of the batch.  UNPG puts both kinds of
negative pair into one softmax.  With the cosines ``C_ik = cos θ_ik`` (B x K) and the batch
similarities ``S = X̂ X̂ᵀ`` (B x B):

* batch negatives  ``S^n = {S_ab : a < b, y_a ≠ y_b}`` (the upper triangle: each pair once);
* box-and-whisker filter  ``S^n' = {v ∈ S^n : Q1 - w IQR <= v <= Q3 + w IQR}``, ``IQR = Q3 - Q1``,
  with the official code's integer-index quartiles ``Q1 = sort(S^n)[⌊L/4⌋]``,
  ``Q3 = sort(S^n)[⌊3L/4⌋]`` (not interpolated), ``L = |S^n|``;
* the loss

      L = (1/B) Σ_i -log( e^{s ψ(θ_iy)} / (e^{s ψ(θ_iy)} + Σ_{k≠y_i} e^{s cos θ_ik} + Σ_{v∈S^n'} e^{s v}) )

  with ``ψ(θ) = cos(θ + m)`` (ArcFace) or ``cos θ - m`` (CosFace).

The pair weights (General Pair Weighting) are ``dL/dS_ab = (s/B) Σ_i p_{i,ab}`` on a kept pair,
``p_{i,ab} = e^{s S_ab} / Z_i`` being row ``i``'s softmax probability of that pair; exactly 0 on a
filtered pair and on every positive pair (UNPG has no positive-pair term).  Since every row gets
the *same* kept pairs, the weight is one exponential ``∝ e^{s S_ab}`` for all pairs, not tied to
an anchor.  :func:`unpg_weights` reads them, with the proxy weights ``dL/dC``, by autograd.

Implementation note.  The official code appends the kept vector to every row (a B x |S^n'| block
of logits).  The appended sum ``Σ_v e^{s v}`` is the same number for every row, so we append its
logarithm ``logsumexp(s S^n')`` as **one** extra column: the same loss and the same gradients,
memory ``O(B K + B²)`` instead of ``O(B³)``.  ``tests/test_unpg.py`` checks the two against each
other and against a loop written from the formula.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import checks, margins, metrics
from ..similarity import pair_masks, similarity
from ..train import Run, Trainer, memo

#: The margin types UNPG is combined with in this module (the paper also uses MagFace).
KINDS = ("arcface", "cosface")


# --------------------------------------------------------------------------------------------
# The box-and-whisker filter
# --------------------------------------------------------------------------------------------

def negative_pairs(labels) -> torch.Tensor:
    """``S^n`` as a B x B mask: pairs ``a < b`` (upper triangle) with ``y_a ≠ y_b``."""
    labels = torch.as_tensor(labels)
    return pair_masks(labels)[1].triu(diagonal=1)


def index_quantile(values: torch.Tensor, q: float) -> torch.Tensor:
    """The official code's quantile: ``sort(values)[int(q L)]``, by integer index, not interpolated
    (``torch.quantile`` interpolates and gives slightly different whiskers)."""
    if values.numel() == 0:
        raise ValueError("index_quantile needs at least one value")
    if not 0 <= q < 1:
        raise ValueError(f"q must be in [0, 1); got {q}")
    values = values.detach().reshape(-1)
    return _order_statistic(values, int(q * values.numel()))


def _order_statistic(values: torch.Tensor, i: int) -> torch.Tensor:
    """``sort(values)[i]`` without the full sort (``kthvalue`` counts from 1); several times faster
    on the ~8000 batch negatives of every training step."""
    return values.kthvalue(i + 1).values


class Window(NamedTuple):
    """The box-and-whisker window: quartiles and the kept interval ``[lo, hi]`` (0-d tensors)."""

    q1: torch.Tensor
    q3: torch.Tensor
    lo: torch.Tensor
    hi: torch.Tensor


def _whisker(w) -> float:
    if isinstance(w, (int, float)) and not isinstance(w, bool) and w == math.inf:
        return math.inf  # no filter
    return checks.non_negative(w, "w (the whisker width; math.inf for no filter)")


def whisker_window(values, w: float = 1.5) -> Window:
    """``[Q1 - w IQR, Q3 + w IQR]`` over ``values`` (the batch negatives); ``w = math.inf`` keeps all."""
    values = checks.as_float_tensor(values, "values (batch negative similarities)", 1).detach()
    w = _whisker(w)
    if values.numel() == 0:
        raise ValueError("the whisker window needs at least one negative pair (S^n is empty)")
    L = values.numel()
    # sort(S^n)[int(0.25 L)] and sort(S^n)[int(0.75 L)], as in the official code
    q1, q3 = _order_statistic(values, L // 4), _order_statistic(values, (3 * L) // 4)
    if w == math.inf:
        inf = torch.tensor(math.inf, dtype=values.dtype, device=values.device)
        return Window(q1, q3, -inf, inf)
    iqr = q3 - q1
    return Window(q1, q3, q1 - w * iqr, q3 + w * iqr)


def _check_S(S, n: int) -> torch.Tensor:
    S = checks.as_float_tensor(S, "S (batch similarities, B x B)", 2)
    if S.shape != (n, n):
        raise ValueError(f"S must be B x B with B = {n} (one row per sample of the batch); got {tuple(S.shape)}")
    if checks.validation_enabled() and bool((S.abs() > 1 + 1e-4).any()):
        raise ValueError("S holds values outside [-1, 1]: build it from L2-normalised features "
                         "(lossviz.similarity), or s*S swamps the proxy logits")
    return S


def kept_pairs(S, labels, *, w: float = 1.5) -> torch.Tensor:
    """``S^n'`` as a B x B mask: the batch negatives inside the whisker window (upper triangle).

    All False when the batch holds one identity only (``S^n`` empty)."""
    S = checks.as_float_tensor(S, "S (batch similarities, B x B)", 2)
    labels = checks.check_labels(labels, S.shape[0], S.device)
    neg = negative_pairs(labels)
    if not bool(neg.any()):
        return neg
    Sd = S.detach()
    win = whisker_window(Sd[neg], w)
    return neg & (Sd >= win.lo) & (Sd <= win.hi)


def kept_counts(S, labels, ws) -> np.ndarray:
    """``|S^n'|`` for each whisker width in ``ws`` (non-decreasing in ``w``)."""
    return np.array([int(kept_pairs(S, labels, w=w).sum()) for w in ws])


# --------------------------------------------------------------------------------------------
# The loss and its weights
# --------------------------------------------------------------------------------------------

def unpg_logits(C, S, labels, *, s: float = 64.0, m: float = 0.5, w: float = 1.5, kind: str = "arcface",
                easy_threshold: bool = False) -> torch.Tensor:
    """The B x (K + 1) logits: ``s ψ(θ_iy)`` / ``s cos θ_ik`` (:func:`lossviz.margins.margin_logits`)
    and one column ``log Σ_{v∈S^n'} e^{s v}``, the same for every row.  B x K (no extra column)
    when ``S^n'`` is empty."""
    checks.choice(kind, "kind", KINDS)
    logits = margins.margin_logits(C, labels, s=s, m=m, kind=kind, easy_threshold=easy_threshold)
    labels = checks.check_labels(labels, logits.shape[0], logits.device)
    S = _check_S(S, logits.shape[0])
    kept = kept_pairs(S, labels, w=w)
    if not bool(kept.any()):  # one identity in the batch: no negatives, plain ArcFace / CosFace
        return logits
    pairs = torch.logsumexp(s * S[kept].to(logits.dtype), dim=0)   # log Σ_{v∈S^n'} e^{s v}
    return torch.cat([logits, pairs.expand(logits.shape[0], 1)], dim=1)


def unpg_loss(C, S, labels, *, s: float = 64.0, m: float = 0.5, w: float = 1.5, kind: str = "arcface",
              easy_threshold: bool = False) -> torch.Tensor:
    """UNPG: the margin softmax with the kept batch negatives ``S^n'`` added to every denominator.

    ``C`` holds the cosines ``cos θ_ik`` (B x K, :func:`lossviz.margins.cosine_logits`), ``S`` the
    similarities of the L2-normalised batch features (B x B, :func:`lossviz.similarity`); both may
    carry gradients.  Defaults are head.zoo.yaml's: ArcFace ``s = 64, m = 0.5``, ``w = 1.5``
    (``w = math.inf``: no filter).  ``easy_threshold`` is ArcFace's common fall-back beyond
    ``θ + m > π`` (insightface; not part of UNPG's code, off by default).  A batch of one identity
    has no negative pair and gives the plain margin softmax."""
    logits = unpg_logits(C, S, labels, s=s, m=m, w=w, kind=kind, easy_threshold=easy_threshold)
    return F.cross_entropy(logits, checks.check_labels(labels, logits.shape[0], logits.device).long())


class Weights(NamedTuple):
    """``dL/dS`` (B x B, non-zero only on kept pairs of the upper triangle) and ``dL/dC`` (B x K)."""

    S: torch.Tensor
    C: torch.Tensor


def unpg_weights(C, S, labels, **knobs) -> Weights:
    """The General Pair Weighting view of UNPG, by autograd: make ``C`` and ``S`` leaves, back-propagate
    :func:`unpg_loss`, read ``S.grad`` (batch pair weights, ``>= 0``) and ``C.grad`` (proxy weights;
    negative on the target column).  Signed, as the gradient is."""
    C = checks.as_float_tensor(C, "C (cosines, B x K)", 2).detach().clone().requires_grad_(True)
    S = checks.as_float_tensor(S, "S (batch similarities, B x B)", 2).detach().clone().requires_grad_(True)
    with torch.enable_grad():
        gS, gC = torch.autograd.grad(unpg_loss(C, S, labels, **knobs), (S, C), allow_unused=True)
    return Weights(torch.zeros_like(S) if gS is None else gS, gC)


def negative_mass(C, S, labels, **knobs) -> tuple[float, float]:
    """How row ``i``'s softmax splits its negative probability, averaged over the batch:
    ``(Σ_{k≠y} p_ik, Σ_{v∈S^n'} p_iv)`` -- the push on proxies and on batch pairs."""
    logits = unpg_logits(C, S, labels, **knobs).detach()
    labels = checks.check_labels(labels, logits.shape[0], logits.device)
    p = logits.softmax(dim=1)
    K = torch.as_tensor(C).shape[1]
    proxy = p[:, :K].sum(dim=1) - p.gather(1, labels[:, None]).squeeze(1)
    batch = p[:, K:].sum(dim=1)
    return float(proxy.mean()), float(batch.mean())


# --------------------------------------------------------------------------------------------
# Training: ArcFace vs ArcFace + UNPG on the synthetic identities
# --------------------------------------------------------------------------------------------

#: Identity-independent "nuisance" features appended to the synthetic faces (see :func:`face_data`).
NOISE_DIMS, NOISE_SCALE = 16, 1.0

#: :func:`train_faces` records the kept share ``|S^n'| / |S^n|`` of the batch every this many steps.
KEPT_EVERY = 10


def face_data(noise_dims: int = NOISE_DIMS, noise_scale: float = NOISE_SCALE, *, seed: int = 0):
    """``data.load("ids")`` with ``noise_dims`` nuisance features ``N(0, noise_scale²)`` appended to every
    image, drawn independently of the identity (think lighting, pose, background of a photo).

    Without them the raw cosine of the 32 clean features already verifies unseen identities well,
    and the small face network learns little there that carries over to new people (its TAR ends
    near where the untrained network starts).  With them the raw cosine is mostly noise, and a
    network that learns to ignore the nuisance dimensions on the training identities ignores them
    on unseen ones too.  ``noise_dims = 0`` gives the clean data."""
    noise_dims = checks.integer(noise_dims, "noise_dims", 0)
    noise_scale = checks.non_negative(noise_scale, "noise_scale")
    return _face_data(noise_dims, float(noise_scale), seed)


@functools.lru_cache(maxsize=8)
def _face_data(noise_dims: int, noise_scale: float, seed: int):
    from .. import data

    split = data.load("ids")
    if noise_dims == 0:
        return split
    rng = np.random.default_rng([seed, noise_dims])           # apart from the identities' own draws
    x_train, x_test = (torch.cat([x, torch.as_tensor(noise_scale * rng.normal(size=(len(x), noise_dims)),
                                                     dtype=x.dtype)], dim=1)
                       for x in (split.x_train, split.x_test))
    return data.Split(f"ids+{noise_dims}noise", x_train, split.y_train, x_test, split.y_test,
                      f"{split.description}; {noise_dims} identity-independent N(0, {noise_scale:g}²) features appended")


def face_model(in_dim: int = 32 + NOISE_DIMS, hidden: int = 128, dim: int = 16) -> nn.Sequential:
    """MLP ``in_dim -> hidden -> hidden -> dim`` with ReLU, L2-normalised output (the face lesson's model)."""
    from ..models import L2Normalize

    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, dim), L2Normalize())


@dataclass(repr=False)
class FaceRun(Run):
    """One training run: ``history`` per step (iter, loss; kept = |S^n'| / |S^n| every
    :data:`KEPT_EVERY` steps, at the steps ``kept_iter``), ``evals`` (iter,
    tar@1e-3, tar@1e-2, p99_batch, p99_proxy), and the trained network and proxies."""

    net: nn.Module | None = None
    head: margins.CosineClassifier | None = None

    @property
    def name(self) -> str:
        return _run_name(self.params)

    def tar(self, far: float = 1e-2) -> float:
        """TAR at ``far`` (1e-2 or 1e-3) on the unseen identities, at the end of training."""
        return self.final(f"tar@{far:.0e}".replace("e-0", "e-"))

    def view(self, x, y) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(C, S, y)`` of a batch through the trained network (:func:`batch_view`)."""
        return batch_view(self.net, self.head, x, y)

    def __repr__(self) -> str:
        return f"FaceRun({self.name}, seed {self.params['seed']}: TAR@1e-2 {self.tar(1e-2):.3f}, TAR@1e-3 {self.tar(1e-3):.3f})"


def _run_name(p: dict) -> str:
    return ("ArcFace" if p["kind"] == "arcface" else "CosFace") + (" + UNPG" if p["unpg"] else "")


@torch.no_grad()
def batch_view(net: nn.Module, head: margins.CosineClassifier, x, y):
    """``(C, S, y)`` of a batch: cosines to the proxies (B x K) and batch similarities (B x B),
    float64, no gradient."""
    was_training = net.training
    net.eval()
    f = net(torch.as_tensor(x)).double()
    net.train(was_training)
    return margins.cosine_logits(f, head.weight.double()), similarity(f), torch.as_tensor(y)


def probe_batch(split=None, batch: int = 128, seed: int = 0):
    """A fixed batch of training images ``(x, y)`` (the same for every run), to look at the pairs;
    ``split`` defaults to :func:`face_data`."""
    split = face_data() if split is None else split
    idx = torch.randperm(len(split.y_train), generator=torch.Generator().manual_seed(seed))[:batch]
    return split.x_train[idx], split.y_train[idx]


def mismatch(C, S, labels, q: float = 0.99) -> tuple[float, float]:
    """The ``q``-quantile (integer index) of the batch negatives ``S^n`` and of the proxy negatives
    ``cos θ_ik, k ≠ y_i``: the paper's "mismatch" in numbers."""
    labels = torch.as_tensor(labels)
    others = ~F.one_hot(labels, C.shape[1]).bool()
    return float(index_quantile(S[negative_pairs(labels)], q)), float(index_quantile(C[others], q))


def train_faces(*, unpg: bool = True, s: float = 30.0, m: float = 0.3, w: float = 1.5, kind: str = "arcface",
                iters: int = 300, batch: int = 128, lr: float = 2e-3, seed: int = 0, eval_every: int = 50,
                noise_dims: int = NOISE_DIMS, noise_scale: float = NOISE_SCALE,
                progress=True, cache: bool = True) -> FaceRun:
    """Train :func:`face_model` + a :class:`~lossviz.margins.CosineClassifier` on the 300 training
    identities of :func:`face_data` (``noise_dims`` nuisance features of scale ``noise_scale``
    appended) with ArcFace (or CosFace), with or without UNPG, and verify on the 100 unseen
    identities (TAR@FAR, :func:`lossviz.metrics.tar_at_far`).

    Batches of ``batch`` random images, Adam.  Every ``eval_every`` steps (and before training):
    TAR@1e-3, TAR@1e-2 and the 99th percentiles of batch and proxy negatives on a fixed
    :func:`probe_batch`.  Cached by parameters (:func:`lossviz.train.memo`); ``progress`` as in
    :func:`lossviz.train.loop`."""
    for arg, value, low in (("iters", iters, 1), ("batch", batch, 2), ("eval_every", eval_every, 1)):
        checks.integer(value, arg, low)
    checks.choice(kind, "kind", KINDS)
    s, m, lr = checks.positive(s, "s (the scale)"), checks.non_negative(m, "m (the margin)"), checks.positive(lr, "lr")
    w = _whisker(w)
    noise_dims, noise_scale = checks.integer(noise_dims, "noise_dims", 0), float(checks.non_negative(noise_scale, "noise_scale"))
    params = dict(unpg=bool(unpg), s=s, m=m, w=w, kind=kind, iters=iters, batch=batch, lr=lr, seed=seed,
                  eval_every=eval_every, noise_dims=noise_dims, noise_scale=noise_scale)
    return memo("unpg.train_faces", params, lambda: _train(params, progress), cache=cache)


def _train(p: dict, progress) -> FaceRun:
    split = face_data(p["noise_dims"], p["noise_scale"])
    if p["batch"] > len(split.y_train):
        raise ValueError(f"batch must be at most {len(split.y_train)} (the training images); got {p['batch']}")

    def build():
        net = face_model(split.x_train.shape[1])
        return net, margins.CosineClassifier(net[-2].out_features, int(split.y_train.max()) + 1)

    trainer = Trainer(build, lr=p["lr"], seed=p["seed"])
    net, head = trainer.model
    gen = torch.Generator().manual_seed(p["seed"])
    probe = probe_batch(split, p["batch"])
    knobs = dict(s=p["s"], m=p["m"], kind=p["kind"])

    def evaluate() -> dict:
        tar = metrics.tar_at_fars(net(split.x_test), split.y_test, (1e-3, 1e-2))
        p99_batch, p99_proxy = mismatch(*batch_view(net, head, *probe))
        return {"tar@1e-3": tar[1e-3], "tar@1e-2": tar[1e-2], "p99_batch": p99_batch, "p99_proxy": p99_proxy}

    def step(it: int) -> dict:
        idx = torch.randperm(len(split.y_train), generator=gen)[:p["batch"]]
        y = split.y_train[idx]
        f = net(split.x_train[idx])
        C, S = head(f), similarity(f)
        if p["unpg"]:
            loss = unpg_loss(C, S, y, w=p["w"], **knobs)
        else:
            loss = margins.margin_softmax_loss(C, y, **knobs)
        trainer.update(loss)
        if it % KEPT_EVERY:          # the kept share runs the filter a second time: record it now and then
            return {"loss": loss}
        neg = negative_pairs(y)
        return {"loss": loss, "kept": float(kept_pairs(S, y, w=p["w"]).sum() / neg.sum().clamp(min=1))}

    history, evals, seconds = trainer.run(step, p["iters"], evaluate=evaluate, eval_every=p["eval_every"],
                                          desc=_run_name(p), progress=progress)
    return FaceRun(params=p, history=history, evals=evals, seconds=seconds, net=net, head=head)


# --------------------------------------------------------------------------------------------
# Pictures and panels
# --------------------------------------------------------------------------------------------

#: Proxy negatives (sample-to-class-centre pairs): a colour apart from the batch negatives'.
PROXY_COLOR = "#CC79A7"


def mismatch_plot(ax, C, S, labels, *, w: float = 1.5, title: str = "negative similarities", bins: int = 60):
    """Densities of the batch negatives ``S^n``, the kept window ``S^n'`` and the proxy negatives
    ``cos θ_ik (k ≠ y_i)``; the filtered tails are shaded.  Returns the window."""
    return _mismatch_view(ax, C, S, labels, bins=bins)(w, title)


def _mismatch_view(ax, C, S, labels, *, bins: int = 60):
    """Draw what :func:`mismatch_plot` shows that does not depend on ``w`` (the two densities, the
    quartiles) and return ``update(w, title) -> Window``, which moves the kept density, the shaded
    tails and the counts in place (a panel calls it on every change)."""
    from matplotlib.patches import Rectangle

    from .. import plots

    labels = torch.as_tensor(labels)
    sn = plots.as_numpy(S[negative_pairs(labels)])
    proxies = plots.as_numpy(C[~F.one_hot(labels, C.shape[1]).bool()])
    sn_t = torch.as_tensor(sn)
    edges = np.linspace(min(sn.min(), proxies.min()) - 0.02, max(sn.max(), proxies.max()) + 0.02, bins)
    ax.hist(proxies, edges, density=True, histtype="step", color=PROXY_COLOR, lw=2,
            label=f"proxy negatives cos θ ({len(proxies)})")
    ax.hist(sn, edges, density=True, histtype="step", color=plots.NEG_COLOR, lw=2, label=f"batch negatives $S^n$ ({len(sn)})")
    kept_density = ax.stairs(np.zeros(bins - 1), edges, fill=True, color=plots.NEG_COLOR, alpha=0.3, lw=0,
                             label="kept $S^{n\\prime}$")
    tails = [ax.add_patch(Rectangle((edges[0], 0), 0, 1, transform=ax.get_xaxis_transform(), color=plots.MUTED,
                                    alpha=0.2, lw=0)) for _ in range(2)]
    quartiles = whisker_window(sn_t, 0.0)
    for x in (float(quartiles.q1), float(quartiles.q3)):
        ax.axvline(x, color=plots.NEG_COLOR, ls=":", lw=1)
    ax.set(xlim=(edges[0], edges[-1]), xlabel="cosine similarity", ylabel="density")
    legend = ax.legend(loc="upper left", fontsize=9)
    kept_text = next(t for t in legend.get_texts() if t.get_text().startswith("kept"))
    scale = 1.0 / (len(sn) * (edges[1] - edges[0]))

    def update(w: float, title: str) -> Window:
        win = whisker_window(sn_t, w)
        lo, hi = float(win.lo), float(win.hi)
        kept = sn[(sn >= lo) & (sn <= hi)]
        kept_density.set_data(np.histogram(kept, edges)[0] * scale)
        for tail, (a, b) in zip(tails, ((edges[0], lo), (hi, edges[-1]))):
            tail.set_visible(b > a)
            if b > a:
                tail.set_x(a)
                tail.set_width(b - a)
        kept_text.set_text(f"kept $S^{{n\\prime}}$ ({len(kept)})")
        ax.set_title(title)
        return win

    return update


def weight_plot(ax, C, S, labels, **knobs):
    """|dL/dS_ab| of every batch negative and dL/dcos θ_ik of every proxy negative against their
    similarity (log scale); filtered pairs (weight exactly 0) are drawn as ``x`` on the floor."""
    return _weight_view(ax, C, S, labels)(**knobs)


def _weight_view(ax, C, S, labels):
    """The three scatters of :func:`weight_plot`, drawn once; returns ``update(**knobs) -> Weights``,
    which moves their points (the weights depend on every knob, the kept set on ``w``) in place."""
    from .. import plots

    labels = torch.as_tensor(labels)
    neg = negative_pairs(labels)
    others = ~F.one_hot(labels, C.shape[1]).bool()
    x_proxy, x_neg = plots.as_numpy(C[others]), plots.as_numpy(S[neg])
    proxies = ax.scatter(x_proxy, np.ones_like(x_proxy), s=4, color=PROXY_COLOR, alpha=0.4,
                         label="proxy negative $\\partial L/\\partial \\cos\\theta_{ik}$")
    kept_pts = ax.scatter(x_neg, np.ones_like(x_neg), s=6, color=plots.NEG_COLOR,
                          label="kept batch pair $\\partial L/\\partial S_{ab}$")
    dropped_pts = ax.scatter(x_neg[:0], x_neg[:0], marker="x", s=18, color="k", label="filtered pair: weight exactly 0")
    ax.set_yscale("log")
    ax.set(xlabel="similarity (cosine)", ylabel="pair weight (log scale)")
    ax.autoscale_view()
    ax.set_autoscale_on(False)        # the x range is every pair's, whatever the knobs keep
    legend = ax.legend(loc="upper left", fontsize=9)
    dropped_text = legend.get_texts()[2]

    def update(**knobs) -> Weights:
        Wt = unpg_weights(C, S, labels, **knobs)
        kept = kept_pairs(S, labels, w=knobs.get("w", 1.5))
        wk, wc = plots.as_numpy(Wt.S[kept]), plots.as_numpy(Wt.C[others])
        top = max(wk.max() if len(wk) else 0.0, wc.max())
        floor = 10 ** np.floor(np.log10(top) - 12)   # show twelve decades; e^{s v} spans more at large s
        dropped = neg & ~kept
        x_drop = plots.as_numpy(S[dropped])
        proxies.set_offsets(np.column_stack([x_proxy, wc]))
        kept_pts.set_offsets(np.column_stack([plots.as_numpy(S[kept]), wk]))
        dropped_pts.set_offsets(np.column_stack([x_drop, np.full(len(x_drop), floor)]))
        dropped_text.set_text(f"filtered pair: weight exactly 0 ({len(x_drop)})")
        ax.set_ylim(floor / 3, top * 3)
        ax.set_title(f"UNPG weights, s = {knobs.get('s', 64.0):.3g}")
        return Wt

    return update


def explore_panel(C, S, labels, *, s: float = 30.0, m: float = 0.3, w: float = 1.5, kind: str = "arcface"):
    """Pure maths on a fixed batch: scale ``s``, margin ``m``, whisker ``w`` (or no filter), margin
    type.  Left: the mismatch densities with the whisker window; middle: pair weights against
    similarity; right: kept count against ``w``.  The artists are drawn once and updated in place."""
    import ipywidgets as W

    from .. import widgets

    C, S, labels = torch.as_tensor(C).detach(), torch.as_tensor(S).detach(), torch.as_tensor(labels)
    style = dict(continuous_update=False, style={"description_width": "initial"})
    controls = {
        "s": W.FloatLogSlider(value=s, base=2, min=3, max=6, step=0.25, description="s (scale)", readout_format=".3g", **style),
        "m": W.FloatSlider(value=m, min=0.0, max=0.5, step=0.05, description="m (margin)", **style),
        "w": W.FloatSlider(value=w, min=0.0, max=3.0, step=0.1, description="w (whisker)", **style),
        "filter": W.Checkbox(value=True, description="filter on (off: w = ∞)", indent=False),
        "kind": W.Dropdown(options=list(KINDS), value=kind, description="margin"),
    }
    from .. import plots

    fig, axes = plots.new_figure(3, width=4.4, height=3.7)
    grid = np.linspace(0, 3, 31)
    n_neg = int(negative_pairs(labels).sum())
    counts = kept_counts(S, labels, grid)
    show_window = _mismatch_view(axes[0, 0], C, S, labels)
    show_weights = _weight_view(axes[0, 1], C, S, labels)
    ax = axes[0, 2]
    ax.plot(grid, counts, color=plots.NEG_COLOR, marker=".")
    all_line = ax.axhline(n_neg, color=plots.MUTED, ls="--", label=f"all {n_neg} batch negatives")
    (dot,) = ax.plot([w], [counts[0]], "o", color="k", ms=8)
    ax.set(xlabel="whisker width w", ylabel="kept batch negatives $|S^{n\\prime}|$", title="kept pairs against w")

    def draw(v):
        w_ = v["w"] if v["filter"] else math.inf
        knobs = dict(s=v["s"], m=v["m"], w=w_, kind=v["kind"])
        win = show_window(w_, f"batch vs proxy negatives, w = {w_:.3g}")
        Wt = show_weights(**knobs)
        kept = int(kept_pairs(S, labels, w=w_).sum())
        dot.set_data([v["w"]], [kept])
        dot.set_visible(v["filter"])
        dot.set_label(f"w = {v['w']:.3g}: {kept} kept")
        ax.legend(handles=[all_line, dot] if v["filter"] else [all_line], loc="lower right")
        proxy, batch = negative_mass(C, S, labels, **knobs)
        return {"kept": kept, "window": win, "weights": Wt, "knobs": knobs, "mass": (proxy, batch),
                "status": f"kept {kept} of {n_neg} batch negatives; softmax mass per row on proxies "
                          f"{proxy:.3f}, on batch pairs {batch:.3f}"}

    return widgets.Panel(controls, fig, draw)


def run_color(run: FaceRun) -> str:
    """Black for the margin softmax alone, green with UNPG (never the pair colours)."""
    from .. import plots

    return plots.LOSS_COLORS["arcface_unpg" if run.params["unpg"] else "arcface"]


def learning_curves(axes, runs, *, labels=None):
    """Three panels for a list of :class:`FaceRun`: training loss, TAR@1e-2 on the unseen identities,
    and the mismatch (99th percentile of batch minus proxy negatives on the probe batch)."""
    labels = labels or [r.name for r in runs]
    for r, label in zip(runs, labels):
        c = run_color(r)
        axes[0].plot(r.history["iter"], r.history["loss"], color=c, lw=1, label=label)
        axes[1].plot(r.evals["iter"], r.evals["tar@1e-2"], color=c, marker=".", label=label)
        axes[2].plot(r.evals["iter"], r.evals["p99_batch"] - r.evals["p99_proxy"], color=c, marker=".", label=label)
    axes[0].set(title="training loss", xlabel="iteration", ylabel="cross-entropy (nats)")
    axes[1].set(title="TAR at FAR = 1e-2, unseen identities", xlabel="iteration", ylabel="TAR")
    axes[2].set(title="mismatch: p99 batch − p99 proxy", xlabel="iteration", ylabel="cosine difference")
    axes[2].axhline(0, color="#999999", lw=0.8)
    axes[1].legend(loc="best")
    return axes


def training_panel(*, iters: int = 300, autorun: bool = True, unpg: bool = True, s: float = 30.0, m: float = 0.3,
                w: float = 1.5, kind: str = "arcface", seed: int = 0):
    """A Train button over :func:`train_faces`: ArcFace / CosFace with or without UNPG, ``s``, ``m``,
    ``w`` and the seed.  Draws :func:`learning_curves` against the plain margin softmax with the
    same knobs and seed, and the mismatch densities after training."""
    import ipywidgets as W

    from .. import widgets

    style = dict(continuous_update=False, style={"description_width": "initial"})
    controls = {
        "unpg": W.ToggleButtons(options=[("margin softmax", False), ("+ UNPG", True)], value=unpg, description="loss"),
        "kind": W.Dropdown(options=list(KINDS), value=kind, description="margin", layout=W.Layout(width="190px")),
        "s": W.FloatSlider(value=s, min=8.0, max=64.0, step=2.0, description="s", **style),
        "m": W.FloatSlider(value=m, min=0.0, max=0.5, step=0.05, description="m", **style),
        "w": W.FloatSlider(value=w, min=0.0, max=3.0, step=0.25, description="w", **style),
        "seed": W.BoundedIntText(value=seed, min=0, max=99, description="seed", layout=W.Layout(width="140px")),
    }
    probe = probe_batch()

    def run(v, progress):
        knobs = dict(s=v["s"], m=v["m"], kind=v["kind"], seed=v["seed"], iters=iters)
        base = train_faces(unpg=False, progress=False, **knobs)
        return base, (train_faces(unpg=True, w=v["w"], progress=progress, **knobs) if v["unpg"] else base)

    def draw(axes, result, v):
        base, r = result
        learning_curves(axes[0, :3], [base] if r is base else [base, r])
        mismatch_plot(axes[0, 3], *r.view(*probe), w=r.params["w"], title=f"probe batch after {r.name}")
        return {"status": f"{r!r}; {base.name} alone: TAR@1e-2 {base.tar(1e-2):.3f}"}

    return widgets.run_panel(controls, run, draw, ncols=4, width=3.9, height=3.4, autorun=autorun)
