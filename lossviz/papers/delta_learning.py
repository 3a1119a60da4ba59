r"""Preference tuning on pairs of weak answers: the delta learning hypothesis (Geng et al., 2025),
in a logistic miniature.

DPO (Rafailov et al., 2023) trains a policy :math:`\pi` on pairs (chosen :math:`y_c`, rejected
:math:`y_r`) against a frozen reference :math:`\pi_{ref}`:

.. math::
    h = \big(\log\pi(y_c|x) - \log\pi_{ref}(y_c|x)\big) - \big(\log\pi(y_r|x) - \log\pi_{ref}(y_r|x)\big),
    \qquad L_{DPO} = -\log\sigma(\beta h) = \mathrm{softplus}(-\beta h).

Its gradient is a *pair weight* times the difference of the two log-probability gradients,
:math:`\nabla L = -\beta\,\sigma(-\beta h)\,(\nabla\log\pi(y_c|x) - \nabla\log\pi(y_r|x))`: pairs the
policy already ranks right by a wide margin get little weight, pairs it ranks wrong get up to
:math:`\beta` (the General Pair Weighting view of notebook 01, for preference pairs).  The paper
finds that pairs of *weak* answers (a 3B model's answer chosen over a 1.5B model's) improve a
stronger 8B model, where fine-tuning on the chosen answers (SFT) makes it worse: what the model
learns from is the delta between the two answers.

* :func:`dpo_loss`, :func:`dpo_pair_weights`, :func:`sft_loss`: the losses on per-pair log-probs
  (``len_c`` / ``len_r`` give the official configuration's length-normalised ``dpo_norm``).
* The miniature (ours: a reconstruction of the paper's logistic-regression setting): Gaussian
  inputs, true labels ``sign(w*.x)``, two teachers ``sign(w_k.x)`` of controlled quality and error
  correlation (:func:`directions`, :func:`make_miniature`), a logistic student ``p_w(y|x) =
  sigmoid(y w.x)`` starting at ``w_ref = w_0``, and its exact test accuracy
  ``1 - angle(w, w*)/pi`` (:func:`exact_accuracy`).
* :func:`train_delta` (full-batch gradient descent, cached with :func:`lossviz.train.memo`),
  :func:`seed_runs` (the four runs of one seed), :func:`dpo_gradient_cosine`.
* Pictures and panels: :func:`plot_curves`, :func:`accuracy_dial`, :func:`weight_map`,
  :func:`geometry_panel` (pure maths) and :func:`training_panel` (a Train button).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .. import checks, plots
from ..train import Run, loop, memo

#: Colours of the runs (never the pair colours, which mean pull / push).
COLORS = {"sft": "#E69F00", "dpo": "#009E73", "swap": "#CC79A7", "dpo_anchor": "#5D3A9B"}
NAMES = {"sft": "SFT on chosen", "dpo": "DPO", "swap": "DPO, pairs swapped", "dpo_anchor": "DPO, strong anchor"}
#: The spec's main set-up: shared teacher error c = 1.0 (at c = 0.6 early-stopped SFT beats DPO).
GEOMETRY = dict(alpha_c=0.7, alpha_r=0.1, shared=1.0, own_c=0.3, own_r=0.3, rho_s=0.8)
#: Teachers whose errors are independent (rho_c = 0.6, rho_r = 0.3): w_k = rho_k w* + sqrt(1 - rho_k^2) e_k.
INDEPENDENT = dict(alpha_c=0.6, alpha_r=0.3, shared=0.0, own_c=math.sqrt(1 - 0.6 ** 2), own_r=math.sqrt(1 - 0.3 ** 2),
                   rho_s=0.8)


# ------------------------------------------------------------------------------------------------
# The losses
# ------------------------------------------------------------------------------------------------

def _logps(name: str, value, n: int | None = None) -> torch.Tensor:
    t = checks.as_float_tensor(value, f"{name} (one log-probability per pair)", 1)
    if n is not None and t.shape[0] != n:
        raise ValueError(f"{name} must have one entry per pair, shape ({n},); got {tuple(t.shape)}")
    if t.shape[0] == 0:
        raise ValueError(f"{name} is empty: the loss needs at least one pair")
    if checks.validation_enabled() and bool((t > 1e-6).any()):
        raise ValueError(f"{name} holds a value > 0, but a log-probability is <= 0: pass log-probs, not logits "
                         "or probabilities")
    return t


def _per_token(logp: torch.Tensor, lengths, name: str) -> torch.Tensor:
    if lengths is None:
        return logp
    n = torch.as_tensor(lengths, device=logp.device)
    if n.ndim != 1 or n.shape[0] != logp.shape[0]:
        raise ValueError(f"{name} must hold one length per pair, shape ({logp.shape[0]},); got {tuple(n.shape)}")
    if checks.validation_enabled() and bool((n <= 0).any()):
        raise ValueError(f"{name} must be > 0 (the number of tokens of each answer)")
    return logp / n.to(logp.dtype)


def dpo_margin(logp_c, logp_r, ref_logp_c, ref_logp_r, *, beta: float = 5.0, len_c=None, len_r=None) -> torch.Tensor:
    r"""The DPO logit of every pair, :math:`m = \beta h` with

    .. math::
        h = \big(\log\pi(y_c|x) - \log\pi_{ref}(y_c|x)\big) - \big(\log\pi(y_r|x) - \log\pi_{ref}(y_r|x)\big).

    Inputs are 1-D tensors of sequence log-probabilities, one per pair.  With ``len_c`` and
    ``len_r`` (tokens in each answer) every log-prob is divided by its answer's length first: the
    official configuration's ``dpo_norm`` (length-averaged log-probs)."""
    logp_c = _logps("logp_c", logp_c)
    n = logp_c.shape[0]
    logp_r, ref_c, ref_r = (_logps(k, v, n) for k, v in
                            (("logp_r", logp_r), ("ref_logp_c", ref_logp_c), ("ref_logp_r", ref_logp_r)))
    beta = checks.positive(beta, "beta (the DPO scale)")
    pc, rc = _per_token(logp_c, len_c, "len_c"), _per_token(ref_c, len_c, "len_c")
    pr, rr = _per_token(logp_r, len_r, "len_r"), _per_token(ref_r, len_r, "len_r")
    return beta * ((pc - rc) - (pr - rr))


