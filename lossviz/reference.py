r"""Slow, obviously-correct reference implementations of the pair losses and their pair weights.

These are **independent references** for the tests and for notebook cells that check the fast,
vectorised code of :mod:`lossviz.pairs`; nothing on the training path uses them.  Each one is
written straight from the formula with Python loops over anchors, pairs and triplets, so that a
reader can hold it next to the paper (Wang et al., CVPR 2019) and see that it is right.

Two families:

* ``*_loss_ref(S, labels, **knobs)``: the loss, with the same signature and the same semantics as
  its fast twin (the mean over all B anchors of a per-anchor term).  It is built from float64
  **torch scalar operations on the entries of S**, so autograd through the loops gives a reference
  gradient ``dL/dS`` too.  Sums such as ``log(1 + sum exp)`` are written naively: the references
  are meant for moderate values (float64 overflows only past ``exp(709)``).
* ``*_weights_closed_form(S, labels, **knobs)``: the paper's closed-form pair weights
  ``w_ij = |dL/dS_ij|`` as a float64 B x B tensor, **including** the ``1/B`` of the mean over
  anchors, so that it compares directly with :func:`lossviz.pair_weights`.

Decisions (which pairs are mined, which hinges are active, which negative is semi-hard) are taken
on Python floats; the loss values are accumulated on 0-d tensors.  No input checks: a reference
trusts its caller.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "binomial_deviance_loss_ref",
    "binomial_weights_closed_form",
    "contrastive_loss_ref",
    "contrastive_weights_closed_form",
    "lifted_structure_loss_ref",
    "lifted_weights_closed_form",
    "ms_anchor_terms_ref",
    "ms_loss_ref",
    "ms_mining_ref",
    "ms_weights_closed_form",
    "triplet_loss_ref",
    "triplet_weights_closed_form",
]


# --------------------------------------------------------------------------------------------
# Plumbing: S as a list of lists of differentiable float64 scalars, labels as Python ints.
# --------------------------------------------------------------------------------------------

def _unpack(S, labels):
    """``(s, v, y, zero)``: ``s[i][j]`` a differentiable float64 0-d tensor, ``v[i][j]`` its float
    value, ``y`` the labels as ints, and ``zero`` a differentiable 0.0 that starts every sum (so a
    loss that keeps no pair still has a gradient: exactly zero)."""
    S64 = torch.as_tensor(S).to(torch.float64)
    s = [list(row.unbind(0)) for row in S64.unbind(0)]
    v = S64.detach().tolist()
    y = [int(t) for t in torch.as_tensor(labels).reshape(-1).tolist()]
    zero = (S64 * 0.0).sum()
    return s, v, y, zero


def _positives(y, i):
    """P_i: same label as anchor i, i itself excluded (by index)."""
    return [j for j in range(len(y)) if j != i and y[j] == y[i]]


def _negatives(y, i):
    """N_i: a different label from anchor i."""
    return [j for j in range(len(y)) if y[j] != y[i]]


def _exp(t: float) -> float:
    """math.exp, but inf instead of an OverflowError (then 1 / inf = 0, as it should be)."""
    return math.exp(t) if t < 709.0 else math.inf


def _sigmoid(t: float) -> float:
    return 1.0 / (1.0 + _exp(-t))


# --------------------------------------------------------------------------------------------
# Multi-Similarity
# --------------------------------------------------------------------------------------------

def _ms_sets(v, y, i, eps, mining):
    """Anchor i's (P_i, N_i): all pairs, or the pairs kept by MS epsilon-mining.

    Mining reads the *unmined* sets: keep negative j if S_ij + eps > min_{k in P_i} S_ik,
    keep positive j if S_ij - eps < max_{k in N_i} S_ik (an empty set gives min = +inf,
    max = -inf, so nothing of the other kind is kept)."""
    pos, neg = _positives(y, i), _negatives(y, i)
    if not mining:
        return pos, neg
    min_pos = min((v[i][k] for k in pos), default=math.inf)
    max_neg = max((v[i][k] for k in neg), default=-math.inf)
    mined_pos = [j for j in pos if v[i][j] - eps < max_neg]
    mined_neg = [j for j in neg if v[i][j] + eps > min_pos]
    return mined_pos, mined_neg


def ms_mining_ref(S, labels, *, eps: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """Boolean B x B masks ``(mined_pos, mined_neg)`` of MS epsilon-mining, one anchor at a time."""
    _, v, y, _ = _unpack(S, labels)
    B = len(y)
    mined_pos = torch.zeros(B, B, dtype=torch.bool)
    mined_neg = torch.zeros(B, B, dtype=torch.bool)
    for i in range(B):
        P, N = _ms_sets(v, y, i, eps, True)
        for j in P:
            mined_pos[i, j] = True
        for j in N:
            mined_neg[i, j] = True
    return mined_pos, mined_neg


def ms_anchor_terms_ref(S, labels, *, alpha: float = 2.0, beta: float = 50.0, lam: float = 0.5,
                        eps: float = 0.1, mining: bool = True, weighting: bool = True):
    r"""Per-anchor MS terms ``[(pos_term_i, neg_term_i) for i in range(B)]`` as 0-d tensors.

    weighting=True:   pos_i = 1/alpha log[1 + sum_{k in P_i} e^{-alpha (S_ik - lam)}]
                      neg_i = 1/beta  log[1 + sum_{k in N_i} e^{ beta (S_ik - lam)}]
    weighting=False:  pos_i = sum_{k in P_i} (1 - S_ik),  neg_i = sum_{k in N_i} (1 + S_ik)
                      (every mined pair has weight 1; alpha, beta, lam play no part)

    An empty (mined) set gives a term of exactly 0.
    """
    s, v, y, zero = _unpack(S, labels)
    terms = []
    for i in range(len(y)):
        P, N = _ms_sets(v, y, i, eps, mining)
        pos_term, neg_term = zero, zero
        if weighting:
            if P:
                pos_sum = sum(torch.exp(-alpha * (s[i][k] - lam)) for k in P)
                pos_term = torch.log(1 + pos_sum) / alpha
            if N:
                neg_sum = sum(torch.exp(beta * (s[i][k] - lam)) for k in N)
                neg_term = torch.log(1 + neg_sum) / beta
        else:
            for k in P:
                pos_term = pos_term + (1 - s[i][k])
            for k in N:
                neg_term = neg_term + (1 + s[i][k])
        terms.append((pos_term, neg_term))
    return terms


def ms_loss_ref(S, labels, *, alpha: float = 2.0, beta: float = 50.0, lam: float = 0.5,
                eps: float = 0.1, mining: bool = True, weighting: bool = True) -> torch.Tensor:
    r"""Multi-Similarity loss, one anchor at a time:

    L = 1/B sum_i { 1/alpha log[1 + sum_{k in P_i} e^{-alpha (S_ik - lam)}]
                  + 1/beta  log[1 + sum_{k in N_i} e^{ beta (S_ik - lam)}] }

    with P_i, N_i mined (``mining=True``) or all pairs; ``weighting=False`` is the "mining only"
    ablation (see :func:`ms_anchor_terms_ref`)."""
    terms = ms_anchor_terms_ref(S, labels, alpha=alpha, beta=beta, lam=lam, eps=eps,
                                mining=mining, weighting=weighting)
    return sum(pos_term + neg_term for pos_term, neg_term in terms) / len(terms)


def ms_weights_closed_form(S, labels, *, alpha: float = 2.0, beta: float = 50.0, lam: float = 0.5,
                           eps: float = 0.1, mining: bool = True,
                           weighting: bool = True) -> torch.Tensor:
    r"""MS pair weights (paper's table), divided by B, on the (mined) pairs, 0 elsewhere:

    w+_ij = 1 / (e^{alpha (S_ij - lam)} + sum_{k in P_i} e^{-alpha (S_ik - S_ij)})
    w-_ij = 1 / (e^{beta (lam - S_ij)}  + sum_{k in N_i} e^{ beta (S_ik - S_ij)})

    (the sums include k = j, a term e^0 = 1).

    ``weighting=False``: every mined pair has weight 1 (then 1/B)."""
    _, v, y, _ = _unpack(S, labels)
    B = len(y)
    W = torch.zeros(B, B, dtype=torch.float64)
    for i in range(B):
        P, N = _ms_sets(v, y, i, eps, mining)
        for j in P:
            if weighting:
                others = sum(_exp(-alpha * (v[i][k] - v[i][j])) for k in P)
                den = _exp(alpha * (v[i][j] - lam)) + others
                W[i, j] = 1.0 / den
            else:
                W[i, j] = 1.0
        for j in N:
            if weighting:
                others = sum(_exp(beta * (v[i][k] - v[i][j])) for k in N)
                den = _exp(beta * (lam - v[i][j])) + others
                W[i, j] = 1.0 / den
            else:
                W[i, j] = 1.0
    return W / B


# --------------------------------------------------------------------------------------------
# Contrastive
# --------------------------------------------------------------------------------------------

def contrastive_loss_ref(S, labels, *, lam: float = 0.5) -> torch.Tensor:
    r"""L = 1/B sum_i [ sum_{j in P_i} (1 - S_ij) + sum_{j in N_i} [S_ij - lam]_+ ]"""
    s, _, y, zero = _unpack(S, labels)
    total = zero
    for i in range(len(y)):
        for j in _positives(y, i):
            total = total + (1 - s[i][j])
        for j in _negatives(y, i):
            total = total + torch.relu(s[i][j] - lam)
    return total / len(y)


def contrastive_weights_closed_form(S, labels, *, lam: float = 0.5) -> torch.Tensor:
    """w+ = 1 on every positive; w- = 1 on a negative with S_ij > lam, else 0 (then / B)."""
    _, v, y, _ = _unpack(S, labels)
    B = len(y)
    W = torch.zeros(B, B, dtype=torch.float64)
    for i in range(B):
        for j in _positives(y, i):
            W[i, j] = 1.0
        for j in _negatives(y, i):
            W[i, j] = 1.0 if v[i][j] > lam else 0.0
    return W / B


# --------------------------------------------------------------------------------------------
# Triplet
# --------------------------------------------------------------------------------------------

def _semihard_negative(v, a, p, N):
    """FaceNet's semi-hard rule (as in TensorFlow Addons): the most similar negative that is still
    less similar than the positive (S_an < S_ap); if there is none, the least similar negative."""
    semihard = [n for n in N if v[a][n] < v[a][p]]
    if semihard:
        return max(semihard, key=lambda n: v[a][n])
    return min(N, key=lambda n: v[a][n])


def triplet_loss_ref(S, labels, *, margin: float = 0.1, mining: str = "all") -> torch.Tensor:
    r"""Triplet loss on similarities.

    mining="all":      L = 1/B sum_a sum_{p in P_a} sum_{n in N_a} [S_an - S_ap + margin]_+
    mining="semihard": L = 1/B sum_a sum_{p in P_a} [S_an* - S_ap + margin]_+, with n* the
                       semi-hard negative of (a, p) (an anchor without negatives adds 0)."""
    s, v, y, zero = _unpack(S, labels)
    total = zero
    for a in range(len(y)):
        P, N = _positives(y, a), _negatives(y, a)
        for p in P:
            if mining == "all":
                for n in N:
                    total = total + torch.relu(s[a][n] - s[a][p] + margin)
            elif N:
                n = _semihard_negative(v, a, p, N)
                total = total + torch.relu(s[a][n] - s[a][p] + margin)
    return total / len(y)


def triplet_weights_closed_form(S, labels, *, margin: float = 0.1) -> torch.Tensor:
    """Batch-all triplet weights: the number of active triplets (S_an - S_ap + margin > 0) that
    contain pair (a, p) or (a, n), divided by B."""
    _, v, y, _ = _unpack(S, labels)
    B = len(y)
    W = torch.zeros(B, B, dtype=torch.float64)
    for a in range(B):
        for p in _positives(y, a):
            for n in _negatives(y, a):
                if v[a][n] - v[a][p] + margin > 0:
                    W[a, p] += 1.0
                    W[a, n] += 1.0
    return W / B


# --------------------------------------------------------------------------------------------
# Binomial deviance
# --------------------------------------------------------------------------------------------

def binomial_deviance_loss_ref(S, labels, *, alpha: float = 2.0, beta: float = 40.0,
                               lam: float = 0.5) -> torch.Tensor:
    r"""L = 1/B sum_i [ 1/|P_i| sum_{j in P_i} log(1 + e^{-alpha (S_ij - lam)})
                      + 1/|N_i| sum_{j in N_i} log(1 + e^{ beta (S_ij - lam)}) ]
    (an empty set adds 0)."""
    s, _, y, zero = _unpack(S, labels)
    total = zero
    for i in range(len(y)):
        P, N = _positives(y, i), _negatives(y, i)
        for j in P:
            total = total + torch.log(1 + torch.exp(-alpha * (s[i][j] - lam))) / len(P)
        for j in N:
            total = total + torch.log(1 + torch.exp(beta * (s[i][j] - lam))) / len(N)
    return total / len(y)


def binomial_weights_closed_form(S, labels, *, alpha: float = 2.0, beta: float = 40.0,
                                 lam: float = 0.5) -> torch.Tensor:
    """w+ = alpha/|P_i| sigmoid(alpha (lam - S_ij)); w- = beta/|N_i| sigmoid(beta (S_ij - lam));
    then / B."""
    _, v, y, _ = _unpack(S, labels)
    B = len(y)
    W = torch.zeros(B, B, dtype=torch.float64)
    for i in range(B):
        P, N = _positives(y, i), _negatives(y, i)
        for j in P:
            W[i, j] = alpha / len(P) * _sigmoid(alpha * (lam - v[i][j]))
        for j in N:
            W[i, j] = beta / len(N) * _sigmoid(beta * (v[i][j] - lam))
    return W / B


# --------------------------------------------------------------------------------------------
# Lifted structure
# --------------------------------------------------------------------------------------------

def lifted_structure_loss_ref(S, labels, *, lam: float = 1.0, scale: float = 1.0) -> torch.Tensor:
    r"""L = 1/B sum_i [ log sum_{k in P_i} e^{lam - s S_ik} + log sum_{k in N_i} e^{s S_ik} ]_+ with
    s = scale (an anchor without positives or without negatives adds 0)."""
    s, _, y, zero = _unpack(S, labels)
    total = zero
    for i in range(len(y)):
        P, N = _positives(y, i), _negatives(y, i)
        if P and N:
            pos_part = torch.log(sum(torch.exp(lam - scale * s[i][k]) for k in P))
            neg_part = torch.log(sum(torch.exp(scale * s[i][k]) for k in N))
            total = total + torch.relu(pos_part + neg_part)
    return total / len(y)


def lifted_weights_closed_form(S, labels, *, lam: float = 1.0, scale: float = 1.0) -> torch.Tensor:
    """While anchor i's hinge is active: w+_ij = s / sum_{k in P_i} e^{s (S_ij - S_ik)},
    w-_ij = s / sum_{k in N_i} e^{s (S_ik - S_ij)} with s = scale; 0 otherwise (then / B)."""
    _, v, y, _ = _unpack(S, labels)
    B = len(y)
    W = torch.zeros(B, B, dtype=torch.float64)
    for i in range(B):
        P, N = _positives(y, i), _negatives(y, i)
        if not (P and N):
            continue
        hinge = (math.log(sum(_exp(lam - scale * v[i][k]) for k in P))
                 + math.log(sum(_exp(scale * v[i][k]) for k in N)))
        if hinge <= 0:
            continue
        for j in P:
            W[i, j] = scale / sum(_exp(scale * (v[i][j] - v[i][k])) for k in P)
        for j in N:
            W[i, j] = scale / sum(_exp(scale * (v[i][k] - v[i][j])) for k in N)
    return W / B


# --------------------------------------------------------------------------------------------
# The InfoNCE family (lossviz.contrastive): NT-Xent and supervised contrastive
# --------------------------------------------------------------------------------------------

def nt_xent_loss_ref(S, labels, *, tau: float = 0.1) -> torch.Tensor:
    r"""NT-Xent, one positive pair at a time:

    L = 1/|P| sum_{(i, p)} -log( e^{S_ip/tau} / (e^{S_ip/tau} + sum_{n in N_i} e^{S_in/tau}) )

    the mean over all positive pairs (i, p), p in P_i (an anchor without negatives adds terms
    -log 1 = 0, which still count); 0 when there is no positive pair."""
    s, _, y, zero = _unpack(S, labels)
    total, count = zero, 0
    for i in range(len(y)):
        N = _negatives(y, i)
        for p in _positives(y, i):
            numerator = torch.exp(s[i][p] / tau)
            denominator = numerator + sum((torch.exp(s[i][n] / tau) for n in N), zero)
            total = total - torch.log(numerator / denominator)
            count += 1
    return total / max(count, 1)


def supcon_loss_ref(S, labels, *, tau: float = 0.1) -> torch.Tensor:
    r"""Supervised contrastive loss (Khosla et al. 2020, L_out), one anchor at a time:

    L = 1/|I+| sum_{i in I+} 1/|P_i| sum_{p in P_i} -log( e^{S_ip/tau} / sum_{k != i} e^{S_ik/tau} )

    with I+ the anchors that have a positive; 0 when there is none."""
    s, _, y, zero = _unpack(S, labels)
    total, count = zero, 0
    for i in range(len(y)):
        P = _positives(y, i)
        if not P:
            continue
        denominator = sum(torch.exp(s[i][k] / tau) for k in range(len(y)) if k != i)
        anchor_term = zero
        for p in P:
            anchor_term = anchor_term - torch.log(torch.exp(s[i][p] / tau) / denominator)
        total = total + anchor_term / len(P)
        count += 1
    return total / max(count, 1)


__all__ += ["nt_xent_loss_ref", "supcon_loss_ref"]


# --------------------------------------------------------------------------------------------
# The per-negative weight view of NT-Xent (Wang & Liu 2021) and the geometry metrics
# --------------------------------------------------------------------------------------------

def relative_penalty_ref(S, labels, *, tau: float = 0.1) -> torch.Tensor:
    r"""r_ik = e^{S_ik/tau} / sum_{k' in N_i} e^{S_ik'/tau} for each negative k of anchor i, 0 elsewhere
    (float64 B x B; written with the row's largest negative subtracted, so small tau is safe)."""
    _, v, y, _ = _unpack(S, labels)
    B = len(y)
    R = torch.zeros(B, B, dtype=torch.float64)
    for i in range(B):
        N = _negatives(y, i)
        if not N:
            continue
        top = max(v[i][k] for k in N)
        Z = sum(math.exp((v[i][k] - top) / tau) for k in N)
        for k in N:
            R[i, k] = math.exp((v[i][k] - top) / tau) / Z
    return R


def negative_weight_entropy_ref(S, labels, *, tau: float = 0.1) -> torch.Tensor:
    r"""H_i = -sum_{k in N_i} r_ik log r_ik, one anchor at a time (0 for an anchor without negatives)."""
    R = relative_penalty_ref(S, labels, tau=tau)
    return torch.tensor([-sum(float(r) * math.log(float(r)) for r in row if r > 0) for row in R],
                        dtype=torch.float64)


def nt_xent_weights_closed_form(S, labels, *, tau: float = 0.1) -> torch.Tensor:
    r"""NT-Xent's weights without its constant factors: for each positive pair (i, p), with q the
    softmax of S_i./tau over {p} ∪ N_i, add 1 - q_p at (i, p) and q_n at each (i, n)."""
    _, v, y, _ = _unpack(S, labels)
    B = len(y)
    W = torch.zeros(B, B, dtype=torch.float64)
    for i in range(B):
        N = _negatives(y, i)
        if not N:
            continue
        for p in _positives(y, i):
            top = max(v[i][k] for k in [p] + N)
            e = {k: math.exp((v[i][k] - top) / tau) for k in [p] + N}
            Z = sum(e.values())
            W[i, p] += 1 - e[p] / Z
            for n in N:
                W[i, n] += e[n] / Z
    return W


def _unit(f):
    norm = math.sqrt(sum(a * a for a in f))
    return [a / norm for a in f]


def uniformity_ref(emb, *, t: float = 2.0) -> float:
    r"""log( mean over pairs i < j of exp(-t ||f_i - f_j||^2) ), f the L2-normalised rows."""
    f = [_unit(row) for row in torch.as_tensor(emb).double().tolist()]
    terms = [math.exp(-t * sum((a - b) ** 2 for a, b in zip(f[i], f[j])))
             for i in range(len(f)) for j in range(i + 1, len(f))]
    return math.log(sum(terms) / len(terms))


def alignment_ref(emb1, emb2, *, alpha: float = 2.0) -> float:
    r"""mean over i of ||f1_i - f2_i||^alpha, rows L2-normalised."""
    f1 = [_unit(row) for row in torch.as_tensor(emb1).double().tolist()]
    f2 = [_unit(row) for row in torch.as_tensor(emb2).double().tolist()]
    return sum(math.sqrt(sum((a - b) ** 2 for a, b in zip(u, w))) ** alpha for u, w in zip(f1, f2)) / len(f1)


def tolerance_ref(emb, labels) -> float:
    r"""mean over ordered pairs i != j of the same class of f_i . f_j, rows L2-normalised."""
    f = [_unit(row) for row in torch.as_tensor(emb).double().tolist()]
    y = [int(t) for t in torch.as_tensor(labels).tolist()]
    sims = [sum(a * b for a, b in zip(f[i], f[j]))
            for i in range(len(f)) for j in range(len(f)) if i != j and y[i] == y[j]]
    return sum(sims) / len(sims)


__all__ += ["alignment_ref", "negative_weight_entropy_ref", "nt_xent_weights_closed_form",
            "relative_penalty_ref", "tolerance_ref", "uniformity_ref"]


def simple_contrastive_loss_ref(S, labels, *, lam: float = 0.01) -> torch.Tensor:
    r"""L = 1/|P| sum_{(i, p)} ( -S_ip + lam sum_{n in N_i} S_in ), one positive pair at a time."""
    s, _, y, zero = _unpack(S, labels)
    total, count = zero, 0
    for i in range(len(y)):
        for p in _positives(y, i):
            total = total - s[i][p] + lam * sum((s[i][n] for n in _negatives(y, i)), zero)
            count += 1
    return total / max(count, 1)


def hard_nt_xent_loss_ref(S, labels, *, tau: float = 0.1, frac: float = 0.1) -> torch.Tensor:
    r"""NT-Xent where anchor i's denominator keeps only the negatives at least as similar as its
    ceil(frac |N_i|)-th most similar negative."""
    s, v, y, zero = _unpack(S, labels)
    total, count = zero, 0
    for i in range(len(y)):
        N = _negatives(y, i)
        if N:
            cut = sorted((v[i][n] for n in N), reverse=True)[math.ceil(frac * len(N)) - 1]
            N = [n for n in N if v[i][n] >= cut]
        for p in _positives(y, i):
            numerator = torch.exp(s[i][p] / tau)
            denominator = numerator + sum((torch.exp(s[i][n] / tau) for n in N), zero)
            total = total - torch.log(numerator / denominator)
            count += 1
    return total / max(count, 1)


__all__ += ["hard_nt_xent_loss_ref", "simple_contrastive_loss_ref"]
