r"""All negatives at cluster cost: the meta-node approximation of PamC (Kulatilleke, Portmann, Chandra 2022).

A graph contrastive loss (Graph-MLP's neighbourhood contrast, used by SCGC and PamC) scores every node
against every other node.  With embeddings ``z`` (N x d), the cosine matrix with its diagonal set to 0
(``ŝ_ii = 0``, as in the official code), and an **inverse** temperature ``s = 1/T`` that *multiplies*
the cosine (the paper and its code call it τ; lossviz calls it ``s``, like the scale ``s`` of the
margin losses, because everywhere else in lossviz ``tau`` is a temperature that divides the cosine):

.. math::
    L_{NC} = \underbrace{-\frac1N \sum_i \log \sum_j A^r_{ij} e^{s \hat s_{ij}}}_{\text{positive term, } O(|E|)}
             \; + \; \underbrace{\frac1N \sum_i \log \sum_k e^{s \hat s_{ik}}}_{\text{negative term, } O(N^2)}

PamC groups the nodes into K clusters (hard assignment ``a(i)``, no gradient through it), sums each
cluster into a **meta-node** ``c_l = sum_{a(i) = l} z_i`` and keeps only the K x K meta-node cosines
``C_{ll'}`` (diagonal set to 0 as well), O(N d + K^2).  This module gives:

* :func:`negative_term`: the exact node-level term (O(N^2)), the reference;
* :func:`approx_negative_term`: the **size-weighted** meta-node approximation.  Every off-diagonal
  similarity ``ŝ_ik`` is replaced by the similarity of the two nodes' meta-nodes, ``C_{a(i) a(k)}``
  (the "block" view, :func:`block_similarity`), and the N x N sum is regrouped by cluster, so that the
  cluster sizes ``n_l`` become weights:

  .. math::
      \tilde L^- = \frac1N \sum_l n_l \log\Big(1 + (n_l - 1)\, e^{s C_{ll}} + \sum_{l' \ne l} n_{l'} e^{s C_{ll'}}\Big)

  It equals the exact term when every node is its own meta-node (K = N) and when clusters are tight
  (all members of a cluster point the same way);
* :func:`pamc_negative_term`: the term PamC's code computes, each meta-node counted **once** and the
  mean taken over clusters, :math:`\frac1K \sum_l \log(1 + \sum_{l' \ne l} e^{s C_{ll'}})`.  It is
  exact at K = N but is not a size-weighted estimate of the node-level term: the numerator (over
  nodes) and the denominator (over clusters) are decoupled;
* :func:`positive_term` over a weighted edge list (O(|E|)), :func:`knn_graph` (symmetrised kNN graph,
  self-loops, r-th power of its random-walk matrix as in the code, or the binary pattern), the DEC
  clustering head (:func:`soft_assign`,
  :func:`target_distribution`, :func:`kl_clustering_loss`), started from a seeded
  :func:`lossviz.cluster.kmeans`;
* :func:`train_clustering`: PamC's training on digits (DEC + contrastive, full batch) with the exact
  term, PamC's term or the size-weighted term, on :class:`lossviz.train.Trainer` and cached by
  :func:`lossviz.train.memo`; :func:`cost_curve` for the time and memory of the negative term;
* panels: :func:`approximation_panel` (pure maths) and :func:`training_panel` (a Train button).

Official defaults (code ``gayanku/PAMC``): ``s = 1`` (its ``tau``), ``alpha = 2`` (contrastive), ``beta = 0.1``
(clustering KL), ``r = 2``, Adam lr 1e-3, full batch, 200 epochs, ``n_z = 10``.  Where we differ:

* the code adds 1e-10 inside each log; we do not need to: every denominator here holds the self term
  ``e^0 = 1``, and a node without an edge is refused instead of being silently logged at
  ``log 1e-10 = -23``;
* the code builds meta-nodes from a one-hot matrix of ``argmax q``, so an empty cluster is a zero vector
  whose cosine is 0/0 (NaN); we drop empty clusters (:func:`meta_nodes`) and count them;
* the pull follows the code: its ``A^r`` is ``P^r`` with ``P = D^{-1}(A + I)`` the row-normalised
  adjacency (SDCN's ``load_graph``), so each r-hop neighbour weighs its random-walk probability;
  ``walk=False`` gives the binary pattern of ``(A + I)^r`` that the Graph-MLP paper writes (at r = 1 the
  two differ by a constant per node, from r = 2 on their gradients differ);
* the DEC centres start from a k-means of the untrained encoder, not of a pretrained autoencoder (which
  would need a download).
"""

from __future__ import annotations

import functools
import math
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import checks, contrastive, plots
from ..cluster import cluster_scores, kmeans
from ..similarity import similarity, upcast
from ..train import Run, Trainer, memo

#: The official code's defaults (``SCALE`` is its ``tau``, an inverse temperature).
SCALE, ALPHA, BETA, R = 1.0, 2.0, 0.1, 2
#: The three negative terms :func:`train_clustering` knows, by name.
METHODS = ("nc", "pamc", "approx")
METHOD_NAMES = {"nc": "L_NC (all N² pairs)", "pamc": "PamC (K² meta-node pairs)",
                "approx": "size-weighted meta-nodes"}
METHOD_COLORS = {"nc": "#000000", "pamc": "#009E73", "approx": "#CC79A7"}
#: How errors name the ``s`` knob.
_SCALE = "s (the scale, an inverse temperature 1/T: it multiplies the cosine)"


# ------------------------------------------------------------------------------------------------
# Input checks
# ------------------------------------------------------------------------------------------------

def _embeddings(z, name: str = "z (node embeddings, N x d)") -> torch.Tensor:
    z = checks.as_float_tensor(z, name, 2)
    if z.shape[0] < 2:
        raise ValueError(f"{name} needs at least 2 nodes (rows) to have a negative; got {z.shape[0]}")
    if checks.validation_enabled() and bool((z.detach().norm(dim=1) == 0).any()):
        raise ValueError(f"{name} has an all-zero row, whose direction (and cosine) is undefined")
    return upcast(z)


def _assignment(assign, n: int, device) -> torch.Tensor:
    assign = checks.check_labels(assign, n, device)
    if checks.validation_enabled() and n and int(assign.min()) < 0:
        raise ValueError("assign must hold cluster ids >= 0 (one per node)")
    return assign


# ------------------------------------------------------------------------------------------------
# Clusters and meta-nodes
# ------------------------------------------------------------------------------------------------