def dpo_loss(logp_c, logp_r, ref_logp_c, ref_logp_r, *, beta: float = 5.0, len_c=None, len_r=None) -> torch.Tensor:
    r"""DPO, averaged over the pairs: :math:`L = \frac1n\sum_i -\log\sigma(m_i) = \frac1n\sum_i
    \mathrm{softplus}(-m_i)` with :math:`m_i` the :func:`dpo_margin`.  Computed as ``-logsigmoid(m)``:
    stable for any margin and exact (torch's ``softplus`` switches to the identity above 20, an
    error of up to ``e^-20`` per pair).  ``beta`` is the official configuration's 5 by default; the
    miniature uses 2 and 20."""
    m = dpo_margin(logp_c, logp_r, ref_logp_c, ref_logp_r, beta=beta, len_c=len_c, len_r=len_r)
    return -F.logsigmoid(m).mean()


def dpo_pair_weights(logp_c, logp_r, ref_logp_c, ref_logp_r, *, beta: float = 5.0, len_c=None,
                     len_r=None) -> torch.Tensor:
    r"""The weight of each pair in DPO's gradient (the General Pair Weighting view):

    .. math::
        \frac{\partial \ell_i}{\partial \log\pi(y_c|x_i)} = -\beta\,\sigma(-m_i), \qquad
        \frac{\partial \ell_i}{\partial \log\pi(y_r|x_i)} = +\beta\,\sigma(-m_i),

    so each pair pulls its chosen answer up and pushes its rejected answer down with the weight
    :math:`w_i = \beta\,\sigma(-m_i) \in (0, \beta)`: :math:`\beta/2` at the reference (m = 0), close to
    :math:`\beta` on pairs ranked wrong, close to 0 on pairs ranked right by a wide margin.  (Per
    token with ``len_c``, ``len_r``; the mean over n pairs adds ``1/n``.)"""
    m = dpo_margin(logp_c, logp_r, ref_logp_c, ref_logp_r, beta=beta, len_c=len_c, len_r=len_r)
    return beta * torch.sigmoid(-m.detach())


def sft_loss(logp_c, *, len_c=None) -> torch.Tensor:
    r"""Supervised fine-tuning on the chosen answers: :math:`L_{SFT} = -\frac1n\sum_i \log\pi(y_c|x_i)`
    (per token with ``len_c``).  Every pair has weight 1: nothing anchors the policy to the reference."""
    return -_per_token(_logps("logp_c", logp_c), len_c, "len_c").mean()


# ------------------------------------------------------------------------------------------------
# The logistic miniature
# ------------------------------------------------------------------------------------------------

#: Indices of the five directions of the miniature's orthonormal frame.
W_STAR, E_S, E_COMMON, E_C, E_R = range(5)


