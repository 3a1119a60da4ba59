r"""Link prediction with learned common neighbours: NCN and NCNC (Wang, Yang & Zhang, ICLR 2024), in
miniature and in pure torch (a dense adjacency, no torch_geometric).

A link predictor scores a node pair ``(i, j)`` with a logit ``f(i, j)`` and is trained with the
pairwise binary cross-entropy over links: true edges against uniformly sampled non-edges.  A plain
graph auto-encoder (GAE) scores a pair from the two node embeddings alone, ``MLP(h_i * h_j)``, and
cannot count the neighbours the two nodes share.  NCN adds the sum of the common neighbours'
embeddings; NCNC *completes* those common neighbours with soft, predicted edges, because the
training graph misses some of them.

* :func:`link_bce_loss`, :func:`link_weights`: the loss and its per-link gradient weights
  ``sigma(-f)`` (positives) and ``sigma(f)`` (negatives).
* :func:`completion_prob`: NCNC's calibrated edge probability
  ``p = alpha pt p0 / (pt p0 + 1 - p0)``, ``p0 = sigmoid(scale (f - offset))`` (official
  ``clampprob``), which equals ``alpha sigmoid(scale (f - offset) + log pt)``.
* :func:`common_neighbors`, :func:`cn_counts`, :func:`remove_links`, :func:`gcn_norm`: the graph maths.
* :class:`LinkPredictor`: one GCN layer and the GAE or NCN scorer (the official ``cn0`` / ``cn1``
  predictors, smaller).
* :func:`sbm_triadic_graph`, :func:`split_edges`: the synthetic graph (block model plus one round of
  triadic closure) and a random or a temporal edge split.
* :func:`train_link` (on :class:`lossviz.train.Trainer` + :func:`lossviz.train.memo`),
  :func:`completion_study`, :func:`own_edge_shift`, :func:`paired_study`.
* Pictures and panels: :func:`cn_histograms`, :func:`weights_by_cn`, :func:`split_panel` (pure maths on
  the graph), :func:`completion_panel` (pure maths on a trained NCN's logits), :func:`training_panel`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import checks, plots
from ..metrics import roc_auc
from ..train import Run, Trainer, memo

#: The scorers :func:`train_link` trains.
KINDS = ("gae", "ncn")
#: The two edge splits of :func:`split_edges`.
SPLITS = ("random", "temporal")
NAMES = {"cn": "CN count", "gae": "GAE", "ncn": "NCN", "completed": "completed CN count",
         "full": "CN on the full graph (oracle)", "untrained": "GAE, untrained"}
COLORS = {"cn": "#E69F00", "gae": "#5D3A9B", "ncn": "#009E73", "completed": "#56B4E9",
          "full": plots.MUTED, "untrained": "#CC79A7"}
#: NCNC's completion knobs on Cora (official code, README): scale, offset, pt, alpha.
CORA_COMPLETION = dict(scale=4.3, offset=2.8, pt=0.75, alpha=1.0)


# ------------------------------------------------------------------------------------------------
# The loss and its weights
# ------------------------------------------------------------------------------------------------

def _logits(x, name: str) -> torch.Tensor:
    x = checks.as_float_tensor(x, name, 1)
    if x.numel() == 0:
        raise ValueError(f"{name} is empty: the loss needs at least one link on each side")
    return x


def link_bce_loss(pos_logits, neg_logits) -> torch.Tensor:
    r"""The pairwise binary cross-entropy of link prediction (NCN's training loss):

    .. math::
        L = -\frac{1}{|E|}\sum_{(i,j)\in E} \log\sigma(f_{ij})
            \;-\; \frac{1}{|N|}\sum_{(i,j)\in N} \log\sigma(-f_{ij})

    ``pos_logits`` are the logits of true edges ``E``, ``neg_logits`` those of sampled non-edges
    ``N`` (1-D each, any lengths).  Computed with ``logsigmoid``, never ``log(sigmoid)``."""
    pos, neg = _logits(pos_logits, "pos_logits"), _logits(neg_logits, "neg_logits")
    return -F.logsigmoid(pos).mean() - F.logsigmoid(-neg).mean()


def link_weights(pos_logits, neg_logits) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The loss's weight on each link (General Pair Weighting): ``|dL/df|`` times the number of
    links on its side, ``sigma(-f)`` for a positive (how far it still is from "edge") and
    ``sigma(f)`` for a negative.  A link the model already gets right weighs almost nothing."""
    pos, neg = _logits(pos_logits, "pos_logits"), _logits(neg_logits, "neg_logits")
    return torch.sigmoid(-pos.detach()), torch.sigmoid(neg.detach())


def completion_prob(logits, *, scale: float = 4.3, offset: float = 2.8, pt: float = 0.75,
                    alpha: float = 1.0) -> torch.Tensor:
    r"""NCNC's edge probability for completing common neighbours (official ``clampprob``):

    .. math::
        \hat p = \alpha\,\frac{p_t\, p_0}{p_t\, p_0 + 1 - p_0},\qquad p_0 = \sigma(\text{scale}\,(f - \text{offset}))

    which is the same as ``alpha * sigmoid(scale (f - offset) + log pt)``: ``pt`` shifts the offset
    by ``-log(pt) / scale``.  ``logits`` are NCN logits ``f`` (any shape); computed in the sigmoid
    form, so it is finite for any finite logit.  Defaults: the official values on Cora."""
    f = logits if isinstance(logits, torch.Tensor) else torch.as_tensor(logits, dtype=torch.get_default_dtype())
    if not f.is_floating_point():
        raise ValueError(f"logits must be floating point; got dtype {f.dtype}")
    if checks.validation_enabled() and not bool(torch.isfinite(f).all()):
        raise ValueError("logits contains NaN or Inf")
    scale = checks.positive(scale, "scale (the slope of the calibration)")
    offset = checks.finite(offset, "offset (the logit where p0 = 1/2)")
    pt = checks.fraction(pt, "pt (the prior probability of a true edge)", zero_ok=False)
    alpha = checks.non_negative(alpha, "alpha (the weight of the completed neighbours)")
    return alpha * torch.sigmoid(scale * (f - offset) + math.log(pt))


# ------------------------------------------------------------------------------------------------
# Graph maths on a dense adjacency
# ------------------------------------------------------------------------------------------------

def _adjacency(A) -> torch.Tensor:
    A = checks.as_float_tensor(A, "A (the n x n adjacency)", 2)
    if A.shape[0] != A.shape[1]:
        raise ValueError(f"A must be square (n x n); got {tuple(A.shape)}")
    return A


def _edges(edges, n: int, name: str = "edges") -> torch.Tensor:
    e = torch.as_tensor(edges)
    if e.dtype == torch.bool or e.is_floating_point() or e.is_complex():
        raise ValueError(f"{name} must hold integer node ids; got dtype {e.dtype}")
    if e.ndim != 2 or e.shape[1] != 2:
        raise ValueError(f"{name} must be an m x 2 tensor of node pairs; got shape {tuple(e.shape)}")
    if checks.validation_enabled() and e.numel() and not bool(((e >= 0) & (e < n)).all()):
        raise ValueError(f"{name} must hold node ids in [0, {n})")
    return e.long()


def common_neighbors(A, edges) -> torch.Tensor:
    r"""The m x n common-neighbour indicator ``C[l, u] = A_{iu} A_{uj}`` of each link ``l = (i, j)``.
    ``A_ij`` itself never enters: a link is not one of its own common neighbours."""
    A = _adjacency(A)
    e = _edges(edges, len(A))
    return A[e[:, 0]] * A[e[:, 1]]


def cn_counts(A, edges) -> torch.Tensor:
    """``|N(i) ∩ N(j)|`` for each link of ``edges`` (m x 2): the classic common-neighbour heuristic
    (the row sums of :func:`common_neighbors`, counted through :func:`cn_pairs`), in ``A``'s dtype."""
    A = _adjacency(A)
    e = _edges(edges, len(A))
    rows, _ = cn_pairs(A, e)
    return torch.bincount(rows, minlength=len(e)).to(A.dtype)


def remove_links(A, edges) -> torch.Tensor:
    """A copy of the symmetric adjacency ``A`` without the links ``edges`` (target-link removal)."""
    A = _adjacency(A)
    e = _edges(edges, len(A))
    out = A.clone()
    out[e[:, 0], e[:, 1]] = 0
    out[e[:, 1], e[:, 0]] = 0
    return out


def gcn_norm(A) -> torch.Tensor:
    r"""``D^{-1/2} (A + I) D^{-1/2}`` with ``D`` the degrees of ``A + I`` (Kipf & Welling's GCN)."""
    A = _adjacency(A)
    At = A + torch.eye(len(A), dtype=A.dtype, device=A.device)
    d = At.sum(dim=1).rsqrt()
    return d[:, None] * At * d[None, :]


def propagate(A, x) -> torch.Tensor:
    r"""``Â x`` with ``Â = D^{-1/2} (A + I) D^{-1/2}`` (:func:`gcn_norm`), without forming ``Â``."""
    d = (A.sum(dim=1) + 1).rsqrt()[:, None]
    dx = d * x
    return d * (A @ dx + dx)


def neighbor_table(A) -> torch.Tensor:
    """Each node's neighbours as a padded n x max_degree table of node ids; the padding is ``n``
    (a column of zeros appended to the adjacency)."""
    n = len(A)
    r, c = (A > 0).nonzero(as_tuple=True)                    # row-major: each row's columns in order
    deg = torch.bincount(r, minlength=n)
    start = torch.cumsum(deg, 0) - deg
    table = torch.full((n, max(int(deg.max()) if len(r) else 0, 1)), n, dtype=torch.long, device=A.device)
    table[r, torch.arange(len(r), device=A.device) - start[r]] = c
    return table


def cn_pairs(A, e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(rows, us)``: the non-zeros of ``C[l, u] = A_iu A_uj`` for links ``e`` (m x 2), found by
    looking each neighbour of ``i`` up in ``j``'s row (a few per link, not n)."""
    B = torch.cat([A > 0, torch.zeros(len(A), 1, dtype=torch.bool, device=A.device)], dim=1)   # column n: padding
    nb = neighbor_table(A)[e[:, 0]]                          # m x max_degree neighbours of i
    hit = B[e[:, 1][:, None], nb]                            # is that neighbour also one of j's?
    rows, k = hit.nonzero(as_tuple=True)
    return rows, nb[rows, k]


def _cn_sum(A: torch.Tensor, e: torch.Tensor, h: torch.Tensor, extra=None) -> torch.Tensor:
    """``sum_u C[l, u] h_u`` for each link, through the non-zeros of C only, plus soft entries
    ``extra = (rows, us, weights)`` (completed common neighbours)."""
    rows, us = cn_pairs(A, e)
    out = h.new_zeros(len(e), h.shape[1]).index_add(0, rows, h[us])
    if extra is not None:
        r, u, w = extra
        out = out.index_add(0, r, w.to(h.dtype)[:, None] * h[u])
    return out


# ------------------------------------------------------------------------------------------------
# The model: one GCN layer and a link scorer (GAE or NCN)
# ------------------------------------------------------------------------------------------------

def _mlp(d_in: int, d_hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d_hidden), nn.ReLU(), nn.Linear(d_hidden, d_out))


class LinkPredictor(nn.Module):
    r"""One GCN layer, ``h = ReLU(Â X W + b)``, and a link scorer on ``h``:

    * ``kind="gae"``: ``f(i, j) = MLP(MLP_ij(h_i * h_j))`` (the official ``cn0`` ablation);
    * ``kind="ncn"``: ``f(i, j) = MLP(beta * MLP_cn(sum_{u in N(i) ∩ N(j)} h_u) + MLP_ij(h_i * h_j))``
      with ``beta`` learnable, initialised at 1 (the official ``cn1``).

    The official MLPs carry dropout and layer norm; the miniature has neither."""

    def __init__(self, in_dim: int = 16, hidden: int = 64, kind: str = "ncn"):
        super().__init__()
        self.kind = checks.choice(kind, "kind", KINDS)
        in_dim, hidden = checks.integer(in_dim, "in_dim", 1), checks.integer(hidden, "hidden", 1)
        self.gcn = nn.Linear(in_dim, hidden)
        self.xij = _mlp(hidden, hidden, hidden)
        self.out = _mlp(hidden, hidden, 1)
        if kind == "ncn":
            self.cn = _mlp(hidden, hidden, hidden)
            self.beta = nn.Parameter(torch.ones(()))

    def pre_activation(self, x, A) -> torch.Tensor:
        """``Â X W + b``, the GCN layer before its ReLU (the bias after the aggregation, as in GCNConv)."""
        return self.gcn(propagate(A, x))

    def embed(self, x, A) -> torch.Tensor:
        """Node embeddings ``h`` (n x hidden) on the graph ``A``."""
        return torch.relu(self.pre_activation(x, A))

    def score(self, h, A, edges, extra=None) -> torch.Tensor:
        """Link logits ``f`` for ``edges`` (m x 2), with the common neighbours read from ``A``;
        ``extra = (rows, us, weights)`` adds soft common neighbours (NCNC's completion)."""
        e = _edges(edges, len(h))
        z = self.xij(h[e[:, 0]] * h[e[:, 1]])
        if self.kind == "ncn":
            z = z + self.beta * self.cn(_cn_sum(A, e, h, extra))
        return self.out(z)[:, 0]

    def forward(self, x, A, edges) -> torch.Tensor:
        return self.score(self.embed(x, A), A, edges)


# ------------------------------------------------------------------------------------------------
# The synthetic graph and its splits
# ------------------------------------------------------------------------------------------------

@dataclass
class LinkGraph:
    """A graph with node features: ``A`` (n x n, 0/1, symmetric, float32), ``x`` (n x 16), ``block``
    (n,), ``edges`` (E x 2, i < j) and ``born`` (E,): 0 for a block-model edge, 1 for an edge the
    triadic-closure step added (its "time")."""

    A: torch.Tensor
    x: torch.Tensor
    block: np.ndarray
    edges: torch.Tensor
    born: np.ndarray


def sbm_triadic_graph(n: int = 600, *, blocks: int = 4, p_in: float = 0.04, p_out: float = 0.004,
                      closure: float = 0.5, noise_dims: int = 12, seed: int = 0) -> LinkGraph:
    r"""A stochastic block model (``blocks`` equal blocks, edge probability ``p_in`` inside a block,
    ``p_out`` across) and one round of triadic closure: every open wedge ``(i, j)`` (not an edge,
    ``k = |N(i) ∩ N(j)| >= 1`` on the block-model graph) closes with probability
    ``closure * (1 - exp(-k / 2))``.  Features: the block one-hot plus N(0, 1) noise, then
    ``noise_dims`` pure-noise columns.  numpy, seeded: the same graph on every machine."""
    n = checks.integer(n, "n", 4)
    blocks = checks.integer(blocks, "blocks", 1, n)
    p_in = checks.fraction(p_in, "p_in")
    p_out = checks.fraction(p_out, "p_out")
    closure = checks.fraction(closure, "closure (the triadic-closure strength)")
    rng = np.random.default_rng(checks.integer(seed, "seed", 0))
    block = np.arange(n) * blocks // n
    P = np.where(block[:, None] == block[None, :], p_in, p_out)
    A0 = np.triu(rng.random((n, n)) < P, k=1)
    A0 = A0 | A0.T
    A0f = A0.astype(np.float32)
    K = np.rint(A0f @ A0f)                              # wedge counts (exact: small integers in float32)
    wedge = np.triu((K >= 1) & ~A0, k=1)
    close = wedge & (rng.random((n, n)) < closure * (1 - np.exp(-K / 2)))
    i0, j0 = np.nonzero(np.triu(A0, k=1))
    i1, j1 = np.nonzero(close)
    edges = np.concatenate([np.stack([i0, j0], 1), np.stack([i1, j1], 1)])
    born = np.concatenate([np.zeros(len(i0), np.int64), np.ones(len(i1), np.int64)])
    A = np.zeros((n, n), np.float32)
    A[edges[:, 0], edges[:, 1]] = A[edges[:, 1], edges[:, 0]] = 1
    onehot = np.eye(blocks)[block] + rng.standard_normal((n, blocks))
    x = np.concatenate([onehot, rng.standard_normal((n, noise_dims))], axis=1).astype(np.float32)
    return LinkGraph(torch.from_numpy(A), torch.from_numpy(x), block, torch.from_numpy(edges), born)


@dataclass
class LinkSplit:
    """An edge split: ``train``, ``valid``, ``test_pos`` (m x 2 each), ``test_neg`` (uniform node
    pairs that are not edges of the full graph) and ``A_train``, the graph the model sees."""

    graph: LinkGraph
    split: str
    train: torch.Tensor
    valid: torch.Tensor
    test_pos: torch.Tensor
    test_neg: torch.Tensor
    A_train: torch.Tensor
    cache: dict = field(default_factory=dict, repr=False)


def split_edges(graph: LinkGraph, split: str = "random", *, fractions=(0.8, 0.1, 0.1), neg_per_test: int = 5,
                seed: int = 0) -> LinkSplit:
    """Split the edges into train / valid / test.

    * ``"random"``: a uniformly random partition (the benchmarks' Cora / Citeseer / Pubmed splits);
    * ``"temporal"``: the edges in order of birth (block-model edges, then closure edges, random
      order within each), the last ones held out, as ogbl-collab holds out the last years.

    Test negatives: ``neg_per_test`` per test positive, uniform pairs ``i != j`` that are not
    edges of the full graph.  ``A_train`` holds the training edges only."""
    checks.choice(split, "split", SPLITS)
    fr = [checks.fraction(f, "each fraction", zero_ok=False) for f in fractions]
    if len(fr) != 3 or abs(sum(fr) - 1) > 1e-9:
        raise ValueError(f"fractions must be three numbers (train, valid, test) that sum to 1; got {fractions}")
    neg_per_test = checks.integer(neg_per_test, "neg_per_test", 1)
    rng = np.random.default_rng(checks.integer(seed, "seed", 0) + 1000)
    E = len(graph.edges)
    order = rng.permutation(E)
    if split == "temporal":
        order = order[np.argsort(graph.born[order], kind="stable")]
    n_tr, n_va = int(round(fr[0] * E)), int(round(fr[1] * E))
    idx = {"train": order[:n_tr], "valid": order[n_tr:n_tr + n_va], "test": order[n_tr + n_va:]}
    parts = {k: graph.edges[torch.from_numpy(v)] for k, v in idx.items()}
    n = len(graph.A)
    want = neg_per_test * len(parts["test"])
    full = graph.A.numpy() > 0
    neg = np.empty((0, 2), np.int64)
    while len(neg) < want:
        cand = rng.integers(0, n, size=(2 * want, 2))
        cand = cand[(cand[:, 0] != cand[:, 1]) & ~full[cand[:, 0], cand[:, 1]]]
        neg = np.concatenate([neg, cand])
    A_train = torch.zeros_like(graph.A)
    t = parts["train"]
    A_train[t[:, 0], t[:, 1]] = A_train[t[:, 1], t[:, 0]] = 1
    return LinkSplit(graph, split, parts["train"], parts["valid"], parts["test"],
                     torch.from_numpy(neg[:want]), A_train)


def make_split(*, split: str = "random", closure: float = 0.5, seed: int = 0) -> LinkSplit:
    """The notebook's graph and split for a seed (the seed fixes both), cached."""
    return memo("ncnc_split", dict(split=split, closure=float(closure), seed=seed),
                lambda: split_edges(sbm_triadic_graph(closure=closure, seed=seed), split, seed=seed))


def split_counts(s: LinkSplit) -> dict:
    """``{(graph, kind): counts}``: the common-neighbour count of every training positive, test positive
    and test negative (kind train_pos, test_pos, test_neg) on graph "train" (``A_train``) and "full"."""
    def compute():
        return {(where, who): cn_counts(A, e) for where, A in (("train", s.A_train), ("full", s.graph.A))
                for who, e in (("train_pos", s.train), ("test_pos", s.test_pos), ("test_neg", s.test_neg))}

    if "counts" not in s.cache:                              # a split never changes: count once
        s.cache["counts"] = compute()
    return s.cache["counts"]


def cn_stats(s: LinkSplit) -> dict:
    """Mean common-neighbour counts of training positives, test positives and test negatives, on the
    training graph (``*_train``) and on the full graph (``*_full``); no training involved."""
    return {f"{who}_{where}": float(c.mean()) for (where, who), c in split_counts(s).items()}


# ------------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------------

@dataclass(repr=False)
class LinkRun(Run):
    """One link-prediction run: ``history`` (iter, loss), ``evals`` (iter, test auc, once per
    epoch and before training), ``scores`` (auc, auc_untrained, beta for NCN), the test logits and
    the trained ``model``."""

    pos_logits: np.ndarray | None = None
    neg_logits: np.ndarray | None = None
    model: nn.Module | None = field(default=None)

    def __repr__(self) -> str:
        p = self.params
        return (f"LinkRun({p['kind']}, {p['split']} split, removal={p['remove_target']}, "
                f"{p['negatives']} neg/pos: test AUC {self.scores['auc']:.3f})")


def _negatives(n: int, m: int, forbidden: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
    out = np.empty((0, 2), np.int64)
    while len(out) < m:
        c = rng.integers(0, n, size=(2 * m + 8, 2))
        out = np.concatenate([out, c[(c[:, 0] != c[:, 1]) & ~forbidden[c[:, 0], c[:, 1]]]])
    return torch.from_numpy(out[:m])


def train_link(kind: str = "ncn", *, split: str = "random", closure: float = 0.5, epochs: int = 30,
               batch_size: int = 1024, negatives: int = 1, remove_target: bool = True, lr: float = 3e-3,
               hidden: int = 64, seed: int = 0, progress=True, cache: bool = True) -> LinkRun:
    """Train a GCN link predictor (``kind`` "gae" or "ncn") with :func:`link_bce_loss` on the graph
    and split of ``seed`` (:func:`make_split`); Adam, batches of ``batch_size`` training edges,
    ``negatives`` uniform non-training pairs per positive, resampled every epoch (the official
    ``negative_sampling``).  ``remove_target``: drop the batch's own edges from the graph before
    message passing and common-neighbour counting (the official ``--maskinput``).  Test AUC on the
    training graph after every epoch; the seed fixes graph, split, initialisation and negatives."""
    checks.choice(kind, "kind", KINDS)
    checks.choice(split, "split", SPLITS)
    closure = checks.fraction(closure, "closure")
    for name, value, low in (("epochs", epochs, 1), ("batch_size", batch_size, 1), ("negatives", negatives, 1),
                             ("hidden", hidden, 1), ("seed", seed, 0)):
        checks.integer(value, name, low)
    lr = checks.positive(lr, "lr")
    params = dict(kind=kind, split=split, closure=closure, epochs=epochs, batch_size=batch_size,
                  negatives=negatives, remove_target=bool(remove_target), lr=lr, hidden=hidden, seed=seed)
    return memo("ncnc", params, lambda: _train(params, progress), cache=cache)


def _train(p: dict, progress) -> LinkRun:
    s = make_split(split=p["split"], closure=p["closure"], seed=p["seed"])
    x, A, train = s.graph.x, s.A_train, s.train
    trainer = Trainer(lambda: LinkPredictor(x.shape[1], p["hidden"], p["kind"]), lr=p["lr"], seed=p["seed"])
    model = trainer.model
    rng = np.random.default_rng(p["seed"] + 7)
    forbidden = A.numpy() > 0
    per_epoch = math.ceil(len(train) / p["batch_size"])
    batch = {}

    def step(it: int) -> dict:
        b = (it - 1) % per_epoch
        if b == 0:                                           # a new epoch: new order, new negatives
            batch["perm"] = torch.from_numpy(rng.permutation(len(train)))
            batch["neg"] = _negatives(len(A), p["negatives"] * len(train), forbidden, rng)
        idx = batch["perm"][b * p["batch_size"]:(b + 1) * p["batch_size"]]
        pos = train[idx]
        neg = batch["neg"].view(p["negatives"], len(train), 2)[:, idx].reshape(-1, 2)
        Ab = remove_links(A, pos) if p["remove_target"] else A
        f = model.score(model.embed(x, Ab), Ab, torch.cat([pos, neg]))
        loss = link_bce_loss(f[:len(pos)], f[len(pos):])
        trainer.update(loss)
        return {"loss": loss.detach()}

    def evaluate() -> dict:
        h = model.embed(x, A)
        fp, fn = model.score(h, A, s.test_pos), model.score(h, A, s.test_neg)
        return {"auc": roc_auc(fn, fp)}

    history, evals, seconds = trainer.run(step, p["epochs"] * per_epoch, evaluate=evaluate, eval_every=per_epoch,
                                          desc=NAMES[p["kind"]], progress=progress)
    model.eval()
    with torch.no_grad():
        h = model.embed(x, A)
        fp, fn = model.score(h, A, s.test_pos), model.score(h, A, s.test_neg)
    scores = {"auc": roc_auc(fn, fp), "auc_untrained": float(evals["auc"][0])}
    if p["kind"] == "ncn":
        scores["beta"] = float(model.beta.detach())
    return LinkRun(params=p, history=history, evals=evals, scores=scores, seconds=seconds,
                   pos_logits=fp.numpy(), neg_logits=fn.numpy(), model=model)


# ------------------------------------------------------------------------------------------------
# Completion (NCNC) and target-link removal, measured on a trained NCN
# ------------------------------------------------------------------------------------------------

@dataclass
class Completion:
    """The candidates for completing each test link ``(i, j)``: every ``u`` in ``N(i) \\ N(j)``
    (candidate edge ``(j, u)``) and in ``N(j) \\ N(i)`` (candidate ``(i, u)``), with the trained
    NCN's logit ``f`` of the candidate edge.  ``link`` indexes the test links (positives first, then
    negatives); ``cn`` holds their plain counts and ``is_pos`` which are positives."""

    link: torch.Tensor
    u: torch.Tensor
    logits: torch.Tensor
    cn: torch.Tensor
    is_pos: torch.Tensor

    def completed(self, **knobs) -> tuple[torch.Tensor, torch.Tensor]:
        """``(count + soft mass, soft mass)`` per test link, ``p`` from :func:`completion_prob`."""
        p = completion_prob(self.logits, **knobs)
        mass = torch.zeros(len(self.cn), dtype=p.dtype).index_add(0, self.link, p)
        return self.cn + mass, mass


def completion_candidates(A, links) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(link, u, other)`` for every ``u`` in ``N(i) \\ N(j)`` (``other = j``) and in
    ``N(j) \\ N(i)`` (``other = i``), ``u`` not an endpoint: the edge ``(other, u)`` would make
    ``u`` a common neighbour of link ``(i, j)``."""
    A = _adjacency(A)
    e = _edges(links, len(A), "links")
    Ai, Aj = A[e[:, 0]] > 0, A[e[:, 1]] > 0
    rows = torch.arange(len(e))
    out = []
    for only, other, me in ((Ai & ~Aj, e[:, 1], e[:, 0]), (Aj & ~Ai, e[:, 0], e[:, 1])):
        only[rows, other] = False                      # u = j when (i, j) is itself an edge
        only[rows, me] = False
        r, u = only.nonzero(as_tuple=True)
        out.append((r, u, other[r]))
    return tuple(torch.cat(t) for t in zip(*out))


@torch.no_grad()
def completion_study(run: LinkRun, *, chunk: int = 16384) -> Completion:
    """The candidate edges of :func:`completion_candidates` for every test link of ``run``'s split,
    scored by ``run``'s trained NCN on the training graph (no gradient, as in NCNC); cached."""
    if run.params["kind"] != "ncn":
        raise ValueError(f"completion needs a trained NCN (kind='ncn'); got kind={run.params['kind']!r}")

    def compute():
        s = make_split(split=run.params["split"], closure=run.params["closure"], seed=run.params["seed"])
        A, model = s.A_train, run.model
        links = torch.cat([s.test_pos, s.test_neg])
        link, u, other = completion_candidates(A, links)
        h = model.embed(s.graph.x, A)
        pairs = torch.stack([other, u], 1)
        f = torch.cat([model.score(h, A, pairs[k:k + chunk]) for k in range(0, len(pairs), chunk)])
        is_pos = torch.arange(len(links)) < len(s.test_pos)
        return Completion(link, u, f, cn_counts(A, links).to(f.dtype), is_pos)

    return memo("ncnc_completion", dict(run.params), compute)


def completion_auc(comp: Completion, **knobs) -> dict:
    """AUC of the plain and the completed counts on the test links, and the mean soft mass added to
    positives and negatives, for the completion knobs ``knobs`` (:func:`completion_prob`)."""
    total, mass = comp.completed(**knobs)
    pos = comp.is_pos
    return {"auc_cn": roc_auc(comp.cn[~pos], comp.cn[pos]), "auc_completed": roc_auc(total[~pos], total[pos]),
            "mass_pos": float(mass[pos].mean()), "mass_neg": float(mass[~pos].mean())}


@torch.no_grad()
def ncn_completed_auc(run: LinkRun, comp: Completion, **knobs) -> float:
    """Test AUC of ``run``'s trained NCN when its common-neighbour sum also takes the completed
    neighbours, weighted by ``p`` (NCNC at inference only; the model was trained without them)."""
    s = make_split(split=run.params["split"], closure=run.params["closure"], seed=run.params["seed"])
    h = run.model.embed(s.graph.x, s.A_train)
    links = torch.cat([s.test_pos, s.test_neg])
    f = run.model.score(h, s.A_train, links, extra=(comp.link, comp.u, completion_prob(comp.logits, **knobs)))
    return roc_auc(f[~comp.is_pos], f[comp.is_pos])


@torch.no_grad()
def own_edge_shift(model: LinkPredictor, x, A, edges) -> dict:
    r"""What removing each link's *own* edge changes, one link at a time (vectorised): the common-neighbour
    count (``cn_with``, ``cn_without``: equal, since ``A_ij`` never enters it) and the embedding of the
    first endpoint, ``||Δh_i||`` and ``||Δ(pre-activation)_i||``.  Only row ``i`` of ``Â`` changes
    for ``h_i``: the degrees of ``i`` and ``j`` drop by one and ``Â_ij`` becomes 0."""
    A = _adjacency(A)
    e = _edges(edges, len(A))
    i, j = e[:, 0], e[:, 1]
    deg = A.sum(1) + 1
    rows = torch.arange(len(e))

    def pre(Ai, d_i):
        norm = (d_i[:, None] * deg[None, :]).rsqrt()
        norm[rows, i] = 1 / d_i                             # the self-loop sees i's own new degree
        Ai = Ai.clone()
        Ai[rows, i] += 1
        return model.gcn((Ai * norm) @ x)

    Ai = A[i]
    Ai_wo = Ai.clone()
    Ai_wo[rows, j] = 0
    a_with, a_wo = pre(Ai, deg[i]), pre(Ai_wo, deg[i] - A[i, j])
    A_wo_rows_j = A[j].clone()
    A_wo_rows_j[rows, i] = 0
    return {"cn_with": (Ai * A[j]).sum(1), "cn_without": (Ai_wo * A_wo_rows_j).sum(1),
            "dh": (torch.relu(a_with) - torch.relu(a_wo)).norm(dim=1), "dpre": (a_with - a_wo).norm(dim=1),
            "degree": deg[i] - 1}


def paired_study(seeds=range(8), *, epochs: int = 30, progress=False, **completion) -> dict:
    """For every seed: test AUC of the untrained GAE, the GAE, the NCN, the CN count on the training
    graph, the completed count (knobs ``completion``, default :data:`CORA_COMPLETION`) and the CN count
    on the full graph (an oracle completion), the mean soft mass added to test positives and negatives,
    and the common-neighbour statistics of :func:`cn_stats`.  Returns ``{name: array over seeds}``."""
    seeds = [checks.integer(s, "seed", 0) for s in seeds]
    if len(seeds) < 2:
        raise ValueError("paired_study needs at least two seeds (a paired difference needs a spread)")
    knobs = CORA_COMPLETION | completion
    rows = []
    for seed in seeds:
        gae = train_link("gae", epochs=epochs, seed=seed, progress=progress)
        ncn = train_link("ncn", epochs=epochs, seed=seed, progress=progress)
        s = make_split(seed=seed)
        comp = completion_study(ncn)
        c = completion_auc(comp, **knobs)
        full = cn_counts(s.graph.A, torch.cat([s.test_pos, s.test_neg]))
        rows.append({"untrained": gae.scores["auc_untrained"], "gae": gae.scores["auc"], "ncn": ncn.scores["auc"],
                     "cn": c["auc_cn"], "completed": c["auc_completed"],
                     "full": roc_auc(full[~comp.is_pos], full[comp.is_pos]),
                     "mass_pos": c["mass_pos"], "mass_neg": c["mass_neg"],
                     "gae_best_iter": float(gae.evals["iter"][np.argmax(gae.evals["auc"])]), **cn_stats(s)})
    return {k: np.array([r[k] for r in rows]) for k in rows[0]}


# ------------------------------------------------------------------------------------------------
# Pictures and panels
# ------------------------------------------------------------------------------------------------

#: Colours of the three kinds of link in the histograms: training positives, test positives
#: (both pairs that are edges: shades of the positive colour), negatives (the negative colour).
LINK_COLORS = {"train_pos": "#56B4E9", "test_pos": plots.POS_COLOR, "test_neg": plots.NEG_COLOR}
LINK_NAMES = {"train_pos": "training positives", "test_pos": "test positives", "test_neg": "negatives"}


def cn_distributions(s: LinkSplit, *, max_cn: int = 8) -> dict:
    """``{(graph, kind): frequencies}``: the share of links with 0, 1, ..., ``max_cn`` or more common
    neighbours, for graph "train" (``A_train``) and "full", kind train_pos, test_pos, test_neg."""
    out = {}
    for key, c in split_counts(s).items():
        c = c.long().clamp(max=max_cn)
        out[key] = (torch.bincount(c, minlength=max_cn + 1).double() / len(c)).numpy()
    return out


def cn_histograms(axes, s: LinkSplit, *, max_cn: int = 8) -> dict:
    """Grouped bars of :func:`cn_distributions` on two axes (training graph, full graph); returns
    ``{(graph, kind): BarContainer}`` for :func:`set_cn_histograms`."""
    dist = cn_distributions(s, max_cn=max_cn)
    k = np.arange(max_cn + 1)
    bars = {}
    for ax, where, title in ((axes[0], "train", "on the training graph $A_{train}$"),
                             (axes[1], "full", "on the full graph")):
        for off, who in zip((-0.27, 0.0, 0.27), LINK_COLORS):
            bars[where, who] = ax.bar(k + off, dist[where, who], width=0.27, color=LINK_COLORS[who],
                                      label=LINK_NAMES[who])
        ax.set_xticks(k, [str(v) for v in k[:-1]] + [f"≥{max_cn}"])
        ax.set(xlabel="common neighbours |N(i) ∩ N(j)|", ylabel="share of links", ylim=(0, 1), title=title)
    axes[0].legend(loc="upper right", fontsize=9)
    return bars


def set_cn_histograms(bars: dict, s: LinkSplit, *, max_cn: int = 8) -> dict:
    """Update the bars of :func:`cn_histograms` in place for another split; returns the distributions."""
    dist = cn_distributions(s, max_cn=max_cn)
    for key, container in bars.items():
        for rect, v in zip(container, dist[key]):
            rect.set_height(v)
    return dist


def weights_by_cn(ax, runs: dict, s: LinkSplit, *, max_cn: int = 6) -> dict:
    """The loss's weight on each held-out link (:func:`link_weights`: ``sigma(-f)`` on test
    positives, solid; ``sigma(f)`` on negatives, dashed), averaged per common-neighbour count on the
    training graph, for ``{kind: LinkRun}``.  Returns ``{kind: (w_pos per bin, w_neg per bin)}``."""
    cp = cn_counts(s.A_train, s.test_pos).long().clamp(max=max_cn).numpy()
    cn_ = cn_counts(s.A_train, s.test_neg).long().clamp(max=max_cn).numpy()
    k = np.arange(max_cn + 1)
    out = {}
    for kind, run in runs.items():
        wp, wn = (w.numpy() for w in link_weights(torch.as_tensor(run.pos_logits), torch.as_tensor(run.neg_logits)))
        mp = np.array([wp[cp == v].mean() if (cp == v).any() else np.nan for v in k])
        mn = np.array([wn[cn_ == v].mean() if (cn_ == v).any() else np.nan for v in k])
        c = COLORS.get(kind, plots.MUTED)
        ax.plot(k, mp, "o-", color=c, label=f"{NAMES.get(kind, kind)}, positives")
        ax.plot(k, mn, "s--", color=c, label=f"{NAMES.get(kind, kind)}, negatives")
        out[kind] = (mp, mn)
    ax.set_xticks(k, [str(v) for v in k[:-1]] + [f"≥{max_cn}"])
    ax.set(xlabel="common neighbours on $A_{train}$", ylabel="weight σ(∓f) on test links", ylim=(0, 1.4),
           yticks=np.linspace(0, 1, 6), title="where the loss still pushes")
    ax.legend(fontsize=8, loc="upper center", ncol=2, columnspacing=0.8, handlelength=1.6)
    return out


def roc_plot(ax, scores: dict, s: LinkSplit) -> dict:
    """ROC curves on the test links for ``{name: (neg_scores, pos_scores)}``; returns the AUCs."""
    from ..metrics import roc_curve

    aucs = {}
    for name, (neg, pos) in scores.items():
        fpr, tpr = roc_curve(neg, pos)
        aucs[name] = roc_auc(neg, pos)
        ax.plot(fpr, tpr, color=COLORS.get(name, plots.MUTED), label=f"{NAMES.get(name, name)}: AUC {aucs[name]:.3f}")
    ax.plot([0, 1], [0, 1], color=plots.MUTED, lw=1, ls=":")
    ax.set(xlabel="false-positive rate (negatives above the threshold)", ylabel="true-positive rate",
           title=f"test links, {s.split} split", xlim=(0, 1), ylim=(0, 1))
    ax.legend(fontsize=8, loc="lower right")
    return aucs


def plot_runs(axes, runs: dict, *, reference: float | None = None) -> None:
    """Training loss (left) and test AUC after every epoch (right) for ``{label: LinkRun}``; the test
    AUC of the plain CN count as a dotted line (``reference``)."""
    for label, run in runs.items():
        c = COLORS.get(run.params["kind"], plots.MUTED)          # the scorer's colour; dashed: no removal
        ls = "-" if run.params["remove_target"] else "--"
        label = NAMES.get(label, label)
        axes[0].plot(run.history["iter"], run.history["loss"], color=c, ls=ls, lw=1.2, label=label)
        per_epoch = run.evals["iter"] / max(run.evals["iter"][1], 1)
        axes[1].plot(per_epoch, run.evals["auc"], color=c, ls=ls, marker=".", label=label)
    if reference is not None:
        axes[1].axhline(reference, color=COLORS["cn"], ls=":", label="CN count (no training)")
    axes[0].set(xlabel="step", ylabel="BCE loss (nats)", title="training loss")
    axes[1].set(xlabel="epoch", ylabel="test AUC", title="test AUC", ylim=(0, 1))
    axes[0].legend(fontsize=9)
    axes[1].legend(fontsize=9, loc="lower right")


def removal_plot(axes, shift: dict) -> None:
    """Target-link removal, one link at a time: CN count with and without the link's own edge (left:
    all on the diagonal) and ``||Δh_i||`` against the degree of ``i`` (right)."""
    axes[0].scatter(shift["cn_with"].numpy(), shift["cn_without"].numpy(), s=18, color=plots.POS_COLOR, alpha=0.5)
    top = float(shift["cn_with"].max()) + 1
    axes[0].plot([0, top], [0, top], color=plots.MUTED, ls=":")
    axes[0].set(xlabel="CN count with the edge (i, j)", ylabel="CN count without it",
                title="common neighbours: unchanged")
    axes[1].scatter(shift["degree"].numpy(), shift["dh"].numpy(), s=18, color=plots.NEG_COLOR, alpha=0.5)
    axes[1].set(xlabel="degree of i on $A_{train}$", ylabel="||Δh_i||", title="embedding of i: changed")


def split_panel(*, split: str = "random", closure: float = 0.5, seed: int = 0, max_cn: int = 8):
    """Pure maths on the graph (no training): the common-neighbour histograms of training positives,
    test positives and negatives, on the training graph and on the full graph, as the split (random
    or temporal), the triadic-closure strength and the seed move."""
    import ipywidgets as W

    from .. import widgets

    style = dict(continuous_update=False, style={"description_width": "initial"})
    controls = {
        "split": W.ToggleButtons(options=list(SPLITS), value=split, description="split"),
        "closure": W.FloatSlider(value=closure, min=0.0, max=1.0, step=0.1, description="closure",
                                 readout_format=".1f", **style),
        "seed": W.BoundedIntText(value=seed, min=0, max=99, description="seed", layout=W.Layout(width="140px")),
    }
    fig, axes = plots.new_figure(2, width=4.9, height=3.6)
    bars = cn_histograms(axes[0], make_split(split=split, closure=closure, seed=seed), max_cn=max_cn)

    def draw(v):
        s = make_split(split=v["split"], closure=v["closure"], seed=v["seed"])
        set_cn_histograms(bars, s, max_cn=max_cn)
        st = cn_stats(s)
        fig.suptitle(f"{v['split']} split, closure {v['closure']:.1f}: {len(s.graph.edges)} edges")
        return {"stats": st, "split": s,
                "status": (f"mean CN on A_train: training positives {st['train_pos_train']:.2f}, test positives "
                           f"{st['test_pos_train']:.2f}, negatives {st['test_neg_train']:.2f}; test positives keep "
                           f"{st['test_pos_train'] / max(st['test_pos_full'], 1e-12):.0%} of their full-graph count")}

    return widgets.Panel(controls, fig, draw)


def completion_panel(comp: Completion, **knobs):
    """Pure maths on a trained NCN's logits (:func:`completion_study`): the calibration curve
    ``p(f)`` of :func:`completion_prob` over the histogram of candidate logits (left), and the mean
    soft mass it adds to test positives and negatives with the AUC of the plain and the completed
    counts (right), as scale, offset, pt and alpha move."""
    import ipywidgets as W

    from .. import widgets

    k = CORA_COMPLETION | knobs
    style = dict(continuous_update=False, style={"description_width": "initial"})
    controls = {
        "scale": W.FloatLogSlider(value=k["scale"], base=10, min=-1, max=1, step=0.05, description="scale",
                                  readout_format=".3g", **style),
        "offset": W.FloatSlider(value=k["offset"], min=-4.0, max=8.0, step=0.1, description="offset",
                                readout_format=".1f", **style),
        "pt": W.FloatSlider(value=k["pt"], min=0.05, max=1.0, step=0.05, description="pt", readout_format=".2f",
                            **style),
        "alpha": W.FloatSlider(value=k["alpha"], min=0.0, max=1.0, step=0.05, description="α",
                               readout_format=".2f", **style),
    }
    fig, axes = plots.new_figure(2, width=4.9, height=3.6)
    ax0, ax1 = axes[0]
    f = comp.logits.numpy()
    lo, hi = float(np.quantile(f, 0.001)) - 1, float(np.quantile(f, 0.999)) + 1
    grid = torch.linspace(lo, hi, 200)
    pos_cand = comp.is_pos[comp.link].numpy()
    bins = np.linspace(lo, hi, 50)
    ax0.hist(f[pos_cand], bins=bins, density=True, color=plots.POS_COLOR, alpha=0.3, label="candidates of positives")
    ax0.hist(f[~pos_cand], bins=bins, density=True, color=plots.NEG_COLOR, alpha=0.3, label="candidates of negatives")
    (curve,) = ax0.plot(grid.numpy(), grid.numpy() * 0, color="k", lw=2, label="$\\hat p(f)$")
    ax0.plot(grid.numpy(), torch.sigmoid(grid).numpy(), color=plots.MUTED, ls="--", label="σ(f)")
    ax0.set(xlabel="NCN logit f of a candidate edge (j, u)", ylabel="p̂  /  density", ylim=(0, 1.05),
            title="the completion curve")
    ax0.legend(fontsize=8, loc="upper left")
    bar = ax1.bar([0, 1], [0, 0], color=[plots.POS_COLOR, plots.NEG_COLOR])
    ax1.set_xticks([0, 1], ["test positives", "negatives"])
    ax1.set_yscale("symlog", linthresh=0.1)
    ax1.set(ylabel="mean soft mass added (symlog)", ylim=(0, 50))
    labels = [ax1.text(x, 0, "", ha="center", va="bottom") for x in (0, 1)]

    def draw(v):
        p = completion_prob(grid, scale=v["scale"], offset=v["offset"], pt=v["pt"], alpha=v["alpha"])
        curve.set_ydata(p.numpy())
        res = completion_auc(comp, scale=v["scale"], offset=v["offset"], pt=v["pt"], alpha=v["alpha"])
        for rect, label, m in zip(bar, labels, (res["mass_pos"], res["mass_neg"])):
            rect.set_height(m)
            label.set_position((rect.get_x() + rect.get_width() / 2, m))
            label.set_text(f"{m:.3g}")
        ax1.set_title(f"AUC: plain count {res['auc_cn']:.3f}, completed {res['auc_completed']:.3f}", fontsize=11)
        return {**res, "status": (f"scale {v['scale']:.3g}, offset {v['offset']:.1f}, pt {v['pt']:.2f}, α {v['alpha']:.2f}: "
                                  f"adds {res['mass_pos']:.3g} common neighbours to a test positive and "
                                  f"{res['mass_neg']:.3g} to a negative on average")}

    return widgets.Panel(controls, fig, draw)


def training_panel(*, autorun: bool = True, **defaults):
    """A Train button over :func:`train_link`: scorer, split, target-link removal, negatives per
    positive, closure strength, epochs, seed.  Draws the loss, the test AUC per epoch (with the CN
    count's AUC) and the loss's weights by common-neighbour count."""
    import ipywidgets as W

    from .. import widgets

    d = dict(kind="ncn", split="random", remove_target=True, negatives=1, closure=0.5, epochs=30, seed=0) | defaults
    style = dict(continuous_update=False, style={"description_width": "initial"})
    controls = {
        "kind": W.Dropdown(options=list(KINDS), value=d["kind"], description="scorer", layout=W.Layout(width="160px")),
        "split": W.Dropdown(options=list(SPLITS), value=d["split"], description="split", layout=W.Layout(width="180px")),
        "remove_target": W.Checkbox(value=d["remove_target"], description="remove target", indent=False),
        "negatives": W.IntSlider(value=d["negatives"], min=1, max=10, description="neg / pos", **style),
        "closure": W.FloatSlider(value=d["closure"], min=0.0, max=1.0, step=0.1, description="closure",
                                 readout_format=".1f", **style),
        "epochs": W.IntSlider(value=d["epochs"], min=5, max=60, step=5, description="epochs", **style),
        "seed": W.BoundedIntText(value=d["seed"], min=0, max=99, description="seed", layout=W.Layout(width="140px")),
    }

    def run(v, progress):
        return train_link(v["kind"], split=v["split"], closure=v["closure"], epochs=v["epochs"],
                          negatives=v["negatives"], remove_target=v["remove_target"], seed=v["seed"], progress=progress)

    def draw(axes, result, _v):
        p = result.params
        s = make_split(split=p["split"], closure=p["closure"], seed=p["seed"])
        cn = cn_counts(s.A_train, torch.cat([s.test_pos, s.test_neg]))
        ref = roc_auc(cn[len(s.test_pos):], cn[:len(s.test_pos)])
        plot_runs(axes[0, :2], {p["kind"]: result}, reference=ref)
        weights_by_cn(axes[0, 2], {p["kind"]: result}, s)
        return {"status": f"{result!r} in {result.seconds:.1f} s; the CN count alone: AUC {ref:.3f}", "auc_cn": ref}

    return widgets.run_panel(controls, run, draw, ncols=3, width=3.3, height=3.4, autorun=autorun)
