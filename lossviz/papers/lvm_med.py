r"""Graph matching as a self-supervised loss (LVM-Med, Nguyen et al., NeurIPS 2023), in miniature.

**Every formula of this module is (reconstructed - verify against the paper).**  The paper's
pre-training code is not public and its method section is paraphrased here from the abstract, the
Figure 2 caption and the black-box gradient method it builds on (Vlastelica et al., ICLR 2020).

The pipeline, for a batch of N images seen through two augmentations:

1. **Embeddings.** ``z_s`` and ``z_t`` (N x d, unit rows): view 1 and view 2 of image n are rows n.
2. **Graphs.** Each view is a graph over the batch: node i links to its k nearest neighbours, with
   edge weights ``A_ii' = softmax_{i' in kNN(i)}(<z_i, z_i'> / tau_graph)``  (:func:`neighbourhood`).
3. **Affinities.** First order (nodes): ``C_v = z_s z_t^T``, ``c^v_ij = cos(z^s_i, z^t_j)``.
   Second order (edges): ``c^e_(ii'),(jj') = A^s_ii' A^t_jj'``  (:func:`edge_affinity`).
4. **Solver.** The Lawler QAP ``max_v sum_ij c^v_ij v_ij + beta sum c^e_(ii'),(jj') v_ij v_i'j'`` over
   permutation matrices v is NP-hard.  We keep a linear assignment: the **second-order proxy**
   ``C = C_v + beta A_s C_v A_t^T`` (:func:`affinity`) replaces one ``v`` of the quadratic term by
   the soft matching ``C_v``, and the Hungarian algorithm solves ``v(C) = argmax_v <C, v>``
   exactly (:func:`solve_matching`).  It is a proxy for the QAP, never the QAP itself.
5. **Loss.** The Hamming distance of the solver's matching to the correct one (:func:`gm_loss`):
   ``L(v) = sum_ij v_ij (1 - P_ij) + (1 - v_ij) P_ij``, with ``P`` the target permutation (the
   identity: view 1 of image n goes with view 2 of image n).  ``dL/dv = 1 - 2P``.  In training the
   solver runs on costs with a **margin** ``m`` taken off the correct pairs, ``C - m P`` (the cost
   margin of BB-GM, Rolínek et al., ECCV 2020): a correct pair counts as matched only when it wins
   by at least ``m``, so the loss keeps a gradient on images that are matched right by a hair.
6. **Backward.** The solver is piecewise constant, so its true gradient is 0 almost everywhere.
   The black-box gradient of Vlastelica et al. 2020, written for a maximising solver
   (:class:`BlackBoxMatching`)::

       dL/dC := ( v(C') - v(C' - lam * dL/dv) ) / lam      (= ( v(C') - v(C' + 2 lam P) ) / lam here),
       C' = C - m P

   is the exact gradient of a piecewise-linear interpolation ``f_lam`` of the loss
   (:func:`interpolated_loss`).  λ is the step of that interpolation.  On cosine affinities (range
   at most 2 (1 + beta)) any ``lam`` above half the range of ``C'`` makes the perturbed solution the
   target, and the gradient is the perceptron update ``(v(C') - P) / lam``; BB-GM's ``lam = 80``
   (our default) is deep in that regime, where λ only scales the gradient.

The baseline is SimCLR's NT-Xent (:func:`nt_xent_views`, which reuses :func:`lossviz.nt_xent_loss`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import nn

from .. import checks, plots
from ..contrastive import nt_xent_loss
from ..metrics import knn_accuracy
from ..models import pca_embedding
from ..train import Run, Trainer, memo

#: Colours of the three losses of the notebook (the pair colours mean pull / push, never a loss).
COLORS = {k: plots.LOSS_COLORS[k] for k in ("infonce", "gm_1st", "gm_2nd")}
#: Display names.
NAMES = {"infonce": "InfoNCE (SimCLR)", "gm_1st": "GM-1st", "gm_2nd": "GM-2nd proxy"}
LOSSES = tuple(NAMES)


# --------------------------------------------------------------------------------------------
# Graphs and affinities
# --------------------------------------------------------------------------------------------

def _views(z_s, z_t) -> tuple[torch.Tensor, torch.Tensor]:
    z_s = checks.as_float_tensor(z_s, "z_s (view-1 embeddings, N x d)", 2)
    z_t = checks.as_float_tensor(z_t, "z_t (view-2 embeddings, N x d)", 2)
    if z_s.shape != z_t.shape:
        raise ValueError(f"z_s and z_t must have the same shape (row n of each is one image); "
                         f"got {tuple(z_s.shape)} and {tuple(z_t.shape)}")
    if z_s.shape[0] < 2:
        raise ValueError("a batch needs at least 2 images to match")
    return z_s, z_t


def _k(k, n: int) -> int:
    if k is None:
        return n - 1
    return checks.integer(k, f"k (neighbours per node; None for all {n - 1} others)", 1, n - 1)


def node_affinity(z_s, z_t) -> torch.Tensor:
    r"""First-order (vertex) affinity ``c^v_ij = cos(z^s_i, z^t_j)``: the N x N matrix ``C_v``."""
    z_s, z_t = _views(z_s, z_t)
    return F.normalize(z_s, dim=1) @ F.normalize(z_t, dim=1).T


def neighbourhood(z, *, k: int | None = 5, tau_graph: float = 0.1) -> torch.Tensor:
    r"""The k-NN graph of one view, as a row-stochastic N x N matrix ``A``.

    .. math::  A_{ii'} = \frac{e^{\cos(z_i, z_{i'})/\tau_g}}{\sum_{i'' \in kNN(i)} e^{\cos(z_i, z_{i''})/\tau_g}}
               \quad (i' \in kNN(i)),\qquad 0 \text{ otherwise}

    (reconstructed - verify against the paper).  ``k=None`` links every other node.  ``A z`` is one
    round of message passing: each node becomes the weighted mean of its neighbours.
    """
    z = checks.as_float_tensor(z, "z (embeddings, N x d)", 2)
    n = z.shape[0]
    if n < 2:
        raise ValueError("a graph needs at least 2 nodes")
    k = _k(k, n)
    tau_graph = checks.positive(tau_graph, "tau_graph (the neighbourhood temperature)")
    f = F.normalize(z, dim=1)
    logits = (f @ f.T) / tau_graph
    eye = torch.eye(n, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(eye, -math.inf)
    if k < n - 1:
        keep = torch.zeros_like(eye).scatter_(1, logits.topk(k, dim=1).indices, True)
        logits = logits.masked_fill(~keep, -math.inf)
    return torch.softmax(logits, dim=1)


def edge_affinity(A_s, A_t) -> torch.Tensor:
    r"""Second-order (edge) affinity ``K[i, i', j, j'] = c^e_(ii'),(jj') = A^s_ii' A^t_jj'``: large when
    edge (i, i') of view 1 and edge (j, j') of view 2 are both strong.  An N^4 tensor: for small N
    (pictures, tests) only; :func:`affinity` never forms it.  (reconstructed - verify against the paper)"""
    return torch.einsum("ab,cd->abcd", A_s, A_t)


def qap_objective(v, C_v, A_s, A_t, *, beta: float = 0.5) -> torch.Tensor:
    r"""The Lawler QAP score of a matching ``v`` with edge affinity :func:`edge_affinity`:

    .. math::  J(v) = \sum_{ij} c^v_{ij} v_{ij} + \beta \sum_{ii'jj'} A^s_{ii'} A^t_{jj'} v_{ij} v_{i'j'}
               = \langle C_v, v\rangle + \beta \langle A_s v A_t^\top, v\rangle

    (reconstructed - verify against the paper).  The proxy :func:`affinity` scores
    ``<C_v, v> + beta <A_s C_v A_t^T, v>``: the same sum with one ``v`` replaced by ``C_v``."""
    return (C_v * v).sum() + beta * ((A_s @ v @ A_t.T) * v).sum()


def affinity(z_s, z_t, *, beta: float = 0.5, k: int | None = 5, tau_graph: float = 0.1) -> torch.Tensor:
    r"""The affinity matrix the solver maximises: first order plus the second-order proxy.

    .. math::  C = C_v + \beta\, A_s C_v A_t^\top = Z_s Z_t^\top + \beta\,(A_s Z_s)(A_t Z_t)^\top

    (reconstructed - verify against the paper).  Read it two ways: ``(A_s C_v A_t^T)_ij`` sums the
    edge affinities ``c^e_(ii'),(jj')`` weighted by how well the neighbours ``i'`` and ``j'`` match
    (``c^v_i'j'``); or it is the similarity of the message-passed features ``A z`` -- "are the
    neighbourhoods of i and j alike?".  ``beta = 0`` is first-order matching (no graph).
    Still a linear assignment problem: a proxy for the QAP of :func:`qap_objective`.
    """
    C_v = node_affinity(z_s, z_t)
    beta = checks.non_negative(beta, "beta (the weight of the second-order term)")
    if beta == 0:
        return C_v
    A_s = neighbourhood(z_s, k=k, tau_graph=tau_graph)
    A_t = neighbourhood(z_t, k=k, tau_graph=tau_graph)
    return C_v + beta * (A_s @ C_v @ A_t.T)


# --------------------------------------------------------------------------------------------
# The solver and its black-box gradient
# --------------------------------------------------------------------------------------------

def _hungarian(C: torch.Tensor) -> torch.Tensor:
    """The permutation matrix maximising <C, v> (scipy's Hungarian / LAPJV; no gradient).
    Ties are broken deterministically by scipy (same input, same answer)."""
    rows, cols = linear_sum_assignment(C.detach().cpu().double().numpy(), maximize=True)
    v = torch.zeros(C.shape, dtype=C.dtype, device=C.device)
    v[torch.as_tensor(rows, device=C.device), torch.as_tensor(cols, device=C.device)] = 1
    return v


def _square(C, name: str = "C (the N x N affinity matrix)") -> torch.Tensor:
    C = checks.as_float_tensor(C, name, 2)
    if C.shape[0] != C.shape[1] or C.shape[0] < 1:
        raise ValueError(f"{name} must be square, one row per view-1 image and one column per view-2 "
                         f"image; got {tuple(C.shape)}")
    return C


def solve_matching(C) -> torch.Tensor:
    r"""``v(C) = argmax_v <C, v>`` over N x N permutation matrices (the Hungarian algorithm,
    ``scipy.optimize.linear_sum_assignment(maximize=True)``), as a 0/1 tensor like ``C``.  No gradient:
    use :func:`match` for the differentiable version."""
    return _hungarian(_square(C))


def _gumbel(C: torch.Tensor, generator) -> torch.Tensor:
    u = torch.rand(C.shape, generator=generator, dtype=torch.float64).clamp(1e-12, 1 - 1e-12)
    return (-torch.log(-torch.log(u))).to(dtype=C.dtype, device=C.device)


class BlackBoxMatching(torch.autograd.Function):
    r"""The Hungarian solver as an autograd function with the black-box gradient of Vlastelica et
    al. (ICLR 2020), written for a *maximising* solver:

    .. math::  \frac{\partial L}{\partial C} := \frac{1}{\lambda}\Big(v(C) - v\big(C - \lambda \tfrac{\partial L}{\partial v}\big)\Big)

    ``lam`` (λ > 0) sets how far the costs are pushed towards a better solution.  With ``noise > 0``
    both solves see the same Gumbel perturbation ``eps`` (perturb-and-MAP, the I-MLE estimator of
    Niepert et al. 2021): forward ``v(C + eps)``, backward ``(v(C + eps) - v(C + eps - lam dL/dv)) / lam``
    (I-MLE drops the ``1/lam``; we keep it so that ``noise = 0`` is exactly the black-box gradient).
    """

    @staticmethod
    def forward(ctx, C, lam, noise, generator):
        C0 = C.detach()
        if noise > 0:
            C0 = C0 + noise * _gumbel(C0, generator)
        v = _hungarian(C0)
        ctx.C0, ctx.v, ctx.lam = C0, v, lam
        return v

    @staticmethod
    def backward(ctx, grad_v):
        v_lam = _hungarian(ctx.C0 - ctx.lam * grad_v)
        return (ctx.v - v_lam) / ctx.lam, None, None, None


def match(C, *, lam: float = 80.0, noise: float = 0.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """The solver's matching ``v(C)`` (a permutation matrix), differentiable by the black-box
    gradient of :class:`BlackBoxMatching`.  ``lam`` is the interpolation parameter λ (BB-GM uses 80;
    on cosine affinities every λ above about 1 gives the same perceptron-like gradient, scaled by
    1/λ); ``noise`` the scale of I-MLE's Gumbel perturbation (0: none)."""
    C = _square(C)
    lam = checks.positive(lam, "lam (the interpolation parameter λ)")
    noise = checks.non_negative(noise, "noise (the Gumbel perturbation scale)")
    return BlackBoxMatching.apply(C, lam, noise, generator)


def _target(labels, n: int, device) -> torch.Tensor:
    """The target permutation matrix P: ``P[i, labels[i]] = 1`` (identity when labels is None)."""
    if labels is None:
        return torch.eye(n, device=device)
    labels = checks.check_labels(labels, n, device)
    if not torch.equal(torch.sort(labels).values, torch.arange(n, device=device)):
        raise ValueError("labels must be a permutation of 0..N-1: labels[i] is the view-2 column that "
                         "view-1 row i should be matched to (torch.arange(N) for two views of one batch)")
    return F.one_hot(labels, n).float()


def hamming_loss(v, labels=None) -> torch.Tensor:
    r"""``L(v) = sum_ij v_ij (1 - P_ij) + (1 - v_ij) P_ij``: the number of entries where the matching
    ``v`` and the target permutation ``P`` differ, i.e. twice the number of wrongly matched rows.
    ``dL/dv = 1 - 2P``.  (reconstructed - verify against the paper)"""
    P = _target(labels, v.shape[0], v.device).to(v.dtype)
    return (v * (1 - P) + (1 - v) * P).sum()


def _margin(margin) -> float:
    return checks.non_negative(margin, "margin (the cost margin m taken off the correct pairs)")


def gm_loss(C, labels=None, *, lam: float = 80.0, margin: float = 0.2, noise: float = 0.0,
            generator=None) -> torch.Tensor:
    r"""The graph-matching loss: the Hamming distance to the target of the solver's matching on
    costs with a margin ``m`` taken off the correct pairs,

    .. math::  L(C) = \mathrm{hamming}\big(\hat v(C - mP),\ P\big),\qquad
               \frac{\partial L}{\partial C} := \frac{1}{\lambda}\Big(\hat v(C - mP) - \hat v(C - mP + 2\lambda P)\Big)

    (the constant part of ``-lam dL/dv`` drops out of the assignment).  The margin is BB-GM's cost
    margin (Rolínek et al., ECCV 2020): a correct pair counts only when it beats every rival by ``m``,
    so images matched right by less than ``m`` still get a gradient.  ``margin=0`` is the bare
    Hamming loss of ``v(C)``.  (reconstructed - verify against the paper)

    A function ``loss(C, labels, **knobs)`` like the pair losses of :mod:`lossviz.pairs`, so
    :func:`lossviz.pair_weights` reads its weights: ``labels[i]`` is the column row ``i`` should be
    matched to (default: the identity).  The weights take the values ``{-1/lam, 0, +1/lam}``, every row
    and column sums to 0, and they are all exactly 0 once the solver's matching of ``C - mP`` is the
    target (every correct pair wins by at least ``m``).
    """
    C = _square(C)
    P = _target(labels, C.shape[0], C.device).to(C.dtype)  # a bad target fails before the solver runs
    m = _margin(margin)
    return hamming_loss(match(C - m * P, lam=lam, noise=noise, generator=generator), labels)


def interpolated_loss(C, labels=None, *, lam: float = 80.0, margin: float = 0.2) -> torch.Tensor:
    r"""Vlastelica et al.'s piecewise-linear interpolation ``f_lam`` of the piecewise-constant loss,
    the function whose exact gradient the black-box backward returns (maximising form), on the
    margin-shifted costs ``C' = C - m P``:

    .. math::  f_\lambda(C) = L(v_\lambda) + \tfrac{1}{\lambda}\langle C',\, v(C') - v_\lambda\rangle,
               \qquad v_\lambda = v\big(C' - \lambda\,\partial L/\partial v\big)

    For the Hamming loss (linear in v) this is a finite difference of the optimal value
    ``M(C) = max_v <C, v>``: ``f_lam(C) = N + (M(C') - M(C' - lam (1 - 2P))) / lam``.  It lies between
    ``L(v_lam)`` and ``L(v(C'))`` and tends to ``L(v(C'))`` as ``lam -> 0``.  No gradient (a float64 scalar).
    """
    C = _square(C).detach().double()
    lam = checks.positive(lam, "lam (the interpolation parameter λ)")
    P = _target(labels, C.shape[0], C.device).double()
    C = C - _margin(margin) * P
    v, v_lam = _hungarian(C), _hungarian(C + 2 * lam * P)
    return hamming_loss(v_lam, labels) + (C * (v - v_lam)).sum() / lam


def nt_xent_views(C, S_s, S_t, *, tau: float = 0.2) -> torch.Tensor:
    r"""SimCLR's NT-Xent on two views, from the blocks of the 2N x 2N similarity matrix:
    ``S = [[S_s, C], [C^T, S_t]]`` with labels ``(0..N-1, 0..N-1)``, passed to
    :func:`lossviz.nt_xent_loss`.  Each view's positive is the other view of its image; the other
    2N - 2 samples, of both views, are its negatives.  Differentiable in ``C`` (and in ``S_s``, ``S_t``)."""
    C = _square(C)
    n = C.shape[0]
    for name, M in (("S_s", S_s), ("S_t", S_t)):
        if M.shape != C.shape:
            raise ValueError(f"{name} (within-view similarities) must be N x N like C; got {tuple(M.shape)}")
    S = torch.cat([torch.cat([S_s, C], 1), torch.cat([C.T, S_t], 1)], 0)
    return nt_xent_loss(S, torch.arange(n, device=C.device).repeat(2), tau=tau)


def matching_accuracy(C) -> float:
    """The fraction of rows the solver matches to their own column (``v(C)_ii = 1``)."""
    return float(torch.diagonal(solve_matching(C)).mean())


# --------------------------------------------------------------------------------------------
# Data, model, evaluation
# --------------------------------------------------------------------------------------------

#: The two-view augmentation of MNIST-1D (:func:`lossviz.augment.two_views`), its strengths spelled
#: out: circular shift up to 4 samples, amplitude x [0.8, 1.2], a random linear trend, noise 0.1.
AUGMENT = dict(shift=4, scale=0.4, shear=0.75, noise=0.1)


def signal_views(x: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Two random views of MNIST-1D signals (N x 40) with the strengths :data:`AUGMENT`."""
    from ..augment import two_views

    return two_views(x, "mnist1d", generator, **AUGMENT)


def ssl_model(in_dim: int = 40, hidden: int = 256, rep_dim: int = 64, out_dim: int = 32) -> tuple[nn.Module, nn.Module]:
    """``(encoder, projector)``: MLP ``in_dim -> hidden -> rep_dim`` and ReLU + Linear ``rep_dim -> out_dim``,
    L2-normalised.  The losses see the projector's output; the evaluation the encoder's."""
    from ..models import L2Normalize, mlp

    encoder = nn.Sequential(*list(mlp(in_dim, rep_dim, hidden))[:-1])  # mlp without its L2Normalize
    return encoder, nn.Sequential(nn.ReLU(), nn.Linear(rep_dim, out_dim), L2Normalize())


@lru_cache(maxsize=4)
def _eval_views(batches: int = 10, n: int = 64, seed: int = 1234):
    """Fixed held-out view pairs: ``batches`` batches of ``n`` test signals, two views each."""
    from ..data import mnist1d

    split = mnist1d("seen")
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(split.x_test), generator=g)[:batches * n].reshape(batches, n)
    return [signal_views(split.x_test[i], g) for i in idx]


def view_batch(n: int = 16, *, seed: int = 0, run: "GraphMatchingRun | None" = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Two views of ``n`` held-out MNIST-1D signals (the first of the fixed evaluation batches)
    through an untrained model (seed ``seed``) or through a trained ``run``'s model: the float64
    embeddings ``(z_s, z_t)`` of the notebook's pictures.  Leaves torch's global generator alone."""
    if run is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            encoder, projector = ssl_model()
    else:
        encoder, projector = run.encoder, run.projector
    x_s, x_t = _eval_views()[0]
    with torch.no_grad():  # re-normalised in float64, so that the rows are unit vectors to 1e-16
        return tuple(F.normalize(projector(encoder(x[:n])).double(), dim=1) for x in (x_s, x_t))


# --------------------------------------------------------------------------------------------
# Self-supervised training
# --------------------------------------------------------------------------------------------

@dataclass(repr=False)
class GraphMatchingRun(Run):
    """One self-supervised run: per-step ``history`` (loss, train_match, nnz), ``evals`` (iter,
    view_match), ``scores`` (5-NN class accuracy of the encoder: ``knn_init`` untrained, ``knn`` after
    training), the trained ``encoder`` and ``projector``."""

    encoder: nn.Module | None = None
    projector: nn.Module | None = None

    def __repr__(self) -> str:
        e = self.evals
        return (f"GraphMatchingRun({NAMES[self.params['loss']]}, {self.params['iters']} it: view matching "
                f"{e['view_match'][0]:.3f} -> {e['view_match'][-1]:.3f}; 5-NN of the encoder "
                f"{self.scores['knn_init']:.3f} untrained -> {self.scores['knn']:.3f})")


def _knobs(loss: str, lam, margin, beta, k, tau_graph, tau, noise) -> dict:
    """The knobs a loss reads (so a knob it ignores does not split the cache)."""
    if loss == "infonce":
        return dict(tau=checks.temperature(tau))
    out = dict(lam=checks.positive(lam, "lam (the interpolation parameter λ)"), margin=_margin(margin),
               noise=checks.non_negative(noise, "noise (the Gumbel perturbation scale)"))
    if loss == "gm_2nd":
        out |= dict(beta=checks.non_negative(beta, "beta"), k=k,
                    tau_graph=checks.positive(tau_graph, "tau_graph"))
    return out


def view_matching(encoder: nn.Module, projector: nn.Module) -> float:
    """Held-out view matching: the Hungarian solver on first-order cosines (no margin) of 10 fixed
    batches of 64 test signals x 2 views; the fraction of images matched to their own other view."""
    with torch.no_grad():
        return float(np.mean([matching_accuracy(node_affinity(projector(encoder(a)), projector(encoder(b))))
                              for a, b in _eval_views()]))


def class_knn(encoder: nn.Module) -> float:
    """5-NN class accuracy of the encoder's features (1000 test queries, the 4000 training signals as
    the gallery): a class score that no loss here trains for (labels are never used)."""
    from ..data import mnist1d

    split = mnist1d("seen")
    with torch.no_grad():
        return knn_accuracy(encoder(split.x_train), split.y_train, encoder(split.x_test), split.y_test)


def train_graph_matching(loss: str = "gm_1st", *, iters: int = 600, batch: int = 64, lr: float = 1e-3,
                         lam: float = 80.0, margin: float = 0.2, beta: float = 0.5, k: int | None = 5,
                         tau_graph: float = 0.1, tau: float = 0.2, noise: float = 0.0, seed: int = 0,
                         eval_every: int = 50, progress=True, cache: bool = True) -> GraphMatchingRun:
    """Self-supervised training on MNIST-1D (its 4000 training signals, labels unused) with one of
    :data:`LOSSES`: ``"infonce"`` (NT-Xent, ``tau``), ``"gm_1st"`` (graph-matching loss on ``C_v``,
    ``lam``, ``margin``, ``noise``) or ``"gm_2nd"`` (on the second-order proxy, also ``beta``, ``k``,
    ``tau_graph``).

    Each step: ``batch`` random signals, two views (:func:`signal_views`), one Adam step.  Recorded
    every step: the loss, ``train_match`` (the fraction of the batch the solver matches correctly on
    the loss's own affinity, margin included; on ``C_v`` for InfoNCE), ``bare_match`` (the same without
    the margin) and ``nnz`` (the number of non-zero entries of ``dL/dC``).  :func:`view_matching` runs
    at step 0, every ``eval_every`` steps and at the end; :func:`class_knn` of the untrained and of the
    trained encoder go in ``scores``.
    Runs are cached by their parameters (:func:`lossviz.train.memo`); ``progress`` as in
    :func:`lossviz.train.loop`.
    """
    checks.choice(loss, "loss", LOSSES)
    checks.integer(iters, "iters", 1)
    checks.integer(batch, "batch", 2)
    checks.integer(eval_every, "eval_every", 1)
    knobs = _knobs(loss, lam, margin, beta, k, tau_graph, tau, noise)
    params = dict(loss=loss, iters=iters, batch=batch, lr=checks.positive(lr, "lr"), seed=seed,
                  eval_every=eval_every, **knobs)
    return memo("lvm_med", params, lambda: _train(params, knobs, progress), cache=cache)


def _batch_loss(loss: str, knobs: dict, z_s, z_t, generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One batch's ``(loss value, C, the solver's matching v)`` for :func:`train_graph_matching`:
    InfoNCE on ``C = z_s z_t^T`` (``v`` only recorded), or the graph-matching loss on :func:`affinity`
    (the solver sees ``C - margin I``, as in :func:`gm_loss`)."""
    if loss == "infonce":
        C = z_s @ z_t.T
        return nt_xent_views(C, z_s @ z_s.T, z_t @ z_t.T, tau=knobs["tau"]), C, _hungarian(C)
    C = affinity(z_s, z_t, beta=knobs.get("beta", 0.0), k=knobs.get("k"), tau_graph=knobs.get("tau_graph", 0.1))
    eye = torch.eye(C.shape[0], dtype=C.dtype, device=C.device)
    v = match(C - knobs["margin"] * eye, lam=knobs["lam"], noise=knobs["noise"], generator=generator)
    return hamming_loss(v), C, v


def _train(params: dict, knobs: dict, progress) -> GraphMatchingRun:
    from ..data import mnist1d

    split = mnist1d("seen")
    trainer = Trainer(ssl_model, lr=params["lr"], seed=params["seed"])
    encoder, projector = trainer.model
    g = torch.Generator().manual_seed(params["seed"])

    def step(it: int) -> dict:
        x = split.x_train[torch.randperm(len(split.x_train), generator=g)[:params["batch"]]]
        z_s, z_t = (projector(encoder(xv)) for xv in signal_views(x, g))
        value, C, v = _batch_loss(params["loss"], knobs, z_s, z_t, g)
        C.retain_grad()
        trainer.update(value)
        bare = v if params["loss"] == "infonce" or knobs["margin"] == 0 else _hungarian(C)
        return {"loss": value.detach(), "train_match": torch.diagonal(v.detach()).mean(),
                "bare_match": torch.diagonal(bare).mean(), "nnz": (C.grad != 0).sum()}

    knn_init = class_knn(encoder)
    history, evals, seconds = trainer.run(step, params["iters"],
                                          evaluate=lambda: {"view_match": view_matching(encoder, projector)},
                                          eval_every=params["eval_every"], desc=NAMES[params["loss"]],
                                          progress=progress)
    return GraphMatchingRun(params=params, history=history, evals=evals, seconds=seconds,
                            scores={"knn_init": knn_init, "knn": class_knn(encoder)},
                            encoder=encoder.eval(), projector=projector.eval())


# --------------------------------------------------------------------------------------------
# Pictures and panels
# --------------------------------------------------------------------------------------------

def _pca2(*zs) -> list[np.ndarray]:
    """Project several point sets on the first two principal axes of all of them together."""
    Z = torch.cat([z.detach().cpu().double() for z in zs])
    P = pca_embedding(Z, Z, 2).double().numpy()
    P /= max(np.abs(P).max(), 1e-12)
    return np.split(P, np.cumsum([len(z) for z in zs])[:-1])


def draw_matching(ax, z_s, z_t, v, *, A_s=None, A_t=None, title: str = "the solver's matching"):
    """Both views' graphs side by side (a shared 2-D PCA; view 1 left, view 2 right), their
    k-NN edges in grey, and the matching ``v`` as lines: correct (image n to image n) in the
    positive-pair colour, wrong in the negative-pair colour."""
    _matching_view(ax, z_s, z_t, graph=A_s is not None)(v, A_s=A_s, A_t=A_t, title=title)


def _matching_view(ax, z_s, z_t, *, graph: bool = True):
    """The artists of :func:`draw_matching` for fixed embeddings, made once (the nodes, their
    numbers, empty edge and matching lines, the legend); returns ``update(v, *, A_s=None, A_t=None,
    title)``, which moves the lines and the counts in place."""
    from matplotlib.collections import LineCollection

    from .. import plots

    p_s, p_t = _pca2(z_s, z_t)
    p_s[:, 0] -= 1.5
    p_t[:, 0] += 1.5
    edges = ax.add_collection(LineCollection([], color=plots.MUTED, lw=0.6, alpha=0.5, zorder=1))
    right = ax.add_collection(LineCollection([], color=plots.POS_COLOR, lw=1.5, alpha=0.8, zorder=2))
    wrong = ax.add_collection(LineCollection([], color=plots.NEG_COLOR, lw=2.0, alpha=0.95, zorder=3))
    for P, marker in ((p_s, "o"), (p_t, "s")):
        ax.scatter(*P.T, s=80, marker=marker, color="white", edgecolor="black", zorder=4)
        for n, (x, y) in enumerate(P):
            ax.text(x, y, str(n), fontsize=7, ha="center", va="center", zorder=5)
    handles = [ax.plot([], [], color=plots.POS_COLOR, lw=1.5, label="correct")[0],
               ax.plot([], [], color=plots.NEG_COLOR, lw=2.0, label="wrong")[0]]
    if graph:
        handles.append(ax.plot([], [], color=plots.MUTED, lw=0.6, label="k-NN edge")[0])
    legend = ax.legend(handles=handles, loc="lower center", ncol=3, fontsize=9, bbox_to_anchor=(0.5, -0.02))
    ax.set(xlabel="view 1 (circles)   |   view 2 (squares)   [PCA 1]", ylabel="PCA 2",
           xticks=[], yticks=[], xlim=(-2.6, 2.6), ylim=(-1.35, 1.15))
    ax.grid(False)

    def update(v, *, A_s=None, A_t=None, title: str = "the solver's matching") -> None:
        segments = []
        for P, A in ((p_s, A_s), (p_t, A_t)):
            if A is not None:
                i, j = (A.detach().cpu() > 0).nonzero(as_tuple=True)
                segments.extend(np.stack([P[i.numpy()], P[j.numpy()]], axis=1))
        edges.set_segments(segments)
        rows, cols = (torch.as_tensor(v).detach().cpu() > 0).nonzero(as_tuple=True)
        rows, cols = rows.numpy(), cols.numpy()
        lines = np.stack([p_s[rows], p_t[cols]], axis=1)
        ok = rows == cols
        right.set_segments(lines[ok])
        wrong.set_segments(lines[~ok])
        texts = legend.get_texts()
        texts[0].set_text(f"correct ({int(ok.sum())})")
        texts[1].set_text(f"wrong ({int((~ok).sum())})")
        ax.set_title(title)

    return update


def grad_heatmap(ax, W, title: str):
    """Signed ``dL/dC`` as a heat-map (rows: view-1 images, columns: view-2 images; the correct
    pairs, the diagonal, outlined): blue pulls a pair together, vermillion pushes it apart."""
    from .. import plots

    from matplotlib.ticker import MaxNLocator

    im = plots.weight_heatmap(ax, W, torch.arange(W.shape[0]), title=title, colorbar=False)
    ax.figure.colorbar(im, ax=ax, shrink=0.8, label=r"$\partial L/\partial C_{ij}$")
    ax.set(xlabel="view-2 image j", ylabel="view-1 image i")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    return im


def staircase(C, lams, *, margin: float = 0.2, ts=None) -> dict:
    """Along ``C + t I`` (raise every correct affinity by t): the true loss ``L(v(C + tI - mI))`` (a
    staircase; the margin ``m`` shifts it right by m) and the interpolation ``f_lam`` for each ``lam``.
    Returns ``{"t", "L", lam: f}``.

    The values are :func:`hamming_loss` and :func:`interpolated_loss` (a test holds them equal),
    computed here on numpy arrays with the solver called directly: a few hundred solves of an
    N x N problem, fast enough for a slider."""
    C = _square(C).detach().cpu().double().numpy()
    m = _margin(margin)
    ts = np.linspace(-0.6, 1.0, 161) if ts is None else np.asarray(ts, dtype=float)
    n = C.shape[0]
    eye, rows = np.eye(n), np.arange(n)
    lams = [checks.positive(lam, "lam (the interpolation parameter λ)") for lam in lams]

    def solve(M: np.ndarray) -> np.ndarray:       # the column each row is matched to
        return linear_sum_assignment(M, maximize=True)[1]

    out = {"t": ts, "L": np.empty(len(ts))} | {lam: np.empty(len(ts)) for lam in lams}
    for k, t in enumerate(ts):
        shifted = C + (t - m) * eye                 # C' = C + tI - mP: the costs the solver sees
        v = solve(shifted)
        out["L"][k] = 2 * (n - np.count_nonzero(v == rows))
        for lam in lams:                            # f_lam = L(v_lam) + <C', v - v_lam> / lam
            v_lam = solve(shifted + 2 * lam * eye)
            gain = shifted[rows, v].sum() - shifted[rows, v_lam].sum()
            out[lam][k] = 2 * (n - np.count_nonzero(v_lam == rows)) + gain / lam
    return out


def matching_panel(z_s, z_t, *, lam: float = 80.0, margin: float = 0.2, beta: float = 0.5, k: int = 3,
                   tau_graph: float = 0.1, tau: float = 0.2):
    """Pure maths on a fixed batch: the two graphs and the solver's matching (β, k), the black-box
    gradient ``dL/dC`` of the GM loss (λ, margin m), InfoNCE's ``dL/dC`` (τ), and the staircase loss
    with its interpolation ``f_λ`` along ``C + tI``.  Every change costs a few hundred Hungarian calls
    on N x N; the artists are made once and updated in place."""
    import ipywidgets as W

    from .. import plots, widgets
    from ..weights import pair_weights

    z_s, z_t = _views(z_s, z_t)
    z_s, z_t = z_s.detach().double(), z_t.detach().double()
    n = z_s.shape[0]
    style = dict(continuous_update=False, style={"description_width": "initial"})
    controls = {
        "lam": W.FloatLogSlider(value=lam, base=10, min=math.log10(0.05), max=math.log10(200), step=0.05,
                                description="λ (interpolation)", readout_format=".3g", **style),
        "margin": W.FloatSlider(value=margin, min=0.0, max=0.5, step=0.05, description="m (cost margin)", **style),
        "beta": W.FloatSlider(value=beta, min=0.0, max=1.0, step=0.05, description="β (2nd order)", **style),
        "k": W.IntSlider(value=k, min=1, max=min(8, n - 1), description="k (neighbours)", **style),
        "tau": W.FloatLogSlider(value=tau, base=10, min=math.log10(0.05), max=0, step=0.05,
                                description="τ (InfoNCE)", readout_format=".3g", **style),
    }
    fig, axes = plots.new_figure(2, 2, width=5.6, height=4.6)
    S_s, S_t = z_s @ z_s.T, z_t @ z_t.T
    show_matching = _matching_view(axes[0, 0], z_s, z_t)
    im_gm = grad_heatmap(axes[0, 1], torch.zeros(n, n), "GM: black-box dL/dC")
    im_nce = grad_heatmap(axes[1, 0], torch.zeros(n, n), "InfoNCE: dL/dC")
    targets = torch.arange(n)
    ax = axes[1, 1]
    (true_line,) = ax.plot([], [], color="black", lw=1.5, label="true loss L(v(C + tI - mI))")
    (interp_line,) = ax.plot([], [], color=COLORS["gm_1st"], lw=2, label="interpolation f_λ")
    ax.axvline(0, color=plots.MUTED, ls=":", lw=1)
    ax.set(xlabel="t, added to every correct affinity C_ii", ylabel="Hamming loss (entries)",
           title="the loss the black-box gradient differentiates")
    interp_text = ax.legend(loc="upper right", fontsize=9).get_texts()[1]

    def draw(v):
        A_s = neighbourhood(z_s, k=v["k"], tau_graph=tau_graph)
        A_t = neighbourhood(z_t, k=v["k"], tau_graph=tau_graph)
        C = affinity(z_s, z_t, beta=v["beta"], k=v["k"], tau_graph=tau_graph)
        match_v = _hungarian(C)
        show_matching(match_v, A_s=A_s, A_t=A_t, title=f"graphs (k={v['k']}) and matching, β={v['beta']:.2f}")
        W_gm = pair_weights(gm_loss, C, targets, signed=True, lam=v["lam"], margin=v["margin"])
        W_nce = pair_weights(lambda C_, _y: nt_xent_views(C_, S_s, S_t, tau=v["tau"]), C, targets, signed=True)
        plots.set_weight_image(im_gm, W_gm, targets)
        plots.set_weight_image(im_nce, W_nce, targets)
        nnz = int((W_gm != 0).sum())
        axes[0, 1].set_title(f"GM black-box dL/dC, λ={v['lam']:.3g}, m={v['margin']:.2g}: {nnz} non-zero")
        axes[1, 0].set_title(f"InfoNCE dL/dC, τ={v['tau']:.3g}: {int((W_nce != 0).sum())} non-zero")
        curves = staircase(C, [v["lam"]], margin=v["margin"])
        true_line.set_data(curves["t"], curves["L"])
        interp_line.set_data(curves["t"], curves[v["lam"]])
        interp_text.set_text(f"interpolation f_λ, λ={v['lam']:.3g}")
        ax.relim()
        ax.autoscale_view()
        wrong = int(n - torch.diagonal(match_v).sum())
        thin = int(n - torch.diagonal(_hungarian(C - v["margin"] * torch.eye(n, dtype=C.dtype))).sum()) - wrong
        return {"C": C, "v": match_v, "W_gm": W_gm, "W_nce": W_nce, "nnz": nnz, "wrong": wrong, "thin": thin,
                "status": f"{wrong} of {n} images matched wrongly, {thin} more right by less than the margin; "
                          f"GM gradient: {nnz} non-zero entries of {n * n} "
                          f"(±1/λ = ±{1 / v['lam']:.3g}); InfoNCE: all {int((W_nce != 0).sum())}"}

    return widgets.Panel(controls, fig, draw)


def plot_runs(axes, runs: dict) -> None:
    """Learning curves of :class:`GraphMatchingRun`s (``{label: run}``) on two axes: held-out view
    matching, and the non-zero entries of ``dL/dC`` per step (a 25-step running mean).  Seed 0 is
    drawn solid, seed 1 dashed, further seeds thin and dotted; a label that starts with ``_`` stays out
    of the legend (matplotlib's rule)."""
    for label, run in runs.items():
        seed = run.params["seed"]
        style = dict(color=COLORS[run.params["loss"]], label=label, ls="-" if seed == 0 else "--" if seed == 1 else ":",
                     lw=1.5 if seed < 2 else 0.8, alpha=1.0 if seed < 2 else 0.6)
        axes[0].plot(run.evals["iter"], run.evals["view_match"], marker="." if seed < 2 else None, **style)
        w = min(25, len(run.history["nnz"]))
        nnz = np.convolve(run.history["nnz"], np.ones(w) / w, mode="valid")
        axes[1].plot(run.history["iter"][w - 1:], nnz, **style)
    axes[0].set(title="held-out view matching", xlabel="iteration", ylabel="fraction matched correctly")
    axes[1].set(title="non-zero entries of dL/dC", xlabel="iteration", ylabel="entries (of N², 25-step mean)")
    axes[1].set_yscale("log")
    axes[0].legend(loc="lower right", fontsize=9)


def plot_knn_control(ax, runs) -> None:
    """5-NN accuracy of the encoder, untrained (grey, the random-encoder control) and after training
    (the loss's colour), one pair of dots per run joined by a line, one column per loss.  A control,
    not a ranking: see the notebook."""
    from .. import plots

    losses = [x for x in LOSSES if any(r.params["loss"] == x for r in runs)]
    for col, loss in enumerate(losses):
        mine = [r for r in runs if r.params["loss"] == loss]
        for i, r in enumerate(mine):
            x = col + 0.25 * (i / max(len(mine) - 1, 1) - 0.5)
            ax.plot([x - 0.04, x + 0.04], [r.scores["knn_init"], r.scores["knn"]], color=plots.MUTED, lw=0.8, zorder=1)
            ax.scatter([x - 0.04], [r.scores["knn_init"]], s=18, color=plots.MUTED, zorder=2,
                       label="untrained encoder (control)" if col == 0 and i == 0 else None)
            ax.scatter([x + 0.04], [r.scores["knn"]], s=18, color=COLORS[loss], zorder=3,
                       label=f"after {NAMES[loss]}" if i == 0 else None)
    ax.set(xticks=range(len(losses)), xticklabels=[NAMES[x] for x in losses], xlim=(-0.5, len(losses) - 0.5),
           title="encoder 5-NN accuracy (a control)", ylabel="5-NN test accuracy (10 classes)")
    low, high = ax.get_ylim()
    ax.set_ylim(low, high + 0.4 * (high - low))            # room for the legend above the dots
    ax.legend(loc="upper center", ncol=2, fontsize=9)


def training_panel(*, iters: int = 600, loss: str = "gm_1st", lam: float = 80.0, margin: float = 0.2,
                   beta: float = 0.5, tau: float = 0.2, autorun: bool = True):
    """A Train button over :func:`train_graph_matching`: choose the loss, λ, the margin, β, τ, the I-MLE noise and the seed;
    the learning curves of the run are drawn (runs are cached, so a setting already trained is instant)."""
    import ipywidgets as W

    from .. import widgets

    style = dict(continuous_update=False, style={"description_width": "initial"})
    controls = {
        "loss": W.Dropdown(options=[(NAMES[x], x) for x in LOSSES], value=loss, description="loss"),
        "lam": W.FloatLogSlider(value=lam, base=10, min=math.log10(0.5), max=math.log10(200), step=0.05,
                                description="λ", readout_format=".3g", **style),
        "margin": W.FloatSlider(value=margin, min=0.0, max=0.5, step=0.05, description="m (cost margin)", **style),
        "beta": W.FloatSlider(value=beta, min=0.0, max=1.0, step=0.1, description="β (GM-2nd)", **style),
        "noise": W.FloatSlider(value=0.0, min=0.0, max=0.2, step=0.05, description="I-MLE noise", **style),
        "tau": W.FloatLogSlider(value=tau, base=10, min=math.log10(0.05), max=0, step=0.05,
                                description="τ (InfoNCE)", readout_format=".3g", **style),
        "seed": W.BoundedIntText(value=0, min=0, max=99, description="seed", layout=W.Layout(width="140px")),
    }

    def run(values, progress):
        return train_graph_matching(values["loss"], iters=iters, lam=values["lam"], margin=values["margin"],
                                    beta=values["beta"], tau=values["tau"], noise=values["noise"], seed=values["seed"],
                                    progress=progress)

    def draw(axes, result, values):
        plot_runs(axes[0, :2], {NAMES[result.params["loss"]]: result})
        plot_knn_control(axes[0, 2], [result])
        return {"status": repr(result)}

    return widgets.run_panel(controls, run, draw, ncols=3, width=4.0, height=3.3, autorun=autorun)