def meta_nodes(z, assign, *, mode: str = "sum") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""The meta-nodes of a hard assignment: ``(c, sizes, cluster)``.

    .. math::  c_l = \sum_{i:\, a(i) = l} z_i \quad (\texttt{mode="sum"}, \text{ PamC's code}),
               \qquad c_l = \frac{1}{n_l} \sum_{i:\, a(i) = l} z_i \quad (\texttt{mode="mean"})

    computed in O(N d) with ``index_add``.  Empty clusters are dropped: ``c`` is K' x d with K' the
    number of non-empty clusters, ``sizes`` (K',) their sizes, and ``cluster`` (N,) each node's row of
    ``c``.  Gradients flow to ``z``, never through the assignment.
    """
    z = _embeddings(z)
    checks.choice(mode, "mode", ("sum", "mean"))
    assign = _assignment(assign, z.shape[0], z.device)
    ids, cluster, sizes = torch.unique(assign, return_inverse=True, return_counts=True)
    c = z.new_zeros(len(ids), z.shape[1]).index_add(0, cluster, z)
    if mode == "mean":
        c = c / sizes[:, None].to(z.dtype)
    return c, sizes, cluster


def _meta_cosine(c: torch.Tensor) -> torch.Tensor:
    if checks.validation_enabled() and bool((c.detach().norm(dim=1) == 0).any()):
        raise ValueError("a meta-node is the zero vector (its members' embeddings cancel out), so its cosine is "
                         "undefined; use fewer clusters or check the embeddings")
    return similarity(c)


def block_similarity(z, assign) -> torch.Tensor:
    r"""The N x N "block" similarity the meta-node approximation uses in place of the node cosines:
    ``S̃_ik = C_{a(i) a(k)}`` (the cosine of the two nodes' meta-nodes) for ``i != k``, and 0 on the
    diagonal (the code's ``ŝ_ii = 0``).  O(N^2): for pictures and references, never for training.
    """
    c, _, cluster = meta_nodes(z, assign)
    C = _meta_cosine(c)
    S = C[cluster][:, cluster]
    return S.masked_fill(torch.eye(len(cluster), dtype=torch.bool, device=S.device), 0.0)


# ------------------------------------------------------------------------------------------------
# The negative terms: exact, size-weighted approximation, PamC
# ------------------------------------------------------------------------------------------------

def node_negative_loss(S, labels=None, *, s: float = SCALE) -> torch.Tensor:
    r"""The node-level negative term on a similarity matrix, as a loss ``L(S, labels)`` (so
    :func:`lossviz.pair_weights` gives its pair weights; ``labels`` is ignored: every other node is a
    negative).

    .. math::  L^- = \frac1N \sum_i \log \sum_k e^{s \hat s_{ik}}, \qquad \hat s_{ii} = 0

    The diagonal of ``S`` is replaced by 0, as the official code's cosine matrix does, so each row
    holds the self term ``e^0 = 1``.  ``s`` is an inverse temperature (``s = 1/T``, the paper's τ).  Its pair weights are ``dL/dS_ik = (s / N) e^{s S_ik} / sum_k'
    e^{s ŝ_ik'}``: a softmax at temperature ``T = 1/s`` over the row.
    """
    S = checks.as_float_tensor(S, "S", 2)
    if S.shape[0] != S.shape[1] or S.shape[0] < 2:
        raise ValueError(f"S must be square with at least 2 nodes; got shape {tuple(S.shape)}")
    s = checks.positive(s, _SCALE)
    logits = s * upcast(S)              # a fresh N x N tensor: its diagonal may be zeroed in place
    logits.diagonal().zero_()               # (one N x N copy fewer than masked_fill: this term is memory-bound)
    return torch.logsumexp(logits, dim=1).mean()


def negative_term(z, *, s: float = SCALE) -> torch.Tensor:
    r"""The exact negative term of :math:`L_{NC}`, every node against every node: O(N^2) time and memory.

    .. math::  L^- = \frac1N \sum_i \log \Big(1 + \sum_{k \ne i} e^{s \cos(z_i, z_k)}\Big)

    Equal to ``node_negative_loss(similarity(z), s=s)``, computed with a hand-written backward
    (:class:`_NodeNegative`) that holds one N x N buffer: this is the baseline's bottleneck, and an
    honest cost comparison needs a good baseline.
    """
    z = _embeddings(z)
    return _NodeNegative.apply(z, checks.positive(s, _SCALE))


class _NodeNegative(torch.autograd.Function):
    r"""``L^-`` and its gradient in one N x N buffer.  Forward: ``E = exp(s S - m)`` row-wise (``S`` the
    cosines with a zero diagonal, ``m`` the row maximum), ``L^- = mean(log sum_k E_ik + m_i)``.
    Backward: the row softmax ``P = E / sum_k E_ik`` scaled by ``g s / N`` is ``dL/dS`` (zero on the
    diagonal, which is a constant); then ``dL/df = (P + P^T) f`` and ``dL/dz_i = (dL/df_i - f_i <dL/df_i,
    f_i>) / |z_i|`` for ``f = z / |z|``, as in :func:`lossviz.similarity`."""

    @staticmethod
    def forward(ctx, z, s):
        r = torch.linalg.vector_norm(z, dim=1, keepdim=True).clamp_min(1e-12)
        f = z / r
        E = f @ f.T
        E.mul_(s).diagonal().zero_()
        m = E.amax(dim=1, keepdim=True)
        E.sub_(m).exp_()
        total = E.sum(dim=1, keepdim=True)
        ctx.save_for_backward(z, r, E, total)
        ctx.s = s
        return (total.log() + m).mean()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        z, r, E, total = ctx.saved_tensors
        P = E.mul_((g * ctx.s / len(z)) / total)      # in place: E is not needed again
        P.diagonal().zero_()
        f = z / r
        gf = (P @ f).addmm_(P.T, f)
        return (gf - f * (gf * f).sum(dim=1, keepdim=True)) / r, None


def meta_node_lse(C: torch.Tensor, log_m: torch.Tensor, *, s: float) -> torch.Tensor:
    r"""The row term of both meta-node approximations, for every meta-node ``l``:

    .. math::  \log\Big(1 + \sum_{l'} m_{ll'}\, e^{s C_{ll'}}\Big)

    with the multiplicities ``m`` given as ``log_m = log m`` (-inf where m = 0): one log-sum-exp over
    the row of ``log m_ll' + s C_ll'`` and a zero column, the self term ``e^0 = 1``."""
    logits = torch.cat([log_m + s * C, C.new_zeros(len(C), 1)], dim=1)
    return torch.logsumexp(logits, dim=1)


def approx_negative_term(z, assign, *, s: float = SCALE) -> torch.Tensor:
    r"""The size-weighted meta-node approximation of :func:`negative_term`: O(N d + K^2).

    .. math::
        \tilde L^- = \frac1N \sum_l n_l \log\Big(1 + (n_l - 1)\, e^{s C_{ll}}
                     + \sum_{l' \ne l} n_{l'} e^{s C_{ll'}}\Big),\qquad C_{ll'} = \cos(c_l, c_{l'})

    It is :func:`node_negative_loss` of :func:`block_similarity` (each negative replaced by its
    meta-node), regrouped by cluster.  Exact when every node is its own meta-node and when each
    cluster's members point the same way.  Sum or mean meta-nodes give the same value (a cosine
    ignores scale).
    """
    z = _embeddings(z)
    s = checks.positive(s, _SCALE)
    c, sizes, _ = meta_nodes(z, assign)
    C = _meta_cosine(c)
    m = sizes.to(C.dtype)[None, :] - torch.eye(len(sizes), dtype=C.dtype, device=C.device)   # n_l' - [l = l']
    rows = meta_node_lse(C, m.log(), s=s)
    return (sizes.to(C.dtype) * rows).sum() / z.shape[0]


def pamc_negative_term(z, assign, *, s: float = SCALE, mode: str = "sum", sim: str = "cosine") -> torch.Tensor:
    r"""PamC's negative term, as in the official code: O(N d + K^2).

    .. math::  L^-_{PamC} = \frac1K \sum_l \log\Big(1 + \sum_{l' \ne l} e^{s C_{ll'}}\Big)

    over the K non-empty meta-nodes, ``C_{ll'} = cos(c_l, c_l')`` (diagonal 0: the ``1``).  Each meta-node
    counts once whatever its size, and the mean is over clusters: not a size-weighted estimate of
    :func:`negative_term` (compare :func:`approx_negative_term`).  ``mode="sum"`` (the code) or
    ``"mean"`` meta-nodes give the same loss with ``sim="cosine"``; ``sim="dot"`` uses the raw dot
    product ``c_l . c_l'`` instead (not in the paper), where big sum meta-nodes dominate.
    """
    z = _embeddings(z)
    s = checks.positive(s, _SCALE)
    checks.choice(sim, "sim", ("cosine", "dot"))
    c, _, _ = meta_nodes(z, assign, mode=mode)
    C = _meta_cosine(c) if sim == "cosine" else c @ c.T
    off = ~torch.eye(len(C), dtype=torch.bool, device=C.device)
    log_m = torch.zeros_like(C).masked_fill(~off, -math.inf)
    return meta_node_lse(C, log_m, s=s).mean()


def approximation_error(z, assign, *, s: float = SCALE, kind: str = "approx") -> float:
    """``|approximate - exact|`` of the negative term: ``kind="approx"`` (size-weighted) or ``"pamc"``."""
    checks.choice(kind, "kind", ("approx", "pamc"))
    with torch.no_grad():
        exact = negative_term(z, s=s)
        approx = (approx_negative_term if kind == "approx" else pamc_negative_term)(z, assign, s=s)
    return abs(float(approx - exact))


def push_shares(z, assign=None, *, s: float = SCALE) -> torch.Tensor:
    r"""How each node's push is shared over its negatives (N x N, rows sum to 1): the engine's relative
    penalty (:func:`lossviz.contrastive.relative_penalty`) at temperature ``T = 1/s``, on the node
    cosines (``assign=None``, the exact term) or on the meta-node block similarity (the size-weighted
    approximation), where every member of a meta-node gets the same share.

    .. math::  r_{ik} = \frac{e^{s S_{ik}}}{\sum_{k' \ne i} e^{s S_{ik'}}}\quad (k \ne i)

    These are the pair weights ``dL^-/dS_ik`` up to the factor ``s (1 - e^0 / sum_k e^{s ŝ_ik}) / N``
    (the self term takes the rest of the row's softmax).
    """
    z = _embeddings(z)
    S = similarity(z) if assign is None else block_similarity(z, assign)
    everyone = torch.arange(z.shape[0], device=z.device)         # each node its own class: all others negative
    return contrastive.relative_penalty(S.detach(), everyone, tau=1.0 / checks.positive(s, _SCALE))


def node_push_entropy(z, assign=None, *, s: float = SCALE) -> torch.Tensor:
    """Normalised entropy of each node's push over its negatives (engine's
    :func:`lossviz.contrastive.negative_weight_entropy`): 1 = even push, 0 = all on one negative."""
    z = _embeddings(z)
    S = similarity(z) if assign is None else block_similarity(z, assign)
    everyone = torch.arange(z.shape[0], device=z.device)
    return contrastive.negative_weight_entropy(S.detach(), everyone, tau=1.0 / checks.positive(s, _SCALE),
                                                    normalized=True)


def push_mass(z, assign=None, *, s: float = SCALE, kind: str = "exact") -> torch.Tensor:
    """The size of the negative term's gradient on each node, ``|dL^-/dz_i|`` (N,): ``kind`` is
    ``"exact"`` (:func:`negative_term`), ``"approx"`` or ``"pamc"`` (these need ``assign``).  Under PamC
    every member of a meta-node gets its meta-node's gradient: the same push, whatever its own position."""
    checks.choice(kind, "kind", ("exact", "approx", "pamc"))
    if kind != "exact" and assign is None:
        raise ValueError(f"kind={kind!r} needs the cluster assignment assign")
    leaf = _embeddings(z).detach().clone().requires_grad_(True)
    with torch.enable_grad():
        if kind == "exact":
            value = negative_term(leaf, s=s)
        else:
            value = (approx_negative_term if kind == "approx" else pamc_negative_term)(leaf, assign, s=s)
        (grad,) = torch.autograd.grad(value, leaf)
    return grad.norm(dim=1)


# ------------------------------------------------------------------------------------------------
# The positive term over the graph's edges
# ------------------------------------------------------------------------------------------------

def _edges(edges, n: int, device) -> torch.Tensor:
    if not isinstance(edges, torch.Tensor):
        edges = torch.as_tensor(edges)
    if edges.dtype == torch.bool or edges.is_floating_point() or edges.is_complex():
        raise ValueError(f"edges must hold integer node ids; got dtype {edges.dtype}")
    if edges.ndim != 2 or edges.shape[0] != 2:
        raise ValueError(f"edges must have shape (2, E): row 0 the nodes, row 1 their neighbours; got {tuple(edges.shape)}")
    edges = edges.to(device)
    if checks.validation_enabled():
        if edges.numel() and (int(edges.min()) < 0 or int(edges.max()) >= n):
            raise ValueError(f"edges must hold node ids in [0, {n})")
        lonely = torch.bincount(edges[0], minlength=n) == 0
        if bool(lonely.any()):
            raise ValueError(f"node {int(lonely.nonzero()[0])} has no edge, so its positive term is log 0; "
                             "add self-loops (knn_graph does)")
    return edges


def positive_term(z, edges, weights=None, *, s: float = SCALE) -> torch.Tensor:
    r"""The positive term of :math:`L_{NC}` over an edge list: O(|E| d), never an N x N matrix.

    .. math::  L^+ = -\frac1N \sum_i \log \sum_{j:\,(i, j) \in E} w_{ij}\, e^{s \hat s_{ij}}, \qquad \hat s_{ii} = 0

    ``edges`` (2, E) lists the non-zeros of ``A^r`` and ``weights`` (E,) its entries ``w_ij > 0``: the
    official code's random-walk probabilities (:func:`knn_graph`, ``walk=True``), or ``None`` for the
    binary pattern (every ``w_ij = 1``).  A self-loop counts as ``w_ii e^0`` (the code masks its cosine
    to 0).  Every node needs at least one edge.  A per-node log-sum-exp of ``s ŝ_ij + log w_ij`` with
    ``scatter_reduce`` / ``index_add`` (the code's ``scatter_add_``).
    """
    z = _embeddings(z)
    s = checks.positive(s, _SCALE)
    n = z.shape[0]
    src, dst = _edges(edges, n, z.device)
    f = F.normalize(z, dim=1)
    cos = (f[src] * f[dst]).sum(1).masked_fill(src == dst, 0.0)
    logit = s * cos
    if weights is not None:
        logit = logit + _edge_weights(weights, src.shape[0], logit).log()
    top = torch.full((n,), -math.inf, dtype=logit.dtype, device=logit.device)
    top = top.scatter_reduce(0, src, logit.detach(), "amax")
    total = torch.zeros(n, dtype=logit.dtype, device=logit.device).index_add(0, src, (logit - top[src]).exp())
    return -(total.log() + top).mean()


def _edge_weights(weights, n_edges: int, like: torch.Tensor) -> torch.Tensor:
    weights = checks.as_float_tensor(torch.as_tensor(weights), "weights (one per edge)", 1)
    if weights.shape[0] != n_edges:
        raise ValueError(f"weights must hold one number per edge ({n_edges}); got {weights.shape[0]}")
    if checks.validation_enabled() and not bool((weights > 0).all()):
        raise ValueError("every edge weight must be > 0 (leave an edge out instead of giving it weight 0)")
    return weights.to(device=like.device, dtype=like.dtype)


def knn_graph(x, *, k: int = 5, r: int = R, walk: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The r-th power of a symmetrised k-nearest-neighbour graph with self-loops (Euclidean distances on
    ``x``): ``(edges, weights)``, the non-zeros of ``A^r`` as an edge list (2, E) and their values (E,).

    ``walk=True`` (the official code, after SDCN's ``load_graph``): the adjacency with self-loops is
    row-normalised first, ``P = D^{-1}(A + I)``, and ``A^r = P^r``: ``w_ij`` is the probability that an
    r-step random walk from i ends at j (each row sums to 1), so a neighbour reached by many short
    paths weighs more than one reached by a single path.  ``walk=False``: the binary pattern of
    ``(A + I)^r`` (every r-hop neighbour weighs 1, as the Graph-MLP paper writes it).  Built densely
    for the neighbours (O(N^2), once, before training), then with sparse products (O(N deg^2) per power).
    """
    x = checks.as_float_tensor(x, "x (node features, N x D)", 2).detach()
    k = checks.integer(k, "k (neighbours)", 1)
    r = checks.integer(r, "r (the adjacency power)", 1)
    n = x.shape[0]
    if k >= n:
        raise ValueError(f"k (neighbours) must be < the number of nodes ({n}); got {k}")
    d = torch.cdist(x, x).fill_diagonal_(math.inf)
    nn_idx = d.topk(k, dim=1, largest=False).indices
    A = torch.zeros(n, n, dtype=torch.bool, device=x.device)
    A[torch.arange(n, device=x.device)[:, None], nn_idx] = True
    A = A | A.T | torch.eye(n, dtype=torch.bool, device=x.device)
    idx = A.nonzero().T
    degree = A.sum(dim=1).double()
    with warnings.catch_warnings():         # torch's "sparse support is in beta" notices
        warnings.simplefilter("ignore", UserWarning)
        P = torch.sparse_coo_tensor(idx, 1.0 / degree[idx[0]], (n, n), check_invariants=True).coalesce()
        B = P
        for _ in range(r - 1):              # sparse products: O(N deg^2), not O(N^3)
            B = torch.sparse.mm(B, P).coalesce()
    edges, weights = B.indices().contiguous(), B.values()
    return edges, (weights if walk else torch.ones_like(weights))


# ------------------------------------------------------------------------------------------------
# The DEC clustering head (SDCN / SCGC / PamC)
# ------------------------------------------------------------------------------------------------

def soft_assign(z, mu, *, v: float = 1.0) -> torch.Tensor:
    r"""Student-t soft assignments of DEC: :math:`q_{ik} \propto (1 + \lVert z_i - \mu_k\rVert^2 / v)^{-(v+1)/2}`, rows sum to 1."""
    z = checks.as_float_tensor(z, "z (node embeddings, N x d)", 2)
    mu = checks.as_float_tensor(mu, "mu (cluster centres, K x d)", 2)
    if mu.shape[1] != z.shape[1]:
        raise ValueError(f"mu must have {z.shape[1]} columns like z; got {tuple(mu.shape)}")
    v = checks.positive(v, "v (degrees of freedom)")
    q = (1.0 + torch.cdist(z, mu).pow(2) / v).pow(-(v + 1.0) / 2.0)
    return q / q.sum(dim=1, keepdim=True)


def target_distribution(q) -> torch.Tensor:
    r"""DEC's sharpened target: :math:`p_{ik} = (q_{ik}^2 / f_k) / \sum_{k'} (q_{ik'}^2 / f_{k'})`, ``f_k = sum_i q_ik``."""
    q = checks.as_float_tensor(q, "q (soft assignments, N x K)", 2).detach()
    w = q.pow(2) / q.sum(dim=0)
    return w / w.sum(dim=1, keepdim=True)


def kl_clustering_loss(q, p) -> torch.Tensor:
    r""":math:`KL(P \Vert Q) = \frac1N \sum_{ik} p_{ik} \log(p_{ik} / q_{ik})` (``F.kl_div``'s ``batchmean``, as the code)."""
    q = checks.as_float_tensor(q, "q (soft assignments, N x K)", 2)
    p = checks.as_float_tensor(p, "p (target distribution, N x K)", 2)
    if p.shape != q.shape:
        raise ValueError(f"p and q must have the same shape; got {tuple(p.shape)} and {tuple(q.shape)}")
    return F.kl_div(q.log(), p, reduction="batchmean")


# ------------------------------------------------------------------------------------------------
# Training: DEC + neighbourhood contrast on digits, full batch
# ------------------------------------------------------------------------------------------------

@dataclass(repr=False)
class ClusterRun(Run):
    """One clustering run: ``history`` per epoch (loss, kl, pos, neg, ms), ``evals`` before training,
    every ``eval_every`` epochs and after the last one (iter, nmi, acc, empty), and the end state."""

    init: dict = field(default_factory=dict)         # NMI / accuracy of the k-means initialisation
    assign: np.ndarray | None = None                 # argmax q after training
    y: np.ndarray | None = None                      # class labels (evaluation only)
    z: np.ndarray | None = None                      # embeddings after training

    @property
    def nmi(self) -> float:
        """NMI at the final epoch (what we report; the official code reports the best epoch)."""
        return self.final("nmi")

    @property
    def best_nmi(self) -> float:
        """The largest NMI over the evaluated epochs after training began: the official code's
        optimistic number (it evaluates every epoch)."""
        return float(self.evals["nmi"][1:].max())

    @property
    def best_epoch(self) -> int:
        """The (evaluated) epoch of :attr:`best_nmi`."""
        return int(self.evals["iter"][1 + int(np.argmax(self.evals["nmi"][1:]))])

    def nmi_at(self, epoch: int, *, best: bool = False) -> float:
        """The NMI after ``epoch`` epochs (an evaluated epoch): what a run of ``epoch`` epochs would
        report at its end (training is full batch and deterministic, so a longer run passes through the
        same states).  ``best=True``: the best NMI over the evaluated epochs ``1 .. epoch``, as the
        official code reports it."""
        it = self.evals["iter"]
        if epoch not in it[1:]:
            raise ValueError(f"epoch {epoch} was not evaluated; evaluated epochs: {it[1:].tolist()}")
        upto = self.evals["nmi"][1:][it[1:] <= epoch]
        return float(upto.max() if best else upto[-1])

    def __repr__(self) -> str:
        return (f"ClusterRun({self.params['method']}, s={self.params['s']:.3g}, K={self.params['n_clusters']}, "
                f"{'random-walk' if self.params.get('walk', True) else 'binary'} pull, "
                f"{self.params['epochs']} epochs: final NMI {self.nmi:.3f}, best {self.best_nmi:.3f}, "
                f"ACC {self.final('acc'):.3f})")


def encoder(in_dim: int = 64, hidden: int = 256, n_z: int = 10) -> nn.Sequential:
    """The miniature of PamC's MLP encoder: ``in_dim -> hidden -> hidden -> n_z`` (ReLU), raw outputs
    (the loss takes cosines itself, DEC uses Euclidean distances)."""
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, n_z))


def digits_graph(k: int = 5, r: int = R, walk: bool = True, nodes: int = 1797) -> tuple[torch.Tensor, ...]:
    """The first ``nodes`` of the 1797 digits (the training split of :func:`lossviz.data.digits`, then the
    test split: ``nodes=898`` is the stratified training split), their labels, and the edges and edge
    weights of :func:`knn_graph` on their pixels (cached): ``(x, y, edges, weights)``."""
    from .. import data

    nodes = checks.integer(nodes, "nodes", k + 1, 1797)

    def build():
        split = data.load("digits")
        x = torch.cat([split.x_train, split.x_test])[:nodes]
        y = torch.cat([split.y_train, split.y_test])[:nodes]
        return (x, y, *knn_graph(x, k=k, r=r, walk=walk))

    return memo("digits_graph", dict(k=k, r=r, walk=bool(walk), nodes=nodes), build)


def train_clustering(method: str = "pamc", *, s: float = SCALE, n_clusters: int = 10, r: int = R, k: int = 5,
                     walk: bool = True, nodes: int = 1797, alpha: float = ALPHA, beta: float = BETA,
                     epochs: int = 100, lr: float = 1e-3, seed: int = 0, eval_every: int = 5, progress=True,
                     cache: bool = True) -> ClusterRun:
    """PamC's training, in miniature, on the first ``nodes`` digits (:func:`digits_graph`; all 1797 by
    default, 898 = the training split): full batch, Adam, one step per epoch.

    ``L = beta KL(P || Q) + alpha (L+ + L-)`` with the negative term ``L-`` chosen by ``method``:
    ``"nc"`` (:func:`negative_term`, O(N^2)), ``"pamc"`` (:func:`pamc_negative_term`) or ``"approx"``
    (:func:`approx_negative_term`), all at the inverse temperature ``s`` (the paper's τ);
    meta-nodes come from ``argmax q`` (detached).  The positive term runs over :func:`digits_graph`:
    random-walk weights ``P^r`` (``walk=True``, the official code) or the binary pattern of ``A^r``
    (``walk=False``).  The DEC centres start from a seeded
    :func:`lossviz.cluster.kmeans` of the untrained encoder's embeddings (no pretrained autoencoder).
    Before training, every ``eval_every`` epochs and after the last one we record in ``evals`` the NMI
    and accuracy of ``argmax q`` (labels are used only here) and the number of empty clusters; every
    epoch, in ``history``, the loss, its terms and the step's time in ms.
    """
    checks.choice(method, "method", METHODS)
    s = checks.positive(s, _SCALE)
    n_clusters = checks.integer(n_clusters, "n_clusters", 2)
    epochs = checks.integer(epochs, "epochs", 1)
    r = checks.integer(r, "r (the adjacency power)", 1)
    k = checks.integer(k, "k (neighbours)", 1)
    alpha = checks.non_negative(alpha, "alpha (weight of the contrastive loss)")
    beta = checks.non_negative(beta, "beta (weight of the clustering KL)")
    lr = checks.positive(lr, "lr")
    eval_every = checks.integer(eval_every, "eval_every", 1)
    nodes = checks.integer(nodes, "nodes", k + 1, 1797)
    params = dict(method=method, s=s, n_clusters=n_clusters, r=r, k=k, walk=bool(walk), nodes=nodes, alpha=alpha,
                  beta=beta, epochs=epochs, lr=lr, seed=int(seed), eval_every=eval_every)
    return memo("pamc_clustering", params, lambda: _train(params, progress), cache=cache)


def _negative(method: str, z: torch.Tensor, assign: torch.Tensor, s: float) -> torch.Tensor:
    """The negative term ``method`` names (:data:`METHODS`) on embeddings ``z``, meta-nodes from ``assign``."""
    if method == "nc":
        return negative_term(z, s=s)
    return (pamc_negative_term if method == "pamc" else approx_negative_term)(z, assign, s=s)


def _train(params: dict, progress) -> ClusterRun:
    x, y, edges, weights = digits_graph(params["k"], params["r"], params["walk"], params["nodes"])
    y_np = y.numpy()
    method, s, K = params["method"], params["s"], params["n_clusters"]
    state = {}

    def build() -> tuple[nn.Module, nn.Parameter]:
        model = encoder(x.shape[1])
        with torch.no_grad():               # the DEC centres start from a k-means of the untrained encoder
            state["assign0"], mu0 = kmeans(model(x), K, seed=params["seed"])
        return model, nn.Parameter(mu0.clone())

    trainer = Trainer(build, lr=params["lr"], seed=params["seed"])
    model, mu = trainer.model

    def step(it: int) -> dict:
        t0 = time.perf_counter()
        z = model(x)
        q = soft_assign(z, mu)
        kl = kl_clustering_loss(q, target_distribution(q))
        neg = _negative(method, z, q.detach().argmax(1), s)
        pos = positive_term(z, edges, weights, s=s)
        loss = params["beta"] * kl + params["alpha"] * (pos + neg)
        trainer.update(loss)
        return {"loss": loss.detach(), "kl": kl.detach(), "pos": pos.detach(), "neg": neg.detach(),
                "ms": 1e3 * (time.perf_counter() - t0)}

    def evaluate() -> dict:
        state["assign"] = soft_assign(model(x), mu).argmax(1).numpy()
        return cluster_scores(y_np, state["assign"]) | {"empty": K - len(np.unique(state["assign"]))}

    history, evals, seconds = trainer.run(step, params["epochs"], evaluate=evaluate, eval_every=params["eval_every"],
                                          desc=f"{method} s={s:.3g} K={K}", progress=progress)
    with torch.no_grad():
        z = model(x).numpy()
    return ClusterRun(params=params, history=history, evals=evals, seconds=seconds,
                      init=cluster_scores(y_np, state["assign0"].numpy()), assign=state["assign"], y=y_np, z=z)


# ------------------------------------------------------------------------------------------------
# Cost of the negative term: time and memory against N
# ------------------------------------------------------------------------------------------------

def blobs(n: int, *, centers: int = 10, dim: int = 10, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` points of a Gaussian mixture (scikit-learn's ``make_blobs``, generated offline) and their
    component labels: stand-in node embeddings for the scaling curve."""
    from sklearn.datasets import make_blobs

    n = checks.integer(n, "n", 2)
    x, y = make_blobs(n_samples=n, centers=centers, n_features=dim, random_state=seed)
    return torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y)


def saved_elements(fn, *args, **kwargs) -> int:
    """How many tensor elements the autograd graph of ``fn(*args, **kwargs)`` keeps for its backward
    pass (``torch.autograd.graph.saved_tensors_hooks``; each stored tensor counted once): the memory a
    training step holds between forward and backward, measured without timing."""
    seen: dict = {}

    def pack(t):
        seen[(t.data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()))] = t.numel()
        return t

    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(*args, **kwargs)
    return int(sum(seen.values()))


def _fwd_bwd_seconds(fn, z: torch.Tensor, repeats: int) -> float:
    best = math.inf
    for _ in range(repeats):
        leaf = z.detach().clone().requires_grad_(True)
        t0 = time.perf_counter()
        fn(leaf).backward()
        best = min(best, time.perf_counter() - t0)
    return best


def cost_curve(ns=(500, 1000, 2000, 4000), *, n_clusters: int = 10, dim: int = 10, s: float = SCALE,
               repeats: int = 3, seed: int = 0) -> dict:
    """Cost of the negative term (forward + backward) on ``blobs(n)`` for each n: node-level
    (:func:`negative_term`) and meta-node (:func:`pamc_negative_term`, assignment by a seeded
    :func:`lossviz.cluster.kmeans` done beforehand, as PamC's argmax q is).  Returns arrays ``n``, ``node_s``,
    ``meta_s`` (best of ``repeats`` wall-clock seconds, machine-dependent) and ``node_saved``,
    ``meta_saved`` (elements kept for backward, :func:`saved_elements`: exact and repeatable)."""
    repeats = checks.integer(repeats, "repeats", 1)
    out = {key: [] for key in ("n", "node_s", "meta_s", "node_saved", "meta_saved")}
    for n in ns:
        z, _ = blobs(n, centers=n_clusters, dim=dim, seed=seed)
        assign, _ = kmeans(z, n_clusters, seed=seed)
        node = functools.partial(negative_term, s=s)
        meta = functools.partial(pamc_negative_term, assign=assign, s=s)
        with checks.validation(False):
            out["node_s"].append(_fwd_bwd_seconds(node, z, repeats))
            out["meta_s"].append(_fwd_bwd_seconds(meta, z, repeats))
            out["node_saved"].append(saved_elements(node, z.clone().requires_grad_(True)))
            out["meta_saved"].append(saved_elements(meta, z.clone().requires_grad_(True)))
        out["n"].append(n)
    return {key: np.asarray(v) for key, v in out.items()}


def loglog_slope(x, y) -> float:
    """Least-squares slope of ``log y`` against ``log x`` (the exponent of a power law)."""
    return float(np.polyfit(np.log(np.asarray(x, float)), np.log(np.asarray(y, float)), 1)[0])


# ------------------------------------------------------------------------------------------------
# Pictures and panels
# ------------------------------------------------------------------------------------------------

def _heat(ax, M, order, bounds, title: str):
    """A similarity heat-map (rows and columns in ``order``), cluster boundaries as thin white lines,
    one colour bar."""
    M = M.detach().cpu().double().numpy()[np.ix_(order, order)]
    im = ax.imshow(M, cmap=plots.SIM_CMAP, vmin=-1, vmax=1)
    for b in bounds:
        ax.axhline(b - 0.5, color="w", lw=0.6)
        ax.axvline(b - 0.5, color="w", lw=0.6)
    ax.set_title(title)
    ax.grid(False)
    return im


def block_view(axes, z, assign) -> dict:
    """Three heat-maps on ``axes`` (3 axes): the node cosines sorted by cluster, the block similarity
    that replaces them (each pair of nodes gets its meta-nodes' cosine), and the K x K meta-node
    cosines.  Returns ``{"S", "S_block", "C"}``."""
    z = _embeddings(z).detach()
    S = similarity(z)
    S_block = block_similarity(z, assign)
    c, sizes, cluster = meta_nodes(z, assign)
    C = similarity(c)
    order = plots.class_order(cluster)
    bounds = np.cumsum(sizes.numpy())[:-1]
    n, K = len(S), len(C)
    _heat(axes[0], S, order, bounds, f"node cosines ({n} × {n})")
    _heat(axes[1], S_block + torch.eye(n, dtype=S.dtype), order, bounds, "each pair → its meta-nodes' cosine")
    im = _heat(axes[2], C, np.arange(K), [], f"meta-node cosines ({K} × {K})")
    for ax in axes[:2]:
        ax.set(xlabel="node k (sorted by cluster)", ylabel="node i")
    axes[2].set(xlabel="meta-node l'", ylabel="meta-node l")
    axes[2].figure.colorbar(im, ax=list(axes), shrink=0.8, label="cosine")
    return {"S": S, "S_block": S_block, "C": C}


def anchor_shares_view(ax, z, assign, anchor: int, *, s: float = SCALE) -> dict:
    """One node's share of the push per negative (:func:`push_shares`) against its cosine with that
    negative: exact (dots) and size-weighted meta-node approximation (crosses, one level per meta-node),
    coloured by cluster.  The anchor's own cluster-mates (grey squares) sit at the meta-node's cosine
    with itself, 1: the largest share, but a constant, so they are never pushed."""
    return _shares_view(ax)(z, assign, anchor, s=s)


def _shares_view(ax):
    """The artists of :func:`anchor_shares_view`, made once; returns ``update(z, assign, anchor, *, s,
    key=None) -> dict``, which moves them in place.  With ``key`` (a name for ``assign``, e.g. its K)
    the N x N shares are kept per ``(key, s)``: a panel then answers an anchor change from them."""
    none = np.zeros(0)
    exact_pts = ax.scatter(none, none, s=9, alpha=0.7, label="exact: one share per negative")
    meta_pts = ax.scatter(none, none, s=22, marker="x", lw=0.9, label="meta-nodes: one share per meta-node")
    mates_pts = ax.scatter(none, none, s=22, marker="s", facecolors="none", edgecolors=plots.MUTED,
                           label="meta-nodes: own cluster (constant, no push)")
    uniform = ax.axhline(1.0, color=plots.MUTED, ls="--", lw=1, label="uniform share")
    ax.set(yscale="log", ylabel="share of the push $r_{ik}$")
    kept: dict = {}

    def shares(z, assign, s, key):
        if key is None:
            return push_shares(z, assign, s=s)
        if (key, s) not in kept:
            kept[key, s] = push_shares(z, assign, s=s)
        return kept[key, s]

    def update(z, assign, anchor: int, *, s: float = SCALE, key=None) -> dict:
        z = _embeddings(z).detach()
        cos = similarity(z)[anchor]
        exact = shares(z, None, s, None if key is None else "exact")[anchor]
        approx = shares(z, assign, s, key)[anchor]
        cluster = torch.unique(torch.as_tensor(assign), return_inverse=True)[1].cpu()
        others = torch.arange(len(cos)) != anchor
        mates = others & (cluster == cluster[anchor])
        rest = others & ~mates
        colors = plots.mpl.colormaps["tab20"](cluster.numpy() % 20)
        exact_pts.set_offsets(np.column_stack([cos[others].numpy(), exact[others].numpy()]))
        exact_pts.set_color(colors[others.numpy()])
        meta_pts.set_offsets(np.column_stack([cos[rest].numpy(), approx[rest].numpy()]))
        meta_pts.set_color(colors[rest.numpy()])
        mates_pts.set_offsets(np.column_stack([cos[mates].numpy(), approx[mates].numpy()]))
        uniform.set_ydata([1 / int(others.sum())] * 2)
        ax.set(xlabel=f"cosine of node {anchor} with negative k", title=f"node {anchor}: push per negative, s = {s:.3g}")
        ax.relim()
        ax.autoscale_view()
        legend = ax.get_legend() or ax.legend(loc="upper left", fontsize=9)
        for handle, shown in zip(legend.legend_handles, (others, rest)):   # each swatch: its first point's colour
            if bool(shown.any()):
                handle.set_color(colors[shown.numpy()][0])
        return {"exact": exact, "approx": approx, "mates": mates}

    return update


def kmeans_sweep(z, ks, *, seed: int = 0) -> dict:
    """``{K: assign}`` for each K in ``ks``: seeded :func:`lossviz.cluster.kmeans` on the L2-normalised
    rows of ``z`` (the loss sees directions only); ``K = N`` gives every node its own meta-node."""
    z = _embeddings(z).detach()
    n = z.shape[0]
    out = {}
    for k in ks:
        k = checks.integer(k, "each K in ks", 1)
        out[k] = torch.arange(n, device=z.device) if k == n else kmeans(F.normalize(z, dim=1), k, seed=seed)[0]
    return out


def _terms_by_k(z: torch.Tensor, clusters: dict, ks: tuple, s: float) -> tuple[float, np.ndarray, np.ndarray]:
    """The exact negative term, and the size-weighted and PamC terms for the assignment of each K in ``ks``."""
    with torch.no_grad():
        exact = float(negative_term(z, s=s))
        approx = [float(approx_negative_term(z, clusters[k], s=s)) for k in ks]
        pamc = [float(pamc_negative_term(z, clusters[k], s=s)) for k in ks]
    return exact, np.asarray(approx), np.asarray(pamc)


def _terms_view(ax, ks: tuple):
    """The three negative terms of :func:`_terms_by_k` against K (log axis), made once; returns
    ``update(i, terms, *, title)``, which moves the curves and rings the ``i``-th K."""
    exact_line = ax.axhline(0.0, color="k", lw=2, label="exact (N² pairs)")
    (approx_line,) = ax.plot(ks, np.zeros(len(ks)), marker="o", color=METHOD_COLORS["approx"],
                             label="size-weighted meta-nodes")
    (pamc_line,) = ax.plot(ks, np.zeros(len(ks)), marker="s", color=METHOD_COLORS["pamc"],
                           label="PamC (each meta-node once)")
    ring = ax.scatter([ks[0], ks[0]], [0.0, 0.0], s=120, facecolors="none", edgecolors="k", zorder=4)
    ax.set(xscale="log", xlabel="K, the number of meta-nodes (log scale)", ylabel="negative term $L^-$")
    ax.legend(loc="best", fontsize=9)

    def update(i: int, terms: tuple, *, title: str) -> None:
        exact, approx, pamc = terms
        exact_line.set_ydata([exact, exact])
        approx_line.set_ydata(approx)
        pamc_line.set_ydata(pamc)
        ring.set_offsets([[ks[i], approx[i]], [ks[i], pamc[i]]])
        ax.relim()
        ax.autoscale_view()
        ax.set_title(title)

    return update


def approximation_panel(z, *, ks=(2, 5, 10, 20, 40, 80, 160), clusters: dict | None = None, s: float = SCALE,
                        anchor: int = 0, seed: int = 0):
    """Pure maths on fixed embeddings ``z``: move the number of meta-nodes K, the inverse temperature
    ``s`` (= 1/T) and the anchor.  Left: exact, size-weighted and PamC negative terms against K (K = N added at
    the end, where both are exact).  Middle: the anchor's share of the push per negative, exact and
    approximated.  Right: the K x K meta-node cosines.  ``clusters`` (``{K: assign}``, e.g. from
    :func:`kmeans_sweep`) is computed once here when not given.  The artists are made once and updated
    in place."""
    import ipywidgets as W

    from .. import widgets

    z = _embeddings(z).detach()
    n = z.shape[0]
    if clusters is None:
        ks = tuple(sorted({checks.integer(k, "each K in ks", 1) for k in ks if k < n} | {n}))
        clusters = kmeans_sweep(z, ks, seed=seed)
    clusters = dict(clusters)
    clusters.setdefault(n, torch.arange(n, device=z.device))    # K = N, where both terms are exact
    ks = tuple(sorted(clusters))
    style = dict(continuous_update=False, style={"description_width": "initial"})
    controls = {
        "K": W.SelectionSlider(options=list(ks), value=ks[len(ks) // 2], description="K (meta-nodes)", **style),
        "s": W.FloatLogSlider(value=s, base=10, min=math.log10(0.5), max=math.log10(20), step=0.05,
                                description="s = 1/T (× cosine)", readout_format=".3g", **style),
        "anchor": W.IntSlider(value=anchor, min=0, max=n - 1, description="anchor node", **style),
    }
    fig, axes = plots.new_figure(3, width=4.7, height=3.9)
    show_terms = _terms_view(axes[0, 0], ks)
    show_shares = _shares_view(axes[0, 1])
    image = axes[0, 2].imshow(np.eye(2), cmap=plots.SIM_CMAP, vmin=-1, vmax=1)
    axes[0, 2].grid(False)
    axes[0, 2].set(xlabel="meta-node l'", ylabel="meta-node l")
    fig.colorbar(image, ax=axes[0, 2], shrink=0.8, label="cosine")
    cache: dict = {}          # the three terms for every K, per s: K moves often, s rarely

    def draw(v):
        K, t, a = v["K"], v["s"], v["anchor"]
        if t not in cache:
            cache[t] = _terms_by_k(z, clusters, ks, t)
        exact, approx, pamc = cache[t]
        i = ks.index(K)
        show_terms(i, cache[t], title=f"N = {n} nodes, s = {t:.3g}")
        shares = show_shares(z, clusters[K], a, s=t, key=K)
        c, _, _ = meta_nodes(z, clusters[K])
        C = similarity(c)
        image.set_data(C.numpy())
        image.set_extent((-0.5, len(C) - 0.5, len(C) - 0.5, -0.5))
        axes[0, 2].set_title(f"the {len(C)} × {len(C)} meta-node cosines")
        err = abs(approx[i] - exact)
        cost = (f"the approximation costs {len(C)}² instead of {n}² pairs" if len(C) < n
                else f"at K = N every node is its own meta-node: the exact sum, {n}² pairs")
        return {"exact": exact, "approx": approx[i], "pamc": pamc[i], "error": err, "shares": shares,
                "status": f"K = {K}: exact {exact:.4f}, size-weighted {approx[i]:.4f} (error {err:.1e}), "
                          f"PamC {pamc[i]:.4f}; {cost}"}

    return widgets.Panel(controls, fig, draw)


def cost_view(axes, cost: dict) -> None:
    """Two log-log plots of :func:`cost_curve`: time (left) and memory kept for backward (right) of the
    node-level and the meta-node negative terms against N."""
    n = cost["n"]
    for ax, key, label, title in ((axes[0], "_s", "seconds (forward + backward)", "time of the negative term"),
                                  (axes[1], "_saved", "elements kept for backward", "memory of the negative term")):
        ax.plot(n, cost["node" + key], marker="o", color=METHOD_COLORS["nc"], label="node-level ($N^2$ pairs)")
        ax.plot(n, cost["meta" + key], marker="s", color=METHOD_COLORS["pamc"], label="meta-nodes ($K^2$ pairs)")
        ax.set(xscale="log", yscale="log", xlabel="N, nodes (log scale)", ylabel=label, title=title)
        ax.set_xticks(n, [str(v) for v in n])
        ax.minorticks_off()
    axes[1].legend(loc="center right", fontsize=9)


def draw_run(axes, run: ClusterRun, *, reference_runs: dict | None = None) -> dict:
    """Learning curves of a clustering run on 3 axes: NMI per evaluated epoch, from the start (final
    epoch marked, the best one ringed), the loss, and the cluster sizes at the end.  ``reference_runs``: runs to draw faintly for comparison."""
    h = run.history
    ax = axes[0]
    for name, other in (reference_runs or {}).items():
        ax.plot(other.evals["iter"], other.evals["nmi"], color=METHOD_COLORS[other.params["method"]],
                lw=1, alpha=0.45, label=f"{name} (final {other.nmi:.3f})")
    color = METHOD_COLORS[run.params["method"]]
    ax.plot(run.evals["iter"], run.evals["nmi"], color=color, lw=2, label=f"{METHOD_NAMES[run.params['method']]}")
    ax.scatter([run.evals["iter"][-1]], [run.nmi], color=color, s=60, zorder=4, label=f"final epoch: {run.nmi:.3f}")
    ax.scatter([run.best_epoch], [run.best_nmi], facecolors="none", edgecolors=color, s=110, zorder=4,
               label=f"best epoch (code reports it): {run.best_nmi:.3f}")
    ax.set(xlabel="epoch (one full-batch step)", ylabel="NMI of argmax q", title="clustering quality")
    ax.legend(loc="lower right", fontsize=9)
    ax = axes[1]
    ax.plot(h["iter"], h["loss"], color=color, lw=2, label="total")
    ax.plot(h["iter"], h["pos"], color=plots.POS_COLOR, lw=1, label="positive term $L^+$")
    ax.plot(h["iter"], h["neg"], color=plots.NEG_COLOR, lw=1, label="negative term $L^-$")
    ax.set(xlabel="epoch", ylabel="loss", title="training loss")
    ax.legend(loc="best", fontsize=9)
    ax = axes[2]
    sizes = np.bincount(run.assign, minlength=run.params["n_clusters"])
    ax.bar(np.arange(len(sizes)), sizes, color=color)
    ax.set(xlabel="cluster (argmax q)", ylabel="nodes", title=f"cluster sizes ({int((sizes == 0).sum())} empty)")
    return {"nmi": run.nmi, "best_nmi": run.best_nmi}


def training_panel(*, reference_runs: dict | None = None, autorun: bool = True, **defaults):
    """A Train button over :func:`train_clustering`: method, s, K, r, the pull's weights, epochs, seed
    (``nodes`` is fixed by the defaults: the graph the notebook trains on).  Draws the run's
    NMI per epoch (final epoch marked, best ringed), its loss and cluster sizes; ``reference_runs`` (name ->
    run) are drawn faintly on the NMI plot."""
    import ipywidgets as W

    from .. import widgets

    d = dict(method="pamc", s=SCALE, n_clusters=10, r=R, walk=True, nodes=1797, epochs=100, seed=0) | defaults
    style = dict(continuous_update=False, style={"description_width": "initial"})
    controls = {
        "method": W.Dropdown(options=[(METHOD_NAMES[m], m) for m in METHODS], value=d["method"],
                             description="negative term", style={"description_width": "initial"}),
        "s": W.FloatLogSlider(value=d["s"], base=10, min=math.log10(0.5), max=math.log10(5), step=0.05,
                                description="s = 1/T (× cosine)", readout_format=".3g", **style),
        "n_clusters": W.IntSlider(value=d["n_clusters"], min=5, max=40, step=1, description="K (clusters)", **style),
        "r": W.IntSlider(value=d["r"], min=1, max=3, description="r (adjacency power)", **style),
        "walk": W.Dropdown(options=[("random-walk weights (code)", True), ("binary A^r", False)], value=d["walk"],
                           description="pull", style={"description_width": "initial"}),
        "epochs": W.IntSlider(value=d["epochs"], min=20, max=200, step=10, description="epochs", **style),
        "seed": W.BoundedIntText(value=d["seed"], min=0, max=99, description="seed", layout=W.Layout(width="140px")),
    }

    def run(values, progress):
        return train_clustering(values["method"], s=values["s"], n_clusters=values["n_clusters"], r=values["r"],
                                walk=values["walk"], nodes=d["nodes"], epochs=values["epochs"], seed=values["seed"],
                                progress=progress)

    def draw(axes, result, _values):
        state = draw_run(axes[0], result, reference_runs=reference_runs)
        state["status"] = f"{result!r} in {result.seconds:.1f} s"
        return state

    return widgets.run_panel(controls, run, draw, ncols=3, width=4.6, height=3.7, autorun=autorun)
