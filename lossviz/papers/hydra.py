r"""Contrastive learning on *arbitrary* class pairs with a gated feature filter (Hydra / SimLAP;
Wu et al., "Rethinking Positive Pairs in Contrastive Learning", arXiv 2410.18200, 2024).

Contrastive learning usually pairs two views of one image (or two images of one class).  Hydra
pairs an anchor of class ``y1`` with *all* samples of a partner class ``y2`` drawn at random, a
garter snake with a table lamp, and lets a learned **gate** ``g(y1, y2) in (0, 1)^d`` choose the
feature dimensions in which that pair is compared.  The contrast only happens in the gated
subspace, so the pair can agree there and disagree everywhere else.

* :func:`partner_labels`: the partner class of each anchor (``arbitrary`` / ``identical`` / ``distinct``);
* :class:`FeatureGate`: the gate, a class embedding ``E`` and an MLP (sigmoid or Gumbel);
* :func:`gated_similarity`: the gated similarity matrix ``S^g`` (anchors x keys);
* :func:`hydra_masks`, :func:`hydra_loss`: the multi-positive InfoNCE over ``S^g``, a function of the
  similarity matrix like every loss of lossviz, so :func:`lossviz.pair_weights` gives its weights;
* :func:`train_hydra`: a real run on the digits two-view kit (:mod:`lossviz.papers.contrastive_temperature`'s network),
  on :class:`lossviz.train.Trainer` and cached with :func:`lossviz.train.memo`; its dimensional collapse
  is measured with :func:`lossviz.metrics.effective_rank` (exp of the entropy of the normalised singular values);
* :func:`class_pair_alignment`: the subspace mechanism measured on test embeddings;
* :func:`gate_panel` (pure maths) and :func:`training_panel` (a Train button).

The official code is erow/FastSSL, ``model/simlap.py`` (no licence was seen; a related README says
CC BY-NC 4.0), so lossviz re-implements it from the equations.  We follow FastSSL where its two
published versions differ (see :func:`gated_similarity`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import checks
from ..metrics import effective_rank, singular_spectrum
from ..similarity import masked_logsumexp, upcast
from ..train import Run, Trainer, memo

#: How the partner class ``y2`` of each anchor is drawn.
MODES = ("arbitrary", "identical", "distinct")
#: The gates: a sigmoid of the MLP's logits (FastSSL's ``BasicGate``), its Gumbel relaxation
#: (``GumbelGates``), or always open (``OpenGate``: ``g = 1``, the no-gate baseline).
GATES = ("sigmoid", "gumbel", "open")


# ------------------------------------------------------------------------------------------------
# Labels and masks
# ------------------------------------------------------------------------------------------------

def _labels(labels, n: int | None = None, name: str = "labels") -> torch.Tensor:
    """Integer class ids, 1-D (of length ``n`` if given), or a ValueError that names ``name``."""
    if not isinstance(labels, torch.Tensor):
        try:
            labels = torch.as_tensor(labels)
        except Exception as err:  # noqa: BLE001 - any conversion failure becomes one clear message
            raise ValueError(f"{name} must be a 1-D tensor of integer class ids; got {type(labels).__name__}") from err
    if labels.dtype == torch.bool or labels.is_floating_point() or labels.is_complex():
        raise ValueError(f"{name} must hold integer class ids; got dtype {labels.dtype}. Use {name}.long().")
    if labels.ndim != 1 or (n is not None and labels.shape[0] != n):
        want = f"({n},)" if n is not None else "(B,)"
        raise ValueError(f"{name} must have shape {want}, one class id per sample; got {tuple(labels.shape)}")
    return labels


def partner_labels(labels, mode: str = "arbitrary", *, num_classes: int | None = None,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    r"""The partner class ``y2`` of each anchor, whose samples are the anchor's positives.

    * ``arbitrary`` (the paper's default): ``y2 = y1[randperm(B)]``, another anchor's class, so a
      partner is the same class only by chance (about 1 in C);
    * ``identical``: ``y2 = y1``, ordinary supervised contrast;
    * ``distinct``: ``y2 = (y1 + U{1..C-1}) mod C``, never the same class (needs ``num_classes``).
    """
    y1 = _labels(labels)
    checks.choice(mode, "pair mode", MODES)
    if mode == "identical":
        return y1.clone()
    if mode == "arbitrary":
        return y1[torch.randperm(len(y1), generator=generator).to(y1.device)]
    num_classes = checks.integer(num_classes, "num_classes (mode 'distinct' needs it)", 2)
    if checks.validation_enabled() and len(y1) and not bool(((y1 >= 0) & (y1 < num_classes)).all()):
        raise ValueError(f"labels must be class ids in [0, {num_classes}) for mode 'distinct'")
    shift = torch.randint(1, num_classes, (len(y1),), generator=generator).to(y1.device)
    return (y1 + shift) % num_classes


def hydra_masks(labels, partner, key_labels=None) -> tuple[torch.Tensor, torch.Tensor]:
    r"""``(pos, allowed)``, both A x N boolean: anchor i's positives and its allowed negatives.

    .. math::
        P_i = \{j : y_j = y2_i\}, \qquad E_i = \{j : y_j \in \{y1_i, y2_i\}\}, \qquad
        \text{allowed}_i = \text{complement of } E_i

    ``labels`` are the anchors' classes ``y1`` (A,), ``partner`` their partner classes ``y2`` (A,),
    ``key_labels`` the keys' classes (N,; default ``labels``: the keys are the second views of the
    anchors).  Neither the anchor's own class nor its partner class is ever a negative: the partner
    class holds the positives, and the own class (which holds the anchor's other view) is neither
    pulled nor pushed unless it *is* the partner class.  No index is excluded: rows and columns are
    different views, so ``S_ii`` is the anchor against its *other* view.
    """
    y1 = _labels(labels)
    y2 = _labels(partner, len(y1), "partner")
    yk = y1 if key_labels is None else _labels(key_labels, None, "key_labels")
    pos = y2[:, None] == yk[None, :]
    excluded = pos | (y1[:, None] == yk[None, :])
    return pos, ~excluded


# ------------------------------------------------------------------------------------------------
# The loss
# ------------------------------------------------------------------------------------------------

def hydra_loss(S, labels, *, partner, tau: float = 0.1, key_labels=None) -> torch.Tensor:
    r"""Hydra's multi-positive InfoNCE on a gated similarity matrix ``S`` (A anchors x N keys).

    .. math::
        \ell_{ij} = S_{ij} / \tau, \qquad
        L = \frac{1}{|A|} \sum_{i \in A} \frac{1}{|P_i|} \sum_{j \in P_i}
            \Big[ \log\Big( e^{\ell_{ij}} + \sum_{k \notin E_i} e^{\ell_{ik}} \Big) - \ell_{ij} \Big]

    with the masks of :func:`hydra_masks` and ``A`` the anchors that have at least one positive
    (with ``key_labels=None`` that is every anchor).  As in the official FastSSL code, each anchor's
    positives are averaged first (``.sum(1) / pos.sum(1)``), then the anchors: every anchor counts
    once, however large its partner class is in the batch.  Each positive has its own denominator
    (the anchor's other positives are not in it): it is NT-Xent (:func:`lossviz.nt_xent_loss`) with
    Hydra's masks.  ``S`` is the gated
    similarity :func:`gated_similarity` (the gate lives in ``S``, the loss never sees it), and
    ``1/tau`` is FastSSL's scale ``s`` (learnable there, initialised to 10).

    FastSSL subtracts each row's (detached) mean from ``ell`` before ``exp`` for stability; the
    loss is invariant to a per-row shift, so with log-sum-exp we need no such trick, and its value
    and gradient are the same with or without it (detached or not: the test suite checks this).

    Pair weights (``|dL/dS|``, before anchor i's factor ``1 / (tau |A| |P_i|)``): for positive (i, j)
    let ``q`` be the softmax of ``ell_i.`` over ``{j}`` and the allowed negatives; the positive gets
    ``1 - q_j`` and allowed negative k gets ``sum_{j in P_i} q_k``.  Excluded keys get exactly 0.
    """
    S = checks.as_float_tensor(S, "S (the gated similarities, anchors x keys)", 2)
    if key_labels is None and S.shape[0] != S.shape[1]:
        raise ValueError(f"S is {tuple(S.shape)}, not square: pass key_labels=, the classes of its "
                         f"{S.shape[1]} columns")
    y1 = _labels(labels, S.shape[0])
    if key_labels is not None:
        _labels(key_labels, S.shape[1], "key_labels")
    pos, allowed = hydra_masks(y1, partner, key_labels)
    if checks.validation_enabled() and not bool(pos.any()):
        raise ValueError("no anchor has a positive: no key belongs to any partner class; draw the partner "
                         "classes from the batch's own classes (partner_labels)")
    tau = checks.temperature(tau)
    ell = upcast(S) / tau
    lse_neg = masked_logsumexp(ell, allowed, keepdim=True)    # log sum_{k not in E_i} e^{ell_ik}; -inf if none ...
    terms = torch.logaddexp(ell, lse_neg) - ell               # ... and then the term is exactly 0
    n_pos = pos.sum(1)                                         # |P_i|
    has = n_pos > 0                                            # anchors with a positive
    per_anchor = torch.where(pos, terms, 0.0).sum(1) / n_pos.clamp(min=1)   # mean over P_i, as FastSSL
    return per_anchor[has].sum() / has.sum().clamp(min=1)      # ... then over the anchors


def gated_similarity(z1, z2, gate, *, renormalize: bool = False) -> torch.Tensor:
    r"""The gated similarity ``S^g`` of anchors ``z1`` (A x d) and keys ``z2`` (N x d); ``gate`` (A x d)
    holds anchor i's gate ``g_i = g(y1_i, y2_i)`` (or a single d-vector for every row).

    FastSSL (the default, and what we follow): ``z`` unit vectors, the gate applied *twice* to the
    anchor and never renormalised,

    .. math::  S^g_{ij} = \langle \hat z1_i \odot g_i \odot g_i,\ \hat z2_j \rangle
                        = \sum_k g_{ik}^2\, \hat z1_{ik}\, \hat z2_{jk}

    so a closed dimension (``g_k = 0``) simply drops out of the sum and ``|S^g| <= 1``.  The
    vitookit variant (``renormalize=True``) is the cosine of the two gated vectors,
    ``cos(g_i ⊙ z1_i, g_i ⊙ z2_j)``, which rescales whatever subspace is open back to the unit sphere.
    With ``g = 1`` both are the plain cosine.  The subspace property: a closed dimension
    (``g_k = 0``) drops out of the sum.  In vitookit's form it passes no gradient at all; in
    FastSSL's, ``z`` is normalised *before* the gate, so a closed dimension still counts in the
    norm of ``ẑ`` and passes gradient through it alone.
    """
    z1 = checks.as_float_tensor(z1, "z1 (anchor embeddings, A x d)", 2)
    z2 = checks.as_float_tensor(z2, "z2 (key embeddings, N x d)", 2)
    g = checks.as_float_tensor(gate, "gate", gate.ndim if isinstance(gate, torch.Tensor) else np.ndim(gate))
    if z1.shape[1] != z2.shape[1]:
        raise ValueError(f"z1 and z2 must have the same dimension d; got {z1.shape[1]} and {z2.shape[1]}")
    if g.ndim == 1 and g.shape[0] == z1.shape[1]:
        g = g.expand_as(z1)
    if g.shape != z1.shape:
        raise ValueError(f"gate must be a d-vector or one gate per anchor, shape {tuple(z1.shape)}; "
                         f"got {tuple(g.shape)}")
    if checks.validation_enabled() and bool(((g < 0) | (g > 1)).any()):
        raise ValueError("gate values must lie in [0, 1] (a gate opens or closes a feature dimension)")
    z1, z2 = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    if not renormalize:
        return (z1 * g * g) @ z2.T
    u = F.normalize(z1 * g, dim=1)                                # (A, d)
    v = F.normalize(z2[None, :, :] * g[:, None, :], dim=2)        # (A, N, d): each anchor's own gate
    return torch.einsum("ad,and->an", u, v)


# ------------------------------------------------------------------------------------------------
# The gate
# ------------------------------------------------------------------------------------------------

def gate_values(logits, kind: str = "sigmoid", *, gumbel_tau: float = 1.0,
                generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Gate values in (0, 1) from the gate's logits ``m`` (any shape).

    * ``sigmoid``: ``g = σ(m / tau_g)`` (``tau_g = 1``: FastSSL's ``BasicGate``);
    * ``gumbel``: ``g = σ((m + G) / tau_g)``, ``G ~ Gumbel(0, 1)`` drawn from ``generator``, as
      FastSSL's ``GumbelGates`` (a smaller ``tau_g`` pushes each value towards 0 or 1);
    * ``open``: ``g = 1``.
    """
    m = checks.as_float_tensor(logits, "logits (the gate's logits)", torch.as_tensor(logits).ndim)
    checks.choice(kind, "gate kind", GATES)
    tau_g = checks.positive(gumbel_tau, "gumbel_tau (the Gumbel temperature)")
    if kind == "open":
        return torch.ones_like(m)
    if kind == "gumbel":
        u = torch.rand(m.shape, generator=generator, dtype=m.dtype).to(m.device)
        m = m - torch.log(-torch.log(u + 1e-20) + 1e-20)             # + Gumbel(0, 1) noise
    return torch.sigmoid(m / tau_g)


class FeatureGate(nn.Module):
    r"""The feature filter ``g(y1, y2) in (0, 1)^d`` of one class pair.

    .. math::
        g = \sigma\big(\mathrm{MLP}((E[y1] + E[y2]) / 2)\big), \qquad
        \mathrm{MLP} = \mathrm{ReLU} \to \mathrm{BN} \to \mathrm{Linear}(e, m) \to \mathrm{ReLU}
                       \to \mathrm{BN} \to \mathrm{Linear}(m, d)

    with ``E`` a learned class embedding of size ``embed_dim`` (``e``, 512 in the paper) and
    ``m = mlp_dim`` (1024).  ``fuse=False``: ``g = σ(MLP(E[y1])) ⊙ σ(MLP(E[y2]))``.  With ``y2``
    omitted the gate of class ``y1`` alone.  ``fuse=True`` makes ``g`` symmetric in the pair.

    ``kind="gumbel"`` (FastSSL's ``GumbelGates``): in training, ``σ((logit + G) / tau_g)`` with ``G``
    Gumbel(0, 1) noise as in the official code (a binary-concrete relaxation would use logistic
    noise ``G1 - G2``; a single Gumbel has mean 0.577, which leans towards open); in eval mode the
    noise-free ``σ(logit / tau_g)``.  ``kind="open"``: ``g = 1`` (no gate).
    """

    def __init__(self, num_classes: int, dim: int, *, embed_dim: int = 512, mlp_dim: int = 1024,
                 fuse: bool = True, kind: str = "sigmoid", gumbel_tau: float = 1.0):
        super().__init__()
        checks.choice(kind, "gate kind", GATES)
        for name, value in (("num_classes", num_classes), ("dim", dim), ("embed_dim", embed_dim),
                            ("mlp_dim", mlp_dim)):
            checks.integer(value, name, 1)
        self.num_classes, self.dim, self.fuse, self.kind = num_classes, dim, fuse, kind
        self.gumbel_tau = checks.positive(gumbel_tau, "gumbel_tau (the Gumbel temperature)")
        self.embedding = nn.Embedding(num_classes, embed_dim)
        self.mlp = nn.Sequential(nn.ReLU(), nn.BatchNorm1d(embed_dim), nn.Linear(embed_dim, mlp_dim),
                                 nn.ReLU(), nn.BatchNorm1d(mlp_dim), nn.Linear(mlp_dim, dim))

    def _check(self, y, name):
        y = _labels(y, None, name)
        if checks.validation_enabled() and len(y) and not bool(((y >= 0) & (y < self.num_classes)).all()):
            raise ValueError(f"{name} must be class ids in [0, {self.num_classes})")
        return y

    def logits(self, y1, y2=None) -> torch.Tensor:
        """The MLP's output before the sigmoid, one row per pair (fused) or per class."""
        e = self.embedding(y1)
        if y2 is not None:
            e = (e + self.embedding(y2)) / 2
        return self.mlp(e)

    def forward(self, y1, y2=None, generator: torch.Generator | None = None) -> torch.Tensor:
        y1 = self._check(y1, "y1")
        if y2 is not None:
            y2 = self._check(y2, "y2")
            if y2.shape != y1.shape:
                raise ValueError(f"y1 and y2 must have the same shape; got {tuple(y1.shape)} and {tuple(y2.shape)}")
        if self.kind == "open":
            return torch.ones(len(y1), self.dim, device=y1.device)
        if y2 is not None and not self.fuse:
            return self._squash(self.logits(y1), generator) * self._squash(self.logits(y2), generator)
        return self._squash(self.logits(y1, y2), generator)

    def _squash(self, logit: torch.Tensor, generator) -> torch.Tensor:
        kind = "gumbel" if self.kind == "gumbel" and self.training else "sigmoid"
        tau_g = self.gumbel_tau if self.kind == "gumbel" else 1.0
        return gate_values(logit, kind, gumbel_tau=tau_g, generator=generator)

    @torch.no_grad()
    def table(self) -> torch.Tensor:
        """Every class pair's gate, C x C x d, in eval mode (BatchNorm's running statistics)."""
        was = self.training
        self.eval()
        c = torch.arange(self.num_classes, device=self.embedding.weight.device)
        a, b = c.repeat_interleave(self.num_classes), c.repeat(self.num_classes)
        out = self(a, b).reshape(self.num_classes, self.num_classes, self.dim)
        self.train(was)
        return out


# ------------------------------------------------------------------------------------------------
# The subspace mechanism, measured
# ------------------------------------------------------------------------------------------------

def class_pair_alignment(z, labels, gates, *, renormalize: bool = False) -> torch.Tensor:
    r"""``M[a, b, c]``: the mean gated similarity between class-a and class-c samples under the gate
    of pair (a, b), for every a, b, c (C x C x C).

    .. math::  M_{abc} = \mathbb E_{x \in a,\ x' \in c}\ S^{g_{ab}}(x, x')

    ``gates`` is :meth:`FeatureGate.table` (C x C x d) or ``None`` (no gate, ``g = 1``).  The gated
    similarity is bilinear in the (gated, normalised) vectors, so the mean over all pairs of two
    classes is the similarity of the class means: exact and cheap.  The subspace claim says that the
    gate of (a, b) makes b the most similar class to a: ``M[a, b, b] > M[a, b, c]`` for ``c ∉ {a, b}``.
    """
    z = F.normalize(checks.as_float_tensor(z, "z (embeddings, N x d)", 2).detach().double(), dim=1)
    y = _labels(labels, z.shape[0])
    classes = torch.unique(y)
    C, d = int(classes.max()) + 1, z.shape[1]
    if not torch.equal(classes, torch.arange(C, device=classes.device)):
        raise ValueError("labels must use every class id 0 .. C-1 at least once")
    g = torch.ones(C, C, d, dtype=z.dtype) if gates is None else torch.as_tensor(gates).to(z.dtype)
    if g.shape != (C, C, d):
        raise ValueError(f"gates must be C x C x d = {(C, C, d)} (FeatureGate.table()); got {tuple(g.shape)}")
    onehot = F.one_hot(y, C).to(z.dtype)
    counts = onehot.sum(0)[:, None]
    M = torch.empty(C, C, C, dtype=z.dtype)
    for a in range(C):
        for b in range(C):
            if renormalize:
                u = F.normalize(z * g[a, b], dim=1)
                left, right = u, u
            else:
                left, right = z * g[a, b] ** 2, z
            mean_l = onehot.T @ left / counts
            mean_r = onehot.T @ right / counts
            M[a, b] = mean_r @ mean_l[a]
    return M


def subspace_margin(M: torch.Tensor) -> torch.Tensor:
    """For every ordered pair a != b: ``M[a, b, b] - max_{c not in {a, b}} M[a, b, c]`` (C x C, NaN on
    the diagonal).  Positive: under its pair's gate, class a is closer to its partner b than to
    any third class."""
    C = M.shape[0]
    if M.shape != (C, C, C) or C < 3:
        raise ValueError(f"M must be C x C x C with C >= 3 (class_pair_alignment); got {tuple(M.shape)}")
    idx = torch.arange(C)
    third = torch.ones(C, C, C, dtype=torch.bool)
    third[idx, :, idx] = False                 # c = a
    third[:, idx, idx] = False                 # c = b
    partner = M[idx[:, None], idx[None, :], idx[None, :]]
    margin = partner - M.masked_fill(~third, -math.inf).amax(dim=2)
    return margin.masked_fill(torch.eye(C, dtype=torch.bool), math.nan)


# ------------------------------------------------------------------------------------------------
# A real run: the digits two-view kit
# ------------------------------------------------------------------------------------------------

@dataclass(repr=False)
class HydraRun(Run):
    """One run: per-iteration ``history`` (iter, loss, open: the fraction of gate values > 0.5, scale),
    ``scores`` on the test split after training (erank_h, erank_z, knn_z, knn_h) and its test geometry."""

    h_test: np.ndarray | None = None              # encoder representations of the test images
    z_test: np.ndarray | None = None              # L2-normalised projections (what the loss sees, before the gate)
    y_test: np.ndarray | None = None
    gates: np.ndarray | None = None               # C x C x d gate table after training (None without a gate)
    model: nn.Module | None = None                # encoder + projector, eval mode
    gate: FeatureGate | None = None               # the trained gate, eval mode

    @property
    def erank_h(self) -> float:
        """Effective rank of the test representations h."""
        return self.final("erank_h")

    def __repr__(self) -> str:
        p, s = self.params, self.scores
        gate = p["gate_kind"] if p["gate"] else "no gate"
        return (f"HydraRun({p['mode']}, {gate}, seed {p['seed']}: erank(h) {s['erank_h']:.1f}, "
                f"erank(z) {s['erank_z']:.1f}, 5-NN(z) {s['knn_z']:.3f})")


def train_hydra(mode: str = "arbitrary", gate: bool = True, *, tau: float = 0.1, dim: int = 32,
                epochs: int = 30, batch_size: int = 128, gate_kind: str = "sigmoid", gumbel_tau: float = 1.0,
                fuse: bool = True, renormalize: bool = False, learn_scale: bool = True,
                embed_dim: int = 512, mlp_dim: int = 1024, lr: float = 1e-3, seed: int = 0,
                progress=True, cache: bool = True) -> HydraRun:
    """Hydra on digits: two views of each training image (:class:`lossviz.augment.TwoViewSampler`),
    the network of :func:`lossviz.models.encoder_projector` (encoder 64 -> 128 -> 128 gives h,
    projector -> ``dim`` gives z), the partner classes of ``mode``, the gate (or none), the loss
    :func:`hydra_loss` from the first views (anchors) to the second views (keys), as FastSSL.

    ``learn_scale``: FastSSL's learnable scale ``s = exp(scale_logit)``, initialised to ``1/tau``.
    ``embed_dim``/``mlp_dim`` are the gate's sizes (the paper's 512 and 1024).
    Evaluation on the test split: effective rank of h and z, 5-NN accuracy in z and in h, the gate table.
    """
    checks.choice(mode, "pair mode", MODES)
    if gate_kind not in ("sigmoid", "gumbel"):                      # "open" is spelt gate=False here
        raise ValueError(f"gate_kind must be 'sigmoid' or 'gumbel' (gate=False turns the gate off); got {gate_kind!r}")
    checks.integer(epochs, "epochs", 1)
    checks.integer(dim, "dim", 2)
    checks.integer(batch_size, "batch_size", 2)
    params = dict(mode=mode, gate=bool(gate), tau=checks.temperature(tau), dim=dim, epochs=epochs,
                  batch_size=batch_size, gate_kind=gate_kind, gumbel_tau=checks.positive(gumbel_tau, "gumbel_tau"),
                  fuse=bool(fuse), renormalize=bool(renormalize), learn_scale=bool(learn_scale),
                  embed_dim=embed_dim, mlp_dim=mlp_dim, lr=checks.positive(lr, "lr"), seed=seed)
    return memo("hydra", params, lambda: _train(params, progress), cache=cache)


def _train(p: dict, progress) -> HydraRun:
    from .. import augment, data
    from ..metrics import knn_accuracy
    from ..models import encoder_projector

    split = data.load("digits")
    C = int(split.y_train.max()) + 1

    def build():
        model = encoder_projector(split.x_train.shape[1], dim=p["dim"])
        gate = FeatureGate(C, p["dim"], embed_dim=p["embed_dim"], mlp_dim=p["mlp_dim"], fuse=p["fuse"],
                           kind=p["gate_kind"] if p["gate"] else "open", gumbel_tau=p["gumbel_tau"])
        log_scale = nn.Parameter(torch.tensor(math.log(1 / p["tau"])), requires_grad=p["learn_scale"])
        return model, gate, log_scale

    trainer = Trainer(build, lr=p["lr"], seed=p["seed"])
    model, gate, log_scale = trainer.model
    sampler = augment.TwoViewSampler(split.x_train, "digits", p["batch_size"], seed=p["seed"])
    g = torch.Generator().manual_seed(p["seed"] + 1)
    B = p["batch_size"]

    def step(it: int) -> dict:
        views, _, idx = sampler.sample()
        y1 = split.y_train[idx]
        y2 = partner_labels(y1, p["mode"], num_classes=C, generator=g)
        z = model(views)
        gv = gate(y1, y2, generator=g)
        S = gated_similarity(z[:B], z[B:], gv, renormalize=p["renormalize"])
        # the learnable scale s = 1/tau multiplies S: hydra_loss(S * s * tau, tau) = loss of s * S
        value = hydra_loss(S * (log_scale.exp() * p["tau"]), y1, partner=y2, tau=p["tau"])
        trainer.update(value)
        return {"loss": value.detach(), "open": (gv.detach() > 0.5).float().mean(), "scale": log_scale.exp().detach()}

    def geometry() -> dict:
        h_test, z_test = model[:4](split.x_test), model(split.x_test)
        h_train, z_train = model[:4](split.x_train), model(split.x_train)
        return dict(h=h_test, z=z_test, erank_h=effective_rank(h_test), erank_z=effective_rank(z_test),
                    knn_z=knn_accuracy(z_train, split.y_train, z_test, split.y_test, k=5),
                    knn_h=knn_accuracy(h_train, split.y_train, h_test, split.y_test, k=5))

    iters = p["epochs"] * (len(split.x_train) // B)
    history, _, seconds = trainer.run(step, iters, desc=f"{p['mode']}, {'gate' if p['gate'] else 'no gate'}",
                                      progress=progress)
    scores = trainer.evaluating(geometry)
    h_test, z_test = scores.pop("h"), scores.pop("z")
    model.eval()
    gate.eval()
    table = gate.table().numpy() if p["gate"] else None
    return HydraRun(params=p, history=history, scores=scores, seconds=seconds, h_test=h_test.numpy(),
                    z_test=z_test.numpy(), y_test=split.y_test.numpy(), gates=table, model=model, gate=gate)


def gated_batch(run: HydraRun, *, n: int = 32, mode: str = "arbitrary", seed: int = 0) -> dict:
    """A fresh two-view batch of ``n`` test digits through a trained run, for the pictures.

    Returns ``z1``, ``z2`` (anchors' and keys' projections), ``y1``, ``y2`` (classes and partner
    classes of ``mode``), ``g`` (each anchor's gate; ones for a run without a gate), ``S`` (the
    gated similarity), ``S_open`` (the plain cosine, ``g = 1``) and ``tau`` (1 / the learned scale)."""
    from .. import augment, data

    if run.model is None or run.gate is None:
        raise ValueError("this run carries no trained model (train it with train_hydra)")
    split = data.load("digits")
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(split.x_test), generator=gen)[:n]
    v1, v2 = augment.two_views(split.x_test[idx], "digits", gen)
    y1 = split.y_test[idx]
    y2 = partner_labels(y1, mode, num_classes=run.gate.num_classes, generator=gen)
    with torch.no_grad():
        z1, z2 = run.model(v1).double(), run.model(v2).double()
        g = run.gate(y1, y2).double()
    renorm = run.params["renormalize"]
    return dict(z1=z1, z2=z2, y1=y1, y2=y2, g=g, S=gated_similarity(z1, z2, g, renormalize=renorm),
                S_open=gated_similarity(z1, z2, torch.ones_like(g)), tau=1.0 / float(run.history["scale"][-1]))


# ------------------------------------------------------------------------------------------------
# Pictures
# ------------------------------------------------------------------------------------------------

#: One colour per kind of run, the same in every figure (never the pair colours, which mean pull / push).
RUN_COLORS = {"identical, no gate": "#000000", "arbitrary, no gate": "#E69F00", "arbitrary, gate": "#009E73",
              "identical, gate": "#56B4E9", "distinct, gate": "#CC79A7", "distinct, no gate": "#8C6D1F"}


def run_name(run: HydraRun) -> str:
    """``"arbitrary, gate"`` and the like: the key of :data:`RUN_COLORS`."""
    return f"{run.params['mode']}, {'gate' if run.params['gate'] else 'no gate'}"


def weight_map(ax, W_signed, labels, partner, key_labels=None, *, title: str = "pair weights"):
    """Signed pair weights ``dL/dS_ij`` of :func:`hydra_loss`, anchors (rows) sorted by class then by
    partner class, keys (columns) by class.  Blue pulls (each row's partner-class block), vermillion
    pushes; grey cells are excluded (the anchor's own class and its partner class) and get no push."""
    from matplotlib.colors import TwoSlopeNorm

    from .. import plots

    W = torch.as_tensor(W_signed).detach().double()
    y1, y2 = _labels(labels, W.shape[0]), _labels(partner, W.shape[0], "partner")
    yk = y1 if key_labels is None else _labels(key_labels, W.shape[1], "key_labels")
    rows = np.lexsort((y2.numpy(), y1.numpy()))
    cols = np.argsort(yk.numpy(), kind="stable")
    pos, allowed = hydra_masks(y1, y2, yk)
    Wn = W.numpy()[np.ix_(rows, cols)]
    vmax = max(float(np.abs(Wn).max()), 1e-12)
    im = ax.imshow(Wn, cmap=plots.WEIGHT_CMAP, norm=TwoSlopeNorm(0.0, -vmax, vmax), aspect="auto")
    grey = (~allowed & ~pos).numpy()[np.ix_(rows, cols)]
    overlay = np.zeros(grey.shape + (4,))
    overlay[grey] = (0.6, 0.6, 0.6, 0.55)
    ax.imshow(overlay, aspect="auto")
    ys, ks = y1.numpy()[rows], yk.numpy()[cols]
    for i in np.flatnonzero(np.diff(ys)):
        ax.axhline(i + 0.5, color="k", lw=0.6)
    for j in np.flatnonzero(np.diff(ks)):
        ax.axvline(j + 0.5, color="k", lw=0.6)
    starts = np.r_[0, np.flatnonzero(np.diff(ks)) + 1]
    ends = np.r_[starts[1:], len(ks)]
    ax.set_xticks((starts + ends - 1) / 2, [str(c) for c in ks[starts]])
    step = -(-len(ys) // 24)                             # at most 24 labels: 9-point text never overlaps
    ax.set_yticks(range(0, len(ys), step), [f"{a}→{b}" for a, b in zip(ys[::step], y2.numpy()[rows][::step])],
                  fontsize=9)
    ax.set(title=title, xlabel="key j (second view), its class", ylabel="anchor i: class → partner class")
    ax.grid(False)
    return im


def open_dims_heatmap(ax, gates, *, threshold: float = 0.5, title: str = "open dimensions per class pair",
                      colorbar: bool = True):
    """The paper's class-relationship map: for each class pair (a, b), how many dimensions its gate
    opens (``g > threshold``), out of d."""
    g = np.asarray(gates)
    counts = (g > threshold).sum(axis=2)
    im = ax.imshow(counts, cmap="viridis", vmin=0, vmax=g.shape[2])
    for a in range(counts.shape[0]):
        for b in range(counts.shape[1]):
            ax.text(b, a, str(counts[a, b]), ha="center", va="center", fontsize=7,
                    color="w" if counts[a, b] < 0.6 * g.shape[2] else "k")
    C = counts.shape[0]
    ax.set_xticks(range(C))
    ax.set_yticks(range(C))
    ax.set(title=title, xlabel="partner class b", ylabel="anchor class a")
    ax.grid(False)
    if colorbar:
        ax.figure.colorbar(im, ax=ax, shrink=0.8, label=f"dimensions with g > {threshold:g} (of {g.shape[2]})")
    return im


def gate_matrix(ax, gates, *, title: str = "the gate of each class pair"):
    """Each unordered pair's gate (a < b; the fused gate is symmetric) as a row of d values in [0, 1]:
    which dimensions each pair's subspace keeps."""
    g = np.asarray(gates)
    C = g.shape[0]
    a, b = np.triu_indices(C, k=1)
    im = ax.imshow(g[a, b], cmap="Greys", vmin=0, vmax=1, aspect="auto")
    step = max(1, len(a) // 15)
    ax.set_yticks(range(0, len(a), step), [f"{i}-{j}" for i, j in zip(a[::step], b[::step])], fontsize=9)
    ax.set(title=title, xlabel="feature dimension k of z", ylabel="class pair a-b")
    ax.grid(False)
    ax.figure.colorbar(im, ax=ax, shrink=0.8, label="gate value $g_k$")
    return im


def gate_histogram(ax, gates, *, bins: int = 40, title: str = "gate values, all class pairs"):
    """Histogram of every gate value of every class pair (a != b): bimodal when the gates decide."""
    g = np.asarray(gates)
    off = ~np.eye(g.shape[0], dtype=bool)
    ax.hist(g[off].ravel(), bins=np.linspace(0, 1, bins + 1), color="#009E73", alpha=0.8)
    ax.axvline(0.5, color="k", ls="--", lw=1)
    ax.set(title=title, xlabel="gate value $g_k$ (0 = closed, 1 = open)", ylabel="count (pairs × dimensions)")
    return ax


def spectrum_plot(ax, runs: dict, *, what: str = "h_test", title: str = "singular values of h (test)",
                  highlight: str | None = None):
    """Normalised singular values ``p_k`` of each run's test representations against k (log scale),
    labelled with the effective rank: a collapsed representation drops off fast.  The run named
    ``highlight`` is drawn dashed and thicker, the others thin."""
    for name, run in runs.items():
        p = singular_spectrum(getattr(run, what)).numpy()
        er = effective_rank(getattr(run, what))
        style = dict(ls="--", lw=2.8) if name == highlight else dict(lw=1.2 if highlight else 1.8)
        ax.plot(np.arange(1, len(p) + 1), p, color=RUN_COLORS.get(run_name(run)), label=f"{name}: erank {er:.1f}",
                **style)
    ax.set(yscale="log", ylim=(1e-5, 1), xlabel="k (singular value index)",
           ylabel="$p_k = \\sigma_k / \\sum_l \\sigma_l$", title=title)
    ax.legend(loc="upper right", fontsize=9)
    return ax


# ------------------------------------------------------------------------------------------------
# Panels
# ------------------------------------------------------------------------------------------------

def toy_classes(d: int = 32, *, shared: float = 0.25, n_per_class: int = 16, n_classes: int = 6,
                noise: float = 0.8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, int]:
    """A toy embedding for the pure-maths panel: ``n_classes`` Gaussian classes on the unit sphere
    in d dimensions (float64), where class 0 (the anchor's class a) and class 1 (its partner b)
    share their mean on the first ``k = round(shared * d)`` dimensions and differ on the rest.
    Returns ``(z, y, k)``."""
    checks.integer(d, "d", 2)
    if not 0 < shared < 1:
        raise ValueError(f"shared (the fraction of dimensions that a and b share) must be in (0, 1); got {shared}")
    g = torch.Generator().manual_seed(seed)
    k = max(1, round(shared * d))
    mu = torch.randn(n_classes, d, generator=g, dtype=torch.float64)
    mu[1, :k] = mu[0, :k]
    y = torch.arange(n_classes).repeat_interleave(n_per_class)
    z = mu[y] + noise * torch.randn(len(y), d, generator=g, dtype=torch.float64)
    return F.normalize(z, dim=1), y, k


def toy_gate(d: int, k: int, *, kind: str = "sigmoid", kappa: float = 4.0, gumbel_tau: float = 1.0) -> torch.Tensor:
    """The gate a trained Hydra would want for the pair (a, b) of :func:`toy_classes`: logit ``+kappa``
    on the ``k`` dimensions they share, ``-kappa`` on the others, through :func:`gate_values` (a
    Gumbel sample is drawn with seed 0, so the panel redraws the same gate)."""
    m = torch.full((d,), -kappa, dtype=torch.float64)
    m[:k] = kappa
    return gate_values(m, kind, gumbel_tau=gumbel_tau, generator=torch.Generator().manual_seed(0))


def _gate_bars(ax, d_max: int) -> dict:
    """:func:`gate_panel`, left: the shared dimensions shaded and one bar per dimension (``d_max``
    bars, made once; :func:`_move_gate_bars` shows the first ``d``)."""
    from .. import plots

    shared = ax.axvspan(-0.5, 0.5, color=plots.POS_COLOR, alpha=0.12, label="dimensions a and b share")
    bars = ax.bar(range(d_max), np.zeros(d_max), color="#009E73", width=0.8)
    ax.set(ylim=(0, 1.05), xlabel="feature dimension k", ylabel="gate value $g_k$")
    ax.legend(loc="upper right", fontsize=9)
    return {"shared": shared, "bars": bars}


def _move_gate_bars(ax, artists: dict, g, k: int, kind: str) -> None:
    d = len(g)
    artists["shared"].set_width(k)
    for i, bar in enumerate(artists["bars"]):
        bar.set_visible(i < d)
        bar.set_height(float(g[i]) if i < d else 0.0)
    ax.set_xlim(-0.5 - 0.05 * d, d - 0.5 + 0.05 * d)
    ax.set_title(f"gate of (a, b): {kind}")


def _ab_ac_histograms(ax) -> dict:
    """:func:`gate_panel`, right: the densities of the a-b and a-c gated similarities (two step
    patches, made once; :func:`_move_histograms` refills them)."""
    from .. import plots

    edges, zeros = np.linspace(0, 1, 31), np.zeros(30)
    hist = {"ab": ax.stairs(zeros, edges, fill=True, color=plots.POS_COLOR, alpha=0.6, label="a-b (positives)"),
            "ac": ax.stairs(zeros, edges, fill=True, color=plots.NEG_COLOR, alpha=0.6, label="a-c (negatives)")}
    ax.set(xlabel="gated similarity $S^g$", ylabel="density", title="all a-anchors")
    ax.legend(loc="upper left", fontsize=9)
    return hist


def _move_histograms(ax, hist: dict, ab, ac) -> None:
    lo, hi = float(min(ab.min(), ac.min())), float(max(ab.max(), ac.max()))
    hi = max(hi, lo + 1e-9)                              # one value only: still 30 bins
    edges = np.linspace(lo, hi, 31)
    top = 0.0
    for key, values in (("ab", ab), ("ac", ac)):
        density, _ = np.histogram(values.numpy(), bins=edges, density=True)
        hist[key].set_data(density, edges)
        top = max(top, float(density.max()))
    pad = 0.05 * max(hi - lo, 1e-9)
    ax.set(xlim=(lo - pad, hi + pad), ylim=(0, 1.05 * top))




def gate_panel(*, d: int = 32, tau: float = 0.1, kind: str = "sigmoid", kappa: float = 4.0,
               gumbel_tau: float = 1.0, renormalize: bool = False):
    """Pure maths on the paper's knobs, on :func:`toy_classes`: anchor class a, partner class b (which
    share the first quarter of the dimensions), four other classes.  The gate of (a, b) is
    :func:`toy_gate`: it opens the shared dimensions with logit ``+kappa`` and closes the others with
    ``-kappa``, passed through a sigmoid or a Gumbel sample (``tau_g``), or is open.

    Left: the gate per dimension.  Middle: one anchor's signed weights (its partner-class positives
    and its allowed negatives) against their gated similarity.  Right: gated similarities of all
    a-b pairs against all a-c pairs.  The status line gives the loss of the a-anchors."""
    import ipywidgets as W

    from .. import plots, widgets
    from ..weights import pair_weights

    style = dict(continuous_update=False, style={"description_width": "initial"})
    controls = {
        "kind": W.ToggleButtons(options=list(GATES), value=kind, description="gate"),
        "kappa": W.FloatSlider(value=kappa, min=0.0, max=8.0, step=0.25, description="gate logit ±κ", **style),
        "gumbel_tau": W.FloatLogSlider(value=gumbel_tau, base=10, min=math.log10(0.3), max=math.log10(2), step=0.05,
                                       description="Gumbel τ_g", readout_format=".2g", **style),
        "tau": W.FloatLogSlider(value=tau, base=10, min=math.log10(0.05), max=math.log10(0.5), step=0.05,
                                description="τ (temperature)", readout_format=".3g", **style),
        "d": W.Dropdown(options=[8, 16, 32, 64], value=d, description="d", layout=W.Layout(width="120px")),
        "renormalize": W.Checkbox(value=renormalize, description="renormalise (vitookit)", indent=False),
    }
    fig, axes = plots.new_figure(3, width=4.4, height=3.6)
    for ax in axes.ravel():                  # titles at a fixed height: no tick-label measuring at each draw
        ax.set_title("", y=1.0)
    toys = {}                                            # d -> toy_classes(d): fixed data, made once per d
    y = toy_classes(controls["d"].value)[1]
    a_rows = torch.nonzero(y == 0).squeeze(1)
    y1, y2 = y[a_rows], torch.ones_like(a_rows)
    pos, allowed = hydra_masks(y1[:1], y2[:1], y)
    n_pos, n_allowed = int(pos.sum()), int(allowed.sum())
    # The artists, made once; a control change only moves them.
    bars = _gate_bars(axes[0, 0], max(controls["d"].options))
    zeros_pos, zeros_allowed = np.zeros(n_pos), np.zeros(n_allowed)
    stems = plots.anchor_weights_view(axes[0, 1], zeros_pos, zeros_allowed, zeros_pos, zeros_allowed)
    axes[0, 1].set(xlabel="gated similarity $S^g$ to the anchor", ylabel="signed weight (× τ |P|)")
    hist = _ab_ac_histograms(axes[0, 2])

    def draw(v):
        if v["d"] not in toys:
            toys[v["d"]] = toy_classes(v["d"])
        z, y, k = toys[v["d"]]
        g = toy_gate(v["d"], k, kind=v["kind"], kappa=v["kappa"], gumbel_tau=v["gumbel_tau"])
        S = gated_similarity(z, z, g, renormalize=v["renormalize"])
        loss = float(hydra_loss(S[a_rows], y1, partner=y2, key_labels=y, tau=v["tau"]))
        Wt = pair_weights(hydra_loss, S[a_rows[:1]], y1[:1], signed=True, partner=y2[:1], key_labels=y, tau=v["tau"])[0]
        scale = v["tau"] * n_pos
        ab, ac = S[a_rows][:, y == 1].reshape(-1), S[a_rows][:, y >= 2].reshape(-1)
        _move_gate_bars(axes[0, 0], bars, g, k, v["kind"])
        plots.move_anchor_weights(axes[0, 1], stems, S[a_rows[0], pos[0]], S[a_rows[0], allowed[0]],
                             -Wt[pos[0]] * scale, Wt[allowed[0]] * scale)
        axes[0, 1].set_title(f"one a-anchor, τ = {v['tau']:.3g}")
        _move_histograms(axes[0, 2], hist, ab, ac)
        gap = float(ab.mean() - ac.mean())
        return {"gate": g, "loss": loss, "weights": Wt, "gap": gap, "open": int((g > 0.5).sum()),
                "status": f"loss of the a-anchors {loss:.3f} | mean S<sup>g</sup>: a-b {float(ab.mean()):.3f}, "
                          f"a-c {float(ac.mean()):.3f} (gap {gap:.3f}) | {int((g > 0.5).sum())} of {v['d']} "
                          f"dimensions open, {k} shared"}

    return widgets.Panel(controls, fig, draw)


def training_panel(*, reference_runs: dict | None = None, autorun: bool = True, **defaults):
    """A Train button over :func:`train_hydra`: pair mode, gate on/off, gate kind and Gumbel
    temperature, tau, d, epochs, seed.  Draws the training loss (and the fraction of open gate values),
    the singular-value spectrum of h next to ``reference_runs`` (``{name: HydraRun}``), and the map
    of open dimensions per class pair."""
    import ipywidgets as W

    from .. import widgets

    d = dict(mode="arbitrary", gate=True, gate_kind="sigmoid", gumbel_tau=1.0, tau=0.1, dim=32, epochs=30,
             seed=0) | defaults
    style = dict(continuous_update=False, style={"description_width": "initial"})
    controls = {
        "mode": W.Dropdown(options=list(MODES), value=d["mode"], description="pairs", layout=W.Layout(width="200px")),
        "gate": W.Checkbox(value=d["gate"], description="gate", indent=False, layout=W.Layout(width="80px")),
        "gate_kind": W.Dropdown(options=["sigmoid", "gumbel"], value=d["gate_kind"], description="gate kind",
                                layout=W.Layout(width="200px")),
        "gumbel_tau": W.FloatLogSlider(value=d["gumbel_tau"], base=10, min=math.log10(0.3), max=math.log10(2),
                                       step=0.05, description="Gumbel τ_g", readout_format=".2g", **style),
        "tau": W.FloatLogSlider(value=d["tau"], base=10, min=math.log10(0.05), max=math.log10(0.5), step=0.05,
                                description="τ (initial)", readout_format=".3g", **style),
        "dim": W.Dropdown(options=[8, 16, 32, 64], value=d["dim"], description="d", layout=W.Layout(width="120px")),
        "epochs": W.IntSlider(value=d["epochs"], min=5, max=60, step=5, description="epochs", **style),
        "seed": W.BoundedIntText(value=d["seed"], min=0, max=99, description="seed", layout=W.Layout(width="140px")),
    }

    def run(v, progress):
        return train_hydra(v["mode"], v["gate"], gate_kind=v["gate_kind"], gumbel_tau=v["gumbel_tau"], tau=v["tau"],
                           dim=v["dim"], epochs=v["epochs"], seed=v["seed"], progress=progress)

    def draw(axes, result, _v):
        h = result.history
        ax = axes[0, 0]
        ax.plot(h["iter"], h["loss"], color=RUN_COLORS.get(run_name(result), "k"), lw=1, label="loss")
        ax.set(xlabel="iteration", ylabel="Hydra loss", title="training loss")
        spectrum_plot(axes[0, 1], {**(reference_runs or {}), "this run": result}, highlight="this run")
        if result.gates is not None:
            open_dims_heatmap(axes[0, 2], result.gates, colorbar=False)
        else:
            axes[0, 2].set_axis_off()
            axes[0, 2].text(0.0, 0.5, "no gate: every dimension\nis open for every pair", fontsize=13,
                            transform=axes[0, 2].transAxes)
        return {"status": f"{result!r} in {result.seconds:.1f} s"}

    return widgets.run_panel(controls, run, draw, ncols=3, width=4.6, height=3.8, autorun=autorun)