def directions(*, alpha_c: float = 0.7, alpha_r: float = 0.1, shared: float = 1.0, own_c: float = 0.3,
               own_r: float = 0.3, rho_s: float = 0.8, scale: float = 3.0) -> dict:
    """The miniature's vectors in its own orthonormal frame ``(w*, e_s, e_common, e_c, e_r)`` (5-D,
    float64): the truth ``w_star``, the student ``w0 = scale (rho_s w* + sqrt(1 - rho_s^2) e_s)`` and
    the teachers ``w_c = alpha_c w* + shared e_common + own_c e_c``, ``w_r = alpha_r w* + shared
    e_common + own_r e_r``.  ``shared`` is the weight of the error the two teachers share; ``own_*``
    the weight of each teacher's own error."""
    for name, v in (("alpha_c", alpha_c), ("alpha_r", alpha_r)):
        checks.finite(v, name)
    shared = checks.non_negative(shared, "shared (the teachers' shared error weight)")
    own_c, own_r = (checks.non_negative(v, n) for v, n in ((own_c, "own_c"), (own_r, "own_r")))
    rho_s = checks.fraction(rho_s, "rho_s (the student's cosine with w*)")
    scale = checks.positive(scale, "scale (the norm of the student)")
    eye = torch.eye(5, dtype=torch.float64)
    w_c = alpha_c * eye[W_STAR] + shared * eye[E_COMMON] + own_c * eye[E_C]
    w_r = alpha_r * eye[W_STAR] + shared * eye[E_COMMON] + own_r * eye[E_R]
    for name, w in (("chosen", w_c), ("rejected", w_r)):
        if float(w.norm()) < 1e-9:
            raise ValueError(f"the {name} teacher is the zero vector: give it some alpha or error weight")
    return dict(w_star=eye[W_STAR], w0=scale * (rho_s * eye[W_STAR] + math.sqrt(1 - rho_s ** 2) * eye[E_S]),
                w_c=w_c, w_r=w_r)


def exact_accuracy(w, w_star) -> torch.Tensor:
    r"""Test accuracy of ``sign(w.x)`` against ``sign(w*.x)`` for Gaussian ``x ~ N(0, I)``, exactly:
    :math:`1 - \angle(w, w^*)/\pi` (the two labels differ on the wedge between the two hyperplanes).
    ``w`` may be ``(d,)`` or a stack ``(..., d)`` (one accuracy per row)."""
    w, w_star = torch.as_tensor(w), torch.as_tensor(w_star).to(torch.as_tensor(w).dtype)
    cos = (w @ w_star) / (w.norm(dim=-1) * w_star.norm()).clamp(min=1e-300)
    return 1 - torch.arccos(cos.clamp(-1, 1)) / math.pi


def monte_carlo_accuracy(w, w_star, *, n: int = 100_000, seed: int = 0) -> float:
    """The same accuracy estimated on ``n`` fresh Gaussian points (the check of :func:`exact_accuracy`)."""
    w, w_star = torch.as_tensor(w, dtype=torch.float64), torch.as_tensor(w_star, dtype=torch.float64)
    x = torch.randn(n, len(w), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return float(((x @ w > 0) == (x @ w_star > 0)).double().mean())


@dataclass
class Miniature:
    """One seed's data: the vectors of :func:`directions` in d dimensions (through a random
    orthonormal ``frame``, d x 5), ``n`` Gaussian inputs ``x`` and the teachers' labels ``y_c``,
    ``y_r`` (+-1, float64)."""

    w_star: torch.Tensor
    w0: torch.Tensor
    w_c: torch.Tensor
    w_r: torch.Tensor
    frame: torch.Tensor
    x: torch.Tensor
    y_c: torch.Tensor
    y_r: torch.Tensor

    def accuracies(self) -> dict:
        """Exact accuracies of the student at the start and of the two teachers."""
        return {k: float(exact_accuracy(getattr(self, k), self.w_star)) for k in ("w0", "w_c", "w_r")}


def make_miniature(seed: int = 0, *, d: int = 100, n: int = 3000, **geometry) -> Miniature:
    """The data of one seed: a random orthonormal frame (QR of a Gaussian d x 5 matrix), the
    vectors of :func:`directions` (``geometry``) placed in it, and ``n`` fresh Gaussian inputs
    labelled by each teacher, ``y_k = sign(w_k.x)``.  The geometry fixes every exact accuracy; the
    seed changes only the frame and the training sample."""
    seed = checks.integer(seed, "seed", 0)
    d, n = checks.integer(d, "d", 5), checks.integer(n, "n", 1)
    vecs = directions(**geometry)
    g = torch.Generator().manual_seed(seed)
    frame, _ = torch.linalg.qr(torch.randn(d, 5, generator=g, dtype=torch.float64))
    v = {k: frame @ t for k, t in vecs.items()}
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    sign = lambda z: torch.where(z >= 0, 1.0, -1.0).to(torch.float64)  # noqa: E731
    return Miniature(v["w_star"], v["w0"], v["w_c"], v["w_r"], frame, x, sign(x @ v["w_c"]), sign(x @ v["w_r"]))


def logistic_logp(w, x, y) -> torch.Tensor:
    r"""Log-probability of labels ``y`` (+-1) under the logistic student, :math:`\log p_w(y|x) =
    \log\sigma(y\, w\cdot x)` (``logsigmoid``: stable for any score)."""
    return F.logsigmoid(y * (x @ w))


def dpo_gradient_cosine(mini: Miniature, *, beta: float = 2.0) -> float:
    r"""Cosine between the DPO descent direction at the reference, :math:`-\nabla_w L_{DPO}(w_{ref})`
    on the training sample, and :math:`\hat w_c - \hat w_r`, its expectation's direction:
    :math:`\mathbb E[\nabla L] = -\frac{\beta}{2}\,\mathbb E[\tfrac{y_c - y_r}{2}x]
    = -\frac{\beta}{4}\sqrt{2/\pi}\,(\hat w_c - \hat w_r)`."""
    w = mini.w0.clone().requires_grad_(True)
    ref_c, ref_r = logistic_logp(mini.w0, mini.x, mini.y_c), logistic_logp(mini.w0, mini.x, mini.y_r)
    dpo_loss(logistic_logp(w, mini.x, mini.y_c), logistic_logp(w, mini.x, mini.y_r), ref_c, ref_r, beta=beta).backward()
    delta = mini.w_c / mini.w_c.norm() - mini.w_r / mini.w_r.norm()
    return float(F.cosine_similarity(-w.grad, delta, dim=0))


# ------------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------------

@dataclass(repr=False)
class DeltaRun(Run):
    """One run of :func:`train_delta`: ``history`` holds iter, loss and acc (the exact test accuracy
    after each step); ``scores`` acc0 (at the start), final, best (the maximum over steps) and
    best_step; ``teachers`` the exact accuracies of the chosen and rejected teachers of the run."""

    teachers: dict | None = None
    w: torch.Tensor | None = None          # the student after training

    def __repr__(self) -> str:
        p, s = self.params, self.scores
        what = "SFT" if p["method"] == "sft" else f"DPO β={p['beta']:.3g}"
        return (f"DeltaRun({what}{', swapped' if p['swap'] else ''}: start {s['acc0']:.3f}, final {s['final']:.3f}, "
                f"best {s['best']:.3f} at step {int(s['best_step'])})")


def train_delta(method: str = "dpo", *, beta: float = 2.0, steps: int = 400, lr: float | None = None, seed: int = 0,
                swap: bool = False, d: int = 100, n: int = 3000, progress=True, cache: bool = True,
                **geometry) -> DeltaRun:
    """Full-batch gradient descent on the miniature of ``seed`` (:func:`make_miniature`), starting at
    ``w_ref = w_0``: ``method="sft"`` (:func:`sft_loss` on the chosen teacher's labels) or ``"dpo"``
    (:func:`dpo_loss` on the pairs (chosen, rejected) of every input).  ``swap`` exchanges the two
    teachers.  ``lr`` defaults to 0.25 for SFT and ``1.25 / beta`` for DPO, so that DPO's step (its
    gradient scales with beta) does not depend on beta.  Records the exact test accuracy after every
    step; cached by parameters."""
    checks.choice(method, "method", ("sft", "dpo"))
    beta = checks.positive(beta, "beta (the DPO scale)")
    steps = checks.integer(steps, "steps", 1)
    lr = checks.positive(lr if lr is not None else (0.25 if method == "sft" else 1.25 / beta), "lr")
    geometry = GEOMETRY | geometry
    directions(**geometry)                                     # check the geometry before training
    params = dict(method=method, beta=beta if method == "dpo" else 0.0, steps=steps, lr=lr,
                  seed=checks.integer(seed, "seed", 0), swap=bool(swap), d=d, n=n, **geometry)
    return memo("delta_learning", params, lambda: _train(params, progress), cache=cache)


def _train(p: dict, progress) -> DeltaRun:
    geometry = {k: p[k] for k in GEOMETRY}
    mini = make_miniature(p["seed"], d=p["d"], n=p["n"], **geometry)
    x, y_c, y_r = mini.x, mini.y_c, mini.y_r
    if p["swap"]:
        y_c, y_r = y_r, y_c
    ref_c, ref_r = logistic_logp(mini.w0, x, y_c), logistic_logp(mini.w0, x, y_r)
    w = mini.w0.clone().requires_grad_(True)

    def step(it: int) -> dict:
        z = x @ w                                       # one score per input serves both answers
        logp_c = F.logsigmoid(y_c * z)                  # logistic_logp(w, x, y_c)
        if p["method"] == "sft":
            loss = sft_loss(logp_c)
        else:
            loss = dpo_loss(logp_c, F.logsigmoid(y_r * z), ref_c, ref_r, beta=p["beta"])
        loss.backward()
        with torch.no_grad():
            w.sub_(p["lr"] * w.grad)
        w.grad = None
        return {"loss": loss.detach(), "acc": exact_accuracy(w.detach(), mini.w_star)}

    start = time.perf_counter()
    with checks.validation(False):
        history = loop(step, p["steps"], desc=NAMES["dpo" if p["method"] == "dpo" else "sft"], progress=progress,
                       every=20)
    acc = history["acc"]
    best = int(np.argmax(acc))
    acc0 = float(exact_accuracy(mini.w0, mini.w_star))
    teachers = {"chosen": float(exact_accuracy(mini.w_c, mini.w_star)),
                "rejected": float(exact_accuracy(mini.w_r, mini.w_star))}
    if p["swap"]:
        teachers = {"chosen": teachers["rejected"], "rejected": teachers["chosen"]}
    return DeltaRun(params=p, history=history, seconds=time.perf_counter() - start, teachers=teachers,
                    w=w.detach(), scores=dict(acc0=acc0, final=float(acc[-1]), best=float(acc[best]),
                                              best_step=float(history["iter"][best])))


#: The four runs of one seed in the claim: name -> keyword arguments of :func:`train_delta`.
RUNS = {"sft": dict(method="sft"), "dpo": dict(method="dpo", beta=2.0),
        "swap": dict(method="dpo", beta=2.0, swap=True), "dpo_anchor": dict(method="dpo", beta=20.0)}


def seed_runs(seed: int = 0, *, runs=tuple(RUNS), steps: int = 400, progress=False, **geometry) -> dict:
    """``{name: DeltaRun}`` for the runs of :data:`RUNS` on one seed (one training sample shared by all,
    so the runs are paired); runs already trained come from the cache."""
    for r in runs:
        checks.choice(r, "run", RUNS)
    return {r: train_delta(**RUNS[r], steps=steps, seed=seed, progress=progress, **geometry) for r in runs}


# ------------------------------------------------------------------------------------------------
# Pictures
# ------------------------------------------------------------------------------------------------

def plot_curves(ax, runs: dict, *, title: str = "exact test accuracy of the student") -> None:
    """Exact test accuracy after every step for ``{name: DeltaRun}`` (log steps: the SFT peak comes
    early), with the start and the two teachers of the first run as horizontal lines."""
    first = next(iter(runs.values()))
    for name, run in runs.items():
        ax.plot(run.history["iter"], run.history["acc"], color=COLORS.get(name, "k"), label=NAMES.get(name, name))
    ax.axhline(first.scores["acc0"], color="k", ls=":", lw=1.2, label="student at start")
    ax.axhline(first.teachers["chosen"], color=plots.POS_COLOR, ls="--", lw=1.2, label="chosen teacher")
    ax.axhline(first.teachers["rejected"], color=plots.NEG_COLOR, ls="--", lw=1.2, label="rejected teacher")
    ax.set_xscale("log")
    ax.set(xlabel="gradient step (log scale)", ylabel="exact test accuracy", title=title)
    ax.legend(loc="lower left", fontsize=8)


def first_order_paths(vecs: dict, t) -> dict:
    """Exact accuracy of the student moved a distance ``t`` in a straight line: along DPO's expected
    direction at the reference, ``w_0 + t d/|d|`` with ``d = w_c/|w_c| - w_r/|w_r|``, and along
    SFT's pull towards the chosen teacher, ``w_0 + t w_c/|w_c|``.  First order only: a real run bends."""
    t = torch.as_tensor(t, dtype=torch.float64)[:, None]
    u_c, u_r = vecs["w_c"] / vecs["w_c"].norm(), vecs["w_r"] / vecs["w_r"].norm()
    dvec = u_c - u_r
    d_hat = dvec / dvec.norm().clamp(min=1e-12)
    return {"dpo": exact_accuracy(vecs["w0"] + t * d_hat, vecs["w_star"]),
            "sft": exact_accuracy(vecs["w0"] + t * u_c, vecs["w_star"]), "d_hat": d_hat}


def _plane(vecs: dict):
    """An orthonormal basis (u1, u2) of the plane of the two teachers (u1 = w_c/|w_c|)."""
    u1 = vecs["w_c"] / vecs["w_c"].norm()
    r = vecs["w_r"] - (vecs["w_r"] @ u1) * u1
    u2 = r / r.norm() if float(r.norm()) > 1e-9 else torch.roll(u1, 1)
    return u1, u2


def pair_weight_grid(vecs: dict, *, beta: float, t: float, lim: float = 3.0, points: int = 121):
    """DPO's pair weight ``beta sigmoid(-m)`` over a grid of inputs ``x = a u1 + b u2`` in the plane of
    the two teachers, for the student moved to ``w = w_0 + t d/|d|`` (:func:`first_order_paths`), where
    ``m = beta y_c (w - w_0).x``.  NaN where the teachers agree: there the pair's margin is 0 for every
    ``w`` and its gradient is exactly zero.  Returns ``(grid (points,), weights (points x points))``."""
    u1, u2 = _plane(vecs)
    a = torch.linspace(-lim, lim, points, dtype=torch.float64)
    A, B = torch.meshgrid(a, a, indexing="xy")
    X = A[..., None] * u1 + B[..., None] * u2
    y_c, y_r = torch.sign(X @ vecs["w_c"]), torch.sign(X @ vecs["w_r"])
    d_hat = first_order_paths(vecs, [0.0])["d_hat"]
    m = beta * y_c * (t * (X @ d_hat))
    wgt = beta * torch.sigmoid(-m)
    return a, torch.where(y_c != y_r, wgt, torch.nan)


def _boundary(vecs: dict, key: str, lim: float):
    """End points of teacher ``key``'s decision line ``w.x = 0`` in the plane of :func:`_plane`."""
    u1, u2 = _plane(vecs)
    a, b = float(vecs[key] @ u1), float(vecs[key] @ u2)
    s = 2 * lim / max(math.hypot(a, b), 1e-12)
    return [-b * s, b * s], [a * s, -a * s]                       # the direction (-b, a), both ways


def weight_map(ax, vecs: dict, *, beta: float, t: float, lim: float = 3.0) -> dict:
    """:func:`pair_weight_grid` as an image, in units of beta (grey: the teachers agree, no signal),
    with the two teachers' decision lines (chosen blue, rejected vermillion, as on the dial).  Returns the artists :func:`set_weight_map` updates."""
    cmap = plots.mpl.colormaps["viridis"].with_extremes(bad="#dddddd")
    im = ax.imshow(np.zeros((2, 2)), origin="lower", extent=(-lim, lim, -lim, lim), cmap=cmap, vmin=0, vmax=1)
    ax.figure.colorbar(im, ax=ax, shrink=0.8, label="pair weight / β", ticks=[0, 0.5, 1])
    (line_c,) = ax.plot([0, 0], [0, 0], color=plots.POS_COLOR, lw=2)      # the teachers' colours of the dial
    (line_r,) = ax.plot([0, 0], [0, 0], color=plots.NEG_COLOR, lw=2)
    ax.set(xlim=(-lim, lim), ylim=(-lim, lim), xticks=[-2, 0, 2], yticks=[-2, 0, 2], xlabel="x along ŵ_c",
           ylabel="x across (teachers' plane)")
    ax.grid(False)
    artists = {"im": im, "w_c": line_c, "w_r": line_r, "lim": lim}
    set_weight_map(artists, vecs, beta=beta, t=t)
    return artists


def set_weight_map(artists: dict, vecs: dict, *, beta: float, t: float) -> torch.Tensor:
    """Redraw :func:`weight_map` in place; returns the weights (NaN where the teachers agree)."""
    _, wg = pair_weight_grid(vecs, beta=beta, t=t, lim=artists["lim"])
    artists["im"].set_data((wg / beta).numpy())
    for key in ("w_c", "w_r"):
        artists[key].set_data(*_boundary(vecs, key, artists["lim"]))
    artists["im"].axes.set_title(f"pair weights, β={beta:.3g}, t={t:.1f}")
    return wg


#: The arrows of :func:`accuracy_dial`: key -> (colour, line style, label).
DIAL = {"w_star": ("#000000", "-", "truth w*"), "w0": ("#000000", ":", "student at start"),
        "w_c": (plots.POS_COLOR, "-", "chosen teacher"), "w_r": (plots.NEG_COLOR, "-", "rejected teacher"),
        "d": (COLORS["dpo"], "--", "DPO direction ŵ_c − ŵ_r"), "moved": (COLORS["dpo"], "", "student moved t")}


def accuracy_dial(ax, vecs: dict, *, keys=tuple(DIAL), d_hat=None, moved=None) -> dict:
    """Every vector as a unit arrow at its angle from w* (0 to pi): the angle *is* the test accuracy,
    ``1 - angle/pi`` (ticks on the arc).  Returns the artists (one per key of :data:`DIAL` in
    ``keys``) that :func:`set_dial` points again."""
    th = np.linspace(0, np.pi, 200)
    ax.plot(np.cos(th), np.sin(th), color=plots.MUTED, lw=1)
    for acc in (0.5, 0.6, 0.7, 0.8, 0.9):
        a = np.pi * (1 - acc)
        ax.plot([0.96 * np.cos(a), 1.04 * np.cos(a)], [0.96 * np.sin(a), 1.04 * np.sin(a)], color=plots.MUTED, lw=1)
        ax.text(1.15 * np.cos(a), 1.15 * np.sin(a), f"{acc:.1f}", ha="center", va="center", fontsize=8,
                color=plots.MUTED)
    arrows = {}
    for key in keys:
        color, ls, label = DIAL[key]
        if key == "moved":
            (arrows[key],) = ax.plot([1], [0], "o", color=color, ms=8, label=label)
        else:
            (arrows[key],) = ax.plot([0, 1], [0, 0], color=color, ls=ls, lw=3 if key == "w_star" else 2, label=label)
    ax.set(xlim=(-1.25, 1.25), ylim=(-0.95, 1.25), aspect="equal", title="angle from w* = test accuracy")
    ax.set_axis_off()
    ax.legend(loc="lower center", fontsize=7, ncol=2, frameon=False)
    set_dial(arrows, vecs, d_hat=d_hat, moved=moved)
    return arrows


def _angle(v, w_star) -> float:
    return math.pi * (1 - float(exact_accuracy(v, w_star)))


def set_dial(arrows: dict, vecs: dict, *, d_hat=None, moved=None) -> None:
    """Point the arrows of :func:`accuracy_dial` at the vectors' angles from w*."""
    ws = vecs["w_star"]
    items = {k: vecs[k] for k in ("w_star", "w0", "w_c", "w_r") if k in arrows}
    if d_hat is not None and "d" in arrows:
        items["d"] = d_hat
    for key, v in items.items():
        a = _angle(v, ws)
        arrows[key].set_data([0, math.cos(a)], [0, math.sin(a)])
    if moved is not None and "moved" in arrows:
        a = _angle(moved, ws)
        arrows["moved"].set_data([math.cos(a)], [math.sin(a)])


# ------------------------------------------------------------------------------------------------
# Panels
# ------------------------------------------------------------------------------------------------

def _geometry_controls(d: dict) -> dict:
    """The geometry sliders; own err starts at 0.05, so that no teacher can be the zero vector."""
    import ipywidgets as W

    style = dict(continuous_update=False, style={"description_width": "initial"}, layout=W.Layout(width="230px"))
    return {
        "beta": W.FloatLogSlider(value=d["beta"], base=10, min=np.log10(0.5), max=np.log10(50), step=0.05,
                                 description="β", readout_format=".3g", **style),
        "alpha_c": W.FloatSlider(value=d["alpha_c"], min=0.0, max=1.5, step=0.05, description="α chosen",
                                 readout_format=".2f", **style),
        "gap": W.FloatSlider(value=d["gap"], min=-1.0, max=1.5, step=0.05, description="gap α_c−α_r",
                             readout_format=".2f", **style),
        "shared": W.FloatSlider(value=d["shared"], min=0.0, max=1.5, step=0.05, description="shared err c",
                                readout_format=".2f", **style),
        "own": W.FloatSlider(value=d["own"], min=0.05, max=1.0, step=0.05, description="own err",
                             readout_format=".2f", **style),
    }


def _vecs(v: dict) -> dict:
    return directions(alpha_c=v["alpha_c"], alpha_r=v["alpha_c"] - v["gap"], shared=v["shared"], own_c=v["own"],
                      own_r=v["own"], rho_s=GEOMETRY["rho_s"])


def geometry_panel(*, beta: float = 2.0, alpha_c: float = 0.7, gap: float = 0.6, shared: float = 1.0,
                   own: float = 0.3, t: float = 1.0):
    """Pure maths on the miniature's geometry (no data, no training).  Knobs: beta, the chosen
    teacher's alpha, the gap ``alpha_c - alpha_r``, the shared error weight c, each teacher's own
    error weight, and ``t``, how far the student has moved along DPO's first direction.

    Left: :func:`accuracy_dial`.  Middle: accuracy along the straight first-order paths of DPO and
    SFT (:func:`first_order_paths`), the teachers as horizontal lines, ``t`` as a vertical line.
    Right: DPO's pair weights in the plane of the two teachers at ``w_0 + t d/|d|``
    (:func:`pair_weight_grid`; grey where the teachers agree)."""
    import ipywidgets as W

    from .. import widgets

    controls = _geometry_controls(dict(beta=beta, alpha_c=alpha_c, gap=gap, shared=shared, own=own))
    controls["t"] = W.FloatSlider(value=t, min=0.0, max=6.0, step=0.1, description="moved t", readout_format=".1f",
                                  continuous_update=False, style={"description_width": "initial"},
                                  layout=W.Layout(width="230px"))
    fig, axes = plots.new_figure(3, width=3.3, height=3.4)
    arrows = accuracy_dial(axes[0, 0], directions(**GEOMETRY))
    ts = torch.linspace(0, 6, 121, dtype=torch.float64)
    ax = axes[0, 1]
    (l_dpo,) = ax.plot(ts, ts * 0, color=COLORS["dpo"], label="DPO direction")
    (l_sft,) = ax.plot(ts, ts * 0, color=COLORS["sft"], label="towards chosen (SFT)")
    h_c = ax.axhline(0.5, color=plots.POS_COLOR, ls="--", lw=1.2)          # the dial's colours and styles
    h_r = ax.axhline(0.5, color=plots.NEG_COLOR, ls="--", lw=1.2)
    h_0 = ax.axhline(0.5, color="k", ls=":", lw=1.2)
    v_t = ax.axvline(t, color=plots.MUTED, lw=1)
    ax.set(xlabel="distance moved t (|w_0| = 3)", ylabel="exact test accuracy", ylim=(0.3, 1.0),
           yticks=[0.4, 0.6, 0.8, 1.0], title="first-order paths")
    ax.legend(loc="lower left", fontsize=7, title="dashed: teachers, dotted: start", title_fontsize=7)
    wmap = weight_map(axes[0, 2], directions(**GEOMETRY), beta=beta, t=t)

    def draw(v):
        vecs = _vecs(v)
        paths = first_order_paths(vecs, ts)
        acc = {k: float(exact_accuracy(vecs[k], vecs["w_star"])) for k in ("w0", "w_c", "w_r")}
        moved = vecs["w0"] + v["t"] * paths["d_hat"]
        set_dial(arrows, vecs, d_hat=paths["d_hat"], moved=moved)
        l_dpo.set_ydata(paths["dpo"].numpy())
        l_sft.set_ydata(paths["sft"].numpy())
        for h, key in ((h_c, "w_c"), (h_r, "w_r"), (h_0, "w0")):
            h.set_ydata([acc[key], acc[key]])
        v_t.set_xdata([v["t"], v["t"]])
        wg = set_weight_map(wmap, vecs, beta=v["beta"], t=v["t"])
        rho = {k: float(F.cosine_similarity(vecs[k], vecs["w_star"], dim=0)) for k in ("w0", "w_c", "w_r")}
        gain = (rho["w_c"] - rho["w_r"]) * (1 - rho["w0"] ** 2)
        acc_t = float(exact_accuracy(moved, vecs["w_star"]))
        status = (f"teachers {acc['w_c']:.3f} (chosen) and {acc['w_r']:.3f} (rejected), student {acc['w0']:.3f}; "
                  f"first-order gain (ρ_c − ρ_r)(1 − ρ_s²) = {gain:+.3f}; moved t = {v['t']:.1f} along the DPO "
                  f"direction: {acc_t:.3f}")
        return {"acc": acc, "gain": gain, "acc_t": acc_t, "paths": paths, "weights": wg, "status": status}

    return widgets.Panel(controls, fig, draw)


def training_panel(*, autorun: bool = True, steps: int = 400, **defaults):
    """A Train button over :func:`train_delta`: the geometry knobs of :func:`geometry_panel` (beta,
    alpha_c, gap, shared error c, own error), steps and seed.  Trains SFT, DPO and DPO with swapped
    pairs on the same sample (cached) and draws their accuracy curves (:func:`plot_curves`) and the
    final student on the accuracy dial."""
    import ipywidgets as W

    from .. import widgets

    d = dict(beta=2.0, alpha_c=GEOMETRY["alpha_c"], gap=GEOMETRY["alpha_c"] - GEOMETRY["alpha_r"],
             shared=GEOMETRY["shared"], own=GEOMETRY["own_c"], steps=steps, seed=0) | defaults
    controls = _geometry_controls(d)
    controls["steps"] = W.IntSlider(value=d["steps"], min=50, max=1000, step=50, description="steps",
                                    continuous_update=False, layout=W.Layout(width="230px"))
    controls["seed"] = W.BoundedIntText(value=d["seed"], min=0, max=99, description="seed", layout=W.Layout(width="140px"))

    def geometry(v):
        return dict(alpha_c=v["alpha_c"], alpha_r=round(v["alpha_c"] - v["gap"], 10), shared=v["shared"],
                    own_c=v["own"], own_r=v["own"], rho_s=GEOMETRY["rho_s"])

    def run(v, progress):
        g = geometry(v)
        out = {}
        for i, (name, kw) in enumerate((("sft", dict(method="sft")), ("dpo", dict(method="dpo", beta=v["beta"])),
                                        ("swap", dict(method="dpo", beta=v["beta"], swap=True)))):
            report = (lambda it, total, i=i: progress(i * total + it, 3 * total))
            out[name] = train_delta(**kw, steps=v["steps"], seed=v["seed"], progress=report, **g)
        return out

    def draw(axes, runs, v):
        plot_curves(axes[0, 0], runs, title=f"β = {v['beta']:.3g}, c = {v['shared']:.2f}, gap {v['gap']:.2f}")
        vecs = _vecs(v)
        ax = axes[0, 1]
        accuracy_dial(ax, vecs, keys=("w_star", "w0", "w_c", "w_r"))
        for name in ("sft", "dpo"):                # on top: SFT's final student lies on the chosen teacher
            ang = math.pi * (1 - runs[name].scores["final"])
            ax.plot([0, math.cos(ang)], [0, math.sin(ang)], color=COLORS[name], lw=4, alpha=0.75,
                    label=f"{NAMES[name]}, final")
        ax.legend(loc="lower center", fontsize=7, ncol=2, frameon=False)
        s = {k: r.scores for k, r in runs.items()}
        return {"runs": runs, "status": (f"start {s['dpo']['acc0']:.3f} | SFT final {s['sft']['final']:.3f} (best "
                                         f"{s['sft']['best']:.3f} at step {int(s['sft']['best_step'])}) | DPO final "
                                         f"{s['dpo']['final']:.3f} | swapped {s['swap']['final']:.3f}")}

    return widgets.run_panel(controls, run, draw, ncols=2, width=4.8, height=3.6, autorun=autorun)
