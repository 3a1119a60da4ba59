r"""Order matters: sequence to sequence for sets (Vinyals, Bengio & Kudlur, ICLR 2016), in miniature.

A sequence model factors ``p(Y | X)`` with the chain rule, one element after another, so it needs an
order on its input and on its output.  A set has none.  The paper's two answers, as code:

* **Input sets: Read-Process-Write.**  :class:`ProcessBlock` is the order-free encoder
  (``q_t = LSTM(q*_{t-1})``, ``a_{i,t} = softmax_i <m_i, q_t>``, ``r_t = sum_i a_{i,t} m_i``,
  ``q*_t = [q_t ; r_t]``); :class:`ReadProcessWrite` adds the read MLP and a pointer-network writer
  (masked or not, with or without the chosen element fed back), or an order-dependent LSTM reader in
  place of the process block (``encoder="lstm"``, the seq2seq baseline).
  :func:`pointer_nll` is the loss: the negative log-likelihood of the target order,
  ``-sum_j log softmax_i(u^j_i)[pi_j]``.
* **Output sets: search over orders.**  :func:`order_search_loss` scores a set by its orders'
  log-likelihoods: one fixed order, the best order (``max``, the paper's loss) or all orders
  (``lse``, the marginal likelihood of the set; an exercise, not the paper's).
  :func:`order_weights` is its General Pair Weighting view: the weight ``-dL/d log p(Y_pi|X)`` that
  training puts on each order, by autograd.
* Experiments (seeded, cached with :func:`lossviz.train.memo`): :func:`train_sort` (sorting
  N numbers, the input-set task) and :func:`train_topk` (the set of the k largest of 10 numbers, the
  output-set task, with ``desc``, ``index``, ``random`` or ``max`` target orders).
* Pictures and panels: :func:`encoder_shift` (how much an encoder's state moves when the input is
  permuted), :func:`pointer_plot`, :func:`order_panel` (pure maths on the snapshots of a run) and
  :func:`sort_panel` / :func:`topk_panel` (Train buttons).
"""

from __future__ import annotations

import copy
import itertools
import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .. import checks, plots
from ..train import Run, Trainer, memo

#: Target orders for an output set: by value (largest first), by index, a fresh random order per example
#: and step, or the model's own most likely order (the paper's search, after a random-order warm-up).
ORDER_MODES = ("desc", "index", "random", "max")
#: The order weightings :func:`order_search_loss` knows: one given order, the best one, all of them.
SEARCH_MODES = ("fixed", "max", "lse")
#: One colour per training choice (never the pair colours, which mean pull / push).
COLORS = {"P=0": "#999999", "P=1": "#009E73", "desc": "#0072B2", "index": "#E69F00", "random": "#CC79A7",
          "max": "#5D3A9B", "lse": "#56B4E9", "lstm": "#8C6D1F"}


# ------------------------------------------------------------------------------------------------
# The losses
# ------------------------------------------------------------------------------------------------

def _check_logits(logits, target):
    with checks.validation(False):          # -inf is allowed: it marks a masked element
        logits = checks.as_float_tensor(logits, "logits (pointer scores u, B x J x N)", 3)
    if checks.validation_enabled() and bool((torch.isnan(logits) | torch.isposinf(logits)).any()):
        raise ValueError("logits contain NaN or +Inf (only -inf is allowed, for a masked element); check the "
                         "model's output (a learning rate too high?)")
    if not isinstance(target, torch.Tensor):
        target = torch.as_tensor(target)
    if target.dtype == torch.bool or target.is_floating_point() or target.is_complex():
        raise ValueError(f"target must hold integer element indices; got dtype {target.dtype}. Use target.long().")
    B, J, N = logits.shape
    if target.shape != (B, J):
        raise ValueError(f"target must have shape ({B}, {J}), one index per output step; got {tuple(target.shape)}")
    target = target.long().to(logits.device)
    if checks.validation_enabled() and bool(((target < 0) | (target >= N)).any()):
        raise ValueError(f"target indices must be in [0, {N}) (the elements of the set)")
    return logits, target


def pointer_log_likelihood(logits, target) -> torch.Tensor:
    r"""``log p(Y_pi | X)`` per example (B,): the chain rule over the output steps of a pointer network,

    .. math::
        \log p(Y_\pi \mid X) = \sum_{j=1}^{J} \log \operatorname{softmax}_i(u^j_i)\big|_{i = \pi_j}

    ``logits`` (B x J x N) are the scores ``u^j_i`` (``-inf`` on masked elements), ``target`` (B x J)
    the index chosen at each step.  A target on a masked element (probability 0) is refused with a
    ValueError, since its log-likelihood would be ``-inf``."""
    logits, target = _check_logits(logits, target)
    picked = logits.gather(2, target[..., None])[..., 0]
    if checks.validation_enabled() and bool(torch.isneginf(picked).any()):
        b, j = (int(v) for v in torch.isneginf(picked).nonzero()[0])
        raise ValueError(f"example {b}, step {j}: the target points at a masked element (score -inf), so the "
                         "order has probability 0. With a masking writer an order cannot repeat an element")
    return (picked - torch.logsumexp(logits, dim=2)).sum(dim=1)


def pointer_nll(logits, target) -> torch.Tensor:
    r"""The sequence loss of a pointer network, averaged over the batch:
    :math:`L = -\frac1B \sum_b \sum_j \log p(\pi_j \mid \pi_{<j}, X)` (:func:`pointer_log_likelihood`)."""
    return -pointer_log_likelihood(logits, target).mean()


def order_search_loss(logp, mode: str = "max", index=None) -> torch.Tensor:
    r"""A loss on output *sets*, from the log-likelihoods of each set's orders.

    ``logp`` is B x K: ``log p(Y_pi | X)`` for the K orders of each example's set (K = k! for a
    k-element set).  Averaged over the batch,

    * ``fixed``: :math:`-\log p(Y_{\pi_b} \mid X)` for the order ``index[b]`` (a fixed order such as
      "by value", or a random one per example: ``random`` mode);
    * ``max``: :math:`-\max_\pi \log p(Y_\pi \mid X)`, the paper's loss: train each example on the
      order the model finds most likely (hard mining over orders);
    * ``lse``: :math:`-\log \sum_\pi p(Y_\pi \mid X)`, the marginal likelihood of the set (soft
      weighting over orders; an exercise, not the paper's loss).
    """
    logp = checks.as_float_tensor(logp, "logp (log-likelihood of each order, B x K)", 2)
    checks.choice(mode, "mode", SEARCH_MODES)
    if checks.validation_enabled() and bool((logp > 1e-6).any()):
        raise ValueError("logp holds log-probabilities, which are <= 0; got a positive value")
    if mode == "max":
        return -logp.max(dim=1).values.mean()
    if mode == "lse":
        return -torch.logsumexp(logp, dim=1).mean()
    if index is None:
        raise ValueError("mode='fixed' needs index=, the order to train each example on (B,)")
    index = torch.as_tensor(index)
    if index.dtype == torch.bool or index.is_floating_point():
        raise ValueError(f"index must hold integer order numbers; got dtype {index.dtype}")
    if index.shape != (logp.shape[0],):
        raise ValueError(f"index must have shape ({logp.shape[0]},); got {tuple(index.shape)}")
    if bool(((index < 0) | (index >= logp.shape[1])).any()):
        raise ValueError(f"index must be in [0, {logp.shape[1]})")
    return -logp.gather(1, index.long().to(logp.device)[:, None])[:, 0].mean()


def order_weights(logp, mode: str = "max", index=None) -> torch.Tensor:
    """The weight that :func:`order_search_loss` puts on each order (B x K), ``-B dL/d log p``, by
    autograd: one-hot on the chosen order (``fixed``), on the most likely one (``max``), the
    posterior ``softmax_pi log p(Y_pi | X)`` (``lse``).  Each row sums to 1."""
    leaf = checks.as_float_tensor(logp, "logp (log-likelihood of each order, B x K)", 2).detach().clone()
    leaf.requires_grad_(True)
    (grad,) = torch.autograd.grad(order_search_loss(leaf, mode, index), leaf)
    return -grad * leaf.shape[0] + 0.0          # + 0.0: no -0.0 in the printout


# ------------------------------------------------------------------------------------------------
# Read, Process, Write
# ------------------------------------------------------------------------------------------------

class ProcessBlock(nn.Module):
    r"""The process block: P steps of an LSTM that reads only its own attention read-out.

    .. math::
        q_t = \mathrm{LSTM}(q^*_{t-1}),\quad e_{i,t} = \langle m_i, q_t\rangle,\quad
        a_{i,t} = \operatorname{softmax}_i e_{i,t},\quad r_t = \sum_i a_{i,t} m_i,\quad q^*_t = [q_t ; r_t]

    from :math:`q^*_0 = 0`.  Nothing depends on the order of the rows of ``m``: :math:`q^*_P` is
    invariant to permutations of the set.  ``forward(m)`` (B x N x D) returns ``q*_P`` (B x 2D) and
    the attentions (B x P x N)."""

    def __init__(self, dim: int, steps: int):
        super().__init__()
        self.dim, self.steps = checks.integer(dim, "dim", 1), checks.integer(steps, "steps (P)", 0)
        self.lstm = nn.LSTMCell(2 * dim, dim)

    def forward(self, m: torch.Tensor):
        B, N, D = m.shape
        q_star = m.new_zeros(B, 2 * D)
        h = c = m.new_zeros(B, D)
        attention = []
        for _ in range(self.steps):
            h, c = self.lstm(q_star, (h, c))                    # q_t = LSTM(q*_{t-1})
            a = torch.softmax((m @ h[:, :, None])[..., 0], 1)   # a_{i,t} = softmax_i <m_i, q_t>
            r = (a[:, :, None] * m).sum(1)                      # r_t = sum_i a_{i,t} m_i
            q_star = torch.cat([h, r], dim=1)                   # q*_t = [q_t ; r_t]
            attention.append(a)
        return q_star, (torch.stack(attention, 1) if attention else m.new_zeros(B, 0, N))


class ReadProcessWrite(nn.Module):
    """Read (an MLP on each element), Process (:class:`ProcessBlock`, P steps) and Write (a pointer
    network).  The writer's initial LSTM state is a linear map of ``q*_P`` (zeros when P = 0);
    ``encoder="lstm"`` replaces the process block by an LSTM that reads the elements in the given
    order (its final state, mapped the same way): the order-dependent seq2seq baseline.

    At output step j the writer scores every element, ``u^j_i = v^T tanh(W1 m_i + W2 h_j)``.
    ``mask=True`` sets the scores of elements already chosen to ``-inf``; ``feed=True`` feeds the
    chosen element's ``m`` back as the next input (else a constant learned input)."""

    def __init__(self, in_dim: int = 1, dim: int = 32, steps: int = 1, *, encoder: str = "rpw",
                 mask: bool = False, feed: bool = True):
        super().__init__()
        checks.choice(encoder, "encoder", ("rpw", "lstm"))
        in_dim, dim = checks.integer(in_dim, "in_dim", 1), checks.integer(dim, "dim", 1)
        self.dim, self.encoder, self.mask, self.feed = dim, encoder, bool(mask), bool(feed)
        self.read = nn.Sequential(nn.Linear(in_dim, dim), nn.ReLU(), nn.Linear(dim, dim))
        self.process = ProcessBlock(dim, steps)
        self.reader = nn.LSTM(dim, dim, batch_first=True) if encoder == "lstm" else None
        self.init = nn.Linear(2 * dim, 2 * dim)
        self.writer = nn.LSTM(dim, dim, batch_first=True)
        self.start = nn.Parameter(torch.zeros(dim))
        self.W1, self.W2 = nn.Linear(dim, dim, bias=False), nn.Linear(dim, dim)
        self.v = nn.Linear(dim, 1, bias=False)

    def encode(self, x: torch.Tensor):
        """``(m, state, attention)``: the read-out of each element (B x N x D), the encoder state the
        writer starts from (``q*_P`` for RPW, ``[h_N ; c_N]`` for the LSTM reader; B x 2D) and the
        process block's attentions (B x P x N)."""
        m = self.read(x)
        if self.reader is not None:
            _, (h, c) = self.reader(m)
            return m, torch.cat([h[0], c[0]], dim=1), m.new_zeros(m.shape[0], 0, m.shape[1])
        q_star, attention = self.process(m)
        return m, q_star, attention

    def forward(self, x: torch.Tensor, target: torch.Tensor | None = None, steps: int | None = None):
        """Pointer scores ``u`` (B x J x N) and the process attentions.  With ``target`` (B x J) the
        writer is teacher-forced (all J steps in one LSTM call: its inputs are known in advance);
        without it, it decodes greedily for ``steps`` outputs (N by default), and the chosen
        indices are ``u.argmax(-1)``."""
        m, state, attention = self.encode(x)
        B, N, D = m.shape
        if self.reader is None and self.process.steps == 0:
            h0 = c0 = m.new_zeros(1, B, D)
        else:
            h0, c0 = (t[None].contiguous() for t in self.init(state).chunk(2, dim=1))
        keys, rows = self.W1(m), torch.arange(B, device=m.device)
        if target is not None:
            J = target.shape[1]
            fed = m[rows[:, None], target[:, :-1]] if self.feed else self.start.expand(B, J - 1, D)
            H, _ = self.writer(torch.cat([self.start.expand(B, 1, D), fed], dim=1), (h0, c0))
            u = self.v(torch.tanh(keys[:, None] + self.W2(H)[:, :, None]))[..., 0]      # u^j_i, B x J x N
            if self.mask:                          # elements chosen at steps < j
                picked = torch.nn.functional.one_hot(target, N).cumsum(1) - torch.nn.functional.one_hot(target, N)
                u = u.masked_fill(picked > 0, -math.inf)
            return u, attention
        state_hc, inp, chosen, scores = (h0, c0), self.start.expand(B, 1, D), torch.zeros(B, N, dtype=torch.bool,
                                                                                          device=m.device), []
        for _ in range(steps or N):
            H, state_hc = self.writer(inp, state_hc)
            u = self.v(torch.tanh(keys + self.W2(H[:, 0])[:, None, :]))[..., 0]
            if self.mask:
                u = u.masked_fill(chosen, -math.inf)
            scores.append(u)
            pick = u.argmax(1)
            chosen = chosen | (torch.arange(N, device=m.device)[None] == pick[:, None])
            inp = m[rows, pick][:, None] if self.feed else self.start.expand(B, 1, D)
        return torch.stack(scores, 1), attention

    @torch.no_grad()
    def decode(self, x: torch.Tensor, steps: int | None = None) -> torch.Tensor:
        """Greedy decoding: the index chosen at each output step (B x J)."""
        return self(x, steps=steps)[0].argmax(-1)


def encoder_shift(model: ReadProcessWrite, x: torch.Tensor, *, seed: int = 0) -> float:
    """``max |state(X) - state(pi X)|``: how far the encoder state moves when the elements of every
    set of ``x`` (B x N x F) are shuffled by a random permutation (seeded).  0 up to rounding for
    Read-Process-Write; not for the LSTM reader."""
    g = torch.Generator().manual_seed(seed)
    perm = torch.stack([torch.randperm(x.shape[1], generator=g) for _ in range(x.shape[0])])
    shuffled = x.gather(1, perm[..., None].expand_as(x))
    with torch.no_grad():
        return float((model.encode(x)[1] - model.encode(shuffled)[1]).abs().max())


# ------------------------------------------------------------------------------------------------
# The two tasks
# ------------------------------------------------------------------------------------------------

def sort_batch(n_sets: int, n: int, g: torch.Generator):
    """``x`` (n_sets x n x 1) uniform in [0, 1] and the target ``argsort(x)`` (smallest first)."""
    x = torch.rand(n_sets, n, 1, generator=g)
    return x, x[..., 0].argsort(dim=1)


def topk_batch(n_sets: int, n: int, k: int, g: torch.Generator):
    """``x`` (n_sets x n x (1 + n)): each element's value ~ N(0, 1) with a one-hot of its position,
    the values, and the target set: the indices of the k largest values, largest first (B x k)."""
    v = torch.randn(n_sets, n, generator=g)
    x = torch.cat([v[..., None], torch.eye(n).expand(n_sets, n, n)], dim=2)
    return x, v, v.topk(k, dim=1).indices


def all_orders(k: int) -> torch.Tensor:
    """The k! orders of k items (k! x k), the identity first (``itertools.permutations`` order)."""
    return torch.tensor(list(itertools.permutations(range(k))), dtype=torch.long)


def order_log_likelihoods(model: ReadProcessWrite, x: torch.Tensor, sets: torch.Tensor) -> torch.Tensor:
    """``log p(Y_pi | X)`` (B x k!) of every order of each example's target set ``sets`` (B x k,
    orders as in :func:`all_orders` applied to the columns of ``sets``), teacher-forced."""
    B, k = sets.shape
    perms = all_orders(k)
    targets = sets[:, perms].reshape(B * len(perms), k)               # example b, order p at row b * k! + p
    xs = x.repeat_interleave(len(perms), dim=0)
    logits, _ = model(xs, targets)
    return pointer_log_likelihood(logits, targets).reshape(B, len(perms))


@dataclass(repr=False)
class OrderRun(Run):
    """A run of :func:`train_sort` or :func:`train_topk`: ``history`` (iter, loss), ``evals`` (iter,
    accuracy, and for top-k the fraction of decodes in descending order), ``scores`` at the end,
    the trained ``model`` and, for top-k, ``snapshots`` of the weights along training."""

    model: nn.Module | None = None
    snapshots: list = field(default_factory=list)

    def __repr__(self) -> str:
        p, s = self.params, self.scores
        if p["task"] == "sort":
            return f"OrderRun(sort N={p['n']}, P={p['P']}, {self._writer()}: accuracy {s['accuracy']:.3f})"
        return (f"OrderRun(top-{p['k']} of {p['n']}, {p['mode']} order, P={p['P']}: set accuracy "
                f"{s['accuracy']:.3f}, decoded descending {s['desc_fraction']:.3f})")

    def _writer(self) -> str:
        p = self.params
        return f"{'masked' if p['mask'] else 'unmasked'}{', fed back' if p['feed'] else ''} writer, {p['encoder']}"


def _common(dim, steps, batch_size, lr, P):
    checks.integer(dim, "dim", 2)
    checks.integer(steps, "steps", 1)
    checks.integer(batch_size, "batch_size", 1)
    checks.integer(P, "P (process steps)", 0)
    return checks.positive(lr, "lr")


def train_sort(P: int = 1, *, n: int = 5, mask: bool = False, feed: bool = True, encoder: str = "rpw",
               dim: int = 32, steps: int = 200, batch_size: int = 128, lr: float = 1e-3, seed: int = 0,
               n_test: int = 1000, progress=True, cache: bool = True) -> OrderRun:
    """Learn to sort ``n`` numbers from U[0, 1] (the input-set task): teacher-forced
    :func:`pointer_nll` of the sorted order, Adam, ``batch_size`` fresh sets a step; test accuracy
    (the greedy decode is the exact sorted permutation) on ``n_test`` fixed sets, every 50 steps."""
    lr = _common(dim, steps, batch_size, lr, P)
    checks.integer(n, "n (set size)", 2)
    checks.choice(encoder, "encoder", ("rpw", "lstm"))
    params = dict(task="sort", P=P, n=n, mask=bool(mask), feed=bool(feed), encoder=encoder, dim=dim,
                  steps=steps, batch_size=batch_size, lr=lr, seed=seed, n_test=n_test)
    return memo("order_matters", params, lambda: _train_sort(params, progress), cache=cache)


def _train_sort(p: dict, progress) -> OrderRun:
    x_test, y_test = sort_batch(p["n_test"], p["n"], torch.Generator().manual_seed(10_000))
    trainer = Trainer(lambda: ReadProcessWrite(1, p["dim"], p["P"], encoder=p["encoder"], mask=p["mask"],
                                               feed=p["feed"]), lr=p["lr"], seed=p["seed"])
    model, g = trainer.model, torch.Generator().manual_seed(p["seed"])

    def step(it: int) -> dict:
        x, y = sort_batch(p["batch_size"], p["n"], g)
        loss = pointer_nll(model(x, y)[0], y)
        trainer.update(loss)
        return {"loss": loss.detach()}

    def evaluate() -> dict:
        return {"accuracy": float((model.decode(x_test) == y_test).all(1).float().mean())}

    history, evals, seconds = trainer.run(step, p["steps"], evaluate=evaluate, eval_every=50,
                                          desc=f"sort, P = {p['P']}", progress=progress)
    model.eval()
    return OrderRun(params=p, history=history, evals=evals, scores={"accuracy": float(evals["accuracy"][-1])},
                    seconds=seconds, model=model)


def topk_scores(model: ReadProcessWrite, x: torch.Tensor, values: torch.Tensor, sets: torch.Tensor) -> dict:
    """Set accuracy (the greedy decode, as a set, is the target set) and the fraction of decodes
    whose values come out largest first."""
    out = model.decode(x, steps=sets.shape[1])
    same_set = (out.sort(1).values == sets.sort(1).values).all(1)
    v = values.gather(1, out)
    descending = (v[:, :-1] > v[:, 1:]).all(1)
    return {"accuracy": float(same_set.float().mean()), "desc_fraction": float(descending.float().mean())}


def train_topk(mode: str = "desc", *, P: int = 3, n: int = 10, k: int = 3, warmup: int = 100, dim: int = 32,
               steps: int = 200, batch_size: int = 128, lr: float = 1e-3, seed: int = 0, n_test: int = 2000,
               snapshot_every: int = 20, progress=True, cache: bool = True) -> OrderRun:
    """Learn the set of the ``k`` largest of ``n`` values (the output-set task) with a masked pointer
    writer (the chosen element fed back), each example's target set in the order ``mode``:

    * ``desc``: largest first; ``index``: by position, an arbitrary fixed order;
    * ``random``: a uniformly random order per example and step;
    * ``max``: ``warmup`` steps of random orders, then each example's most likely order under the
      current model (:func:`order_log_likelihoods` under ``no_grad``, then the loss on that order: the
      gradient of :func:`order_search_loss` with ``mode="max"``).

    Test set accuracy and the fraction of decodes in descending order (:func:`topk_scores`) on
    ``n_test`` fixed draws, every 25 steps; weight snapshots every ``snapshot_every`` steps."""
    lr = _common(dim, steps, batch_size, lr, P)
    checks.choice(mode, "mode", ORDER_MODES)
    checks.integer(n, "n (set size)", 2)
    checks.integer(k, "k (output set size)", 1, min(n, 5))
    checks.integer(warmup, "warmup", 0)
    params = dict(task="topk", mode=mode, P=P, n=n, k=k, warmup=warmup if mode == "max" else 0, dim=dim,
                  steps=steps, batch_size=batch_size, lr=lr, seed=seed, n_test=n_test,
                  snapshot_every=snapshot_every)
    return memo("order_matters", params, lambda: _train_topk(params, progress), cache=cache)


def _train_topk(p: dict, progress) -> OrderRun:
    x_test, v_test, s_test = topk_batch(p["n_test"], p["n"], p["k"], torch.Generator().manual_seed(20_000))
    trainer = Trainer(lambda: ReadProcessWrite(1 + p["n"], p["dim"], p["P"], mask=True, feed=True),
                      lr=p["lr"], seed=p["seed"])
    model, g = trainer.model, torch.Generator().manual_seed(p["seed"])
    perms, rows = all_orders(p["k"]), torch.arange(p["batch_size"])
    snapshots = [(0, copy.deepcopy(model.state_dict()))]

    def step(it: int) -> dict:
        x, v, sets = topk_batch(p["batch_size"], p["n"], p["k"], g)
        mode = "random" if p["mode"] == "max" and it <= p["warmup"] else p["mode"]
        if mode == "index":
            target = sets.sort(1).values
        elif mode == "random":
            target = sets[rows[:, None], perms[torch.randint(len(perms), (len(sets),), generator=g)]]
        elif mode == "max":
            with torch.no_grad():
                best = order_log_likelihoods(model, x, sets).argmax(1)
            target = sets[rows[:, None], perms[best]]
        else:
            target = sets
        loss = pointer_nll(model(x, target)[0], target)
        trainer.update(loss)
        if it % p["snapshot_every"] == 0:
            snapshots.append((it, copy.deepcopy(model.state_dict())))
        return {"loss": loss.detach()}

    def evaluate() -> dict:
        return topk_scores(model, x_test, v_test, s_test)

    history, evals, seconds = trainer.run(step, p["steps"], evaluate=evaluate, eval_every=25,
                                          desc=f"top-{p['k']}, {p['mode']} order", progress=progress)
    model.eval()
    scores = {key: float(evals[key][-1]) for key in ("accuracy", "desc_fraction")}
    return OrderRun(params=p, history=history, evals=evals, scores=scores, seconds=seconds, model=model,
                    snapshots=snapshots)


def paired_runs(seeds=range(8), *, sort_seeds=None, topk_seeds=None, progress=False) -> dict:
    """The two paired comparisons of the notebook, seed by seed (seed s gives both arms the same
    batches and the same initial values of every weight they share):
    ``{"sort": {"P=0": [...], "P=1": [...]}, "topk": {"desc": [...], "index": [...]}}`` of
    :func:`train_sort` and :func:`train_topk` at their defaults, over ``seeds`` (or ``sort_seeds`` /
    ``topk_seeds`` for one of the two).  Runs already trained come from the cache."""
    sort_seeds = [checks.integer(s, "seed", 0) for s in (seeds if sort_seeds is None else sort_seeds)]
    topk_seeds = [checks.integer(s, "seed", 0) for s in (seeds if topk_seeds is None else topk_seeds)]
    if len(sort_seeds) < 2 or len(topk_seeds) < 2:
        raise ValueError("a paired comparison needs at least 2 seeds")
    sort = {f"P={P}": [train_sort(P, seed=s, progress=progress) for s in sort_seeds] for P in (0, 1)}
    topk = {m: [train_topk(m, seed=s, progress=progress) for s in topk_seeds] for m in ("desc", "index")}
    return {"sort": sort, "topk": topk}


# ------------------------------------------------------------------------------------------------
# Pictures
# ------------------------------------------------------------------------------------------------

def order_names(k: int) -> list:
    """Readable names of the k! orders of a set listed largest first: ``"1 2 3"`` is largest first
    (descending), ``"3 2 1"`` smallest first."""
    return [" ".join(str(i + 1) for i in p) for p in all_orders(k).tolist()]


def index_order(values_sets: torch.Tensor) -> torch.Tensor:
    """For sets given largest first (B x k indices), the number of the order (in :func:`all_orders`)
    that lists them by ascending index: the ``index`` target order."""
    perms = all_orders(values_sets.shape[1])
    ranked = values_sets[:, perms]                                        # B x k! x k
    return (ranked[..., 1:] > ranked[..., :-1]).all(-1).float().argmax(1)


def pointer_plot(axes, model: ReadProcessWrite, x: torch.Tensor, *, title: str = ""):
    """One sorting example: the process block's attention a_{i,t} (left; empty when P = 0) and the
    writer's pointer distributions softmax(u^j) at each greedy output step (right), the elements
    ordered by value (smallest left), so a perfect sorter shows a diagonal on the right."""
    order = x[0, :, 0].argsort()
    with torch.no_grad():
        u, attention = model(x)
    prob = torch.softmax(u[0], -1)[:, order].numpy()
    att = attention[0][:, order].numpy()
    names = [f"{float(v):.2f}" for v in x[0, order, 0]]
    for ax, mat, ylabel, what in ((axes[0], att, "process step t", "attention $a_{i,t}$"),
                                  (axes[1], prob, "output step j", "pointer $p(\\pi_j = i)$")):
        ax.clear()
        ax.grid(False)
        if mat.size:
            ax.imshow(mat, cmap="viridis", vmin=0, vmax=1, aspect="auto")
            ax.set_yticks(range(len(mat)), [str(t + 1) for t in range(len(mat))])
        else:
            ax.text(0.5, 0.5, "P = 0: no process step", ha="center", va="center", transform=ax.transAxes)
        ax.set_xticks(range(len(names)), names, rotation=45, fontsize=9)
        ax.set(xlabel="element (value, sorted)", ylabel=ylabel, title=f"{what}{title}")


def plot_runs(axes, runs: dict, *, what=("loss", "accuracy")) -> None:
    """Learning curves of ``{label: OrderRun}``: the training loss (mean over 10 steps) and the test
    metrics of ``what`` (``accuracy``, ``desc_fraction``) against the step."""
    titles = {"loss": ("training loss", "NLL of the target order (nats)"),
              "accuracy": ("test accuracy (greedy)", "accuracy"),
              "desc_fraction": ("decodes in descending order", "fraction of test sets")}
    for ax, key in zip(np.ravel(axes), what):
        for label, run in runs.items():
            c = COLORS.get(label, COLORS.get(run.params.get("mode"), None))
            if key == "loss":
                h = run.history["loss"]
                sm = np.convolve(h, np.ones(10) / 10, mode="valid")
                ax.plot(run.history["iter"][9:], sm, color=c, label=label)
            else:
                ax.plot(run.evals["iter"], run.evals[key], marker=".", color=c, label=label)
        ax.set(title=titles[key][0], xlabel="training step", ylabel=titles[key][1])
        if key != "loss":
            ax.set_ylim(-0.02, 1.02)
    np.ravel(axes)[0].legend(loc="upper right", fontsize=9)


def shift_plot(ax, shifts: dict) -> None:
    """Bars (log scale) of :func:`encoder_shift` per encoder ``{name: shift}``."""
    names = list(shifts)
    vals = [max(shifts[n], 1e-12) for n in names]
    ax.bar(range(len(names)), vals, color=[COLORS["P=1"], COLORS["lstm"]][:len(names)])
    ax.set_xticks(range(len(names)), names)
    ax.set_yscale("log")
    ax.set(ylabel="max |state(X) - state(πX)|", title="encoder state under a shuffled input", ylim=(1e-9, 10))
    for i, v in enumerate(vals):
        ax.text(i, v * 1.8, f"{v:.1e}", ha="center")


# ------------------------------------------------------------------------------------------------
# Panels
# ------------------------------------------------------------------------------------------------

def order_panel(run: OrderRun, *, n_examples: int = 16, n_track: int = 200, seed: int = 30_000):
    """Pure maths on a trained top-k run's weight snapshots: for one test set, the log-likelihood of
    each of its k! orders (left), the weight each order gets under an order mode (middle:
    :func:`order_weights`; ``random`` is its expectation, uniform), and for ``n_track`` test sets the
    fraction whose most likely order is the descending one, along training (right; the marker is
    the chosen snapshot).  Controls: the example, the snapshot's training step, the order mode."""
    import ipywidgets as W

    from .. import widgets

    if run.params.get("task") != "topk" or not run.snapshots:
        raise ValueError("order_panel needs a train_topk run with snapshots")
    p = run.params
    k, K = p["k"], math.factorial(p["k"])
    model = ReadProcessWrite(1 + p["n"], p["dim"], p["P"], mask=True, feed=True)
    x_ex, _, sets_ex = topk_batch(n_examples, p["n"], k, torch.Generator().manual_seed(seed))
    x_tr, _, sets_tr = topk_batch(n_track, p["n"], k, torch.Generator().manual_seed(seed + 1))
    steps = [s for s, _ in run.snapshots]
    logp = {}
    with torch.no_grad():
        for s, state in run.snapshots:
            model.load_state_dict(state)
            logp[s] = order_log_likelihoods(model, x_ex, sets_ex)
            logp[(s, "track")] = float((order_log_likelihoods(model, x_tr, sets_tr).argmax(1) == 0).float().mean())
    track = np.array([logp[(s, "track")] for s in steps])
    idx_ex = index_order(sets_ex)
    style = dict(continuous_update=False, style={"description_width": "initial"})
    controls = {
        "example": W.IntSlider(value=0, min=0, max=n_examples - 1, description="example", **style),
        "step": W.SelectionSlider(options=steps, value=steps[-1], description="step", **style),
        "mode": W.Dropdown(options=["desc", "index", "random", "max", "lse"], value="max",
                           description="order mode", layout=W.Layout(width="220px")),
    }
    fig, axes = plots.new_figure(3, width=3.3, height=3.3)
    names = order_names(k)
    bars_lp = axes[0, 0].bar(range(K), np.ones(K), color=plots.MUTED)
    bars_w = axes[0, 1].bar(range(K), np.zeros(K), color=COLORS["max"])
    for ax in axes[0, :2]:
        ax.set_xticks(range(K), names, rotation=45, fontsize=9)
        ax.set_xlabel("order (1 = largest)")
    nll = torch.stack([-logp[s] for s in steps])                   # one scale for every snapshot and example
    axes[0, 0].set(ylabel=r"$-\log p(Y_\pi | X)$ (nats)", title="NLL of each order", yscale="log",
                   ylim=(min(0.01, float(nll.min())), 1.5 * float(nll.max())))
    axes[0, 1].set(ylabel="weight on the order", ylim=(0, 1.05), title="trained on")
    axes[0, 2].plot(steps, track, color=COLORS[p["mode"]], marker=".")
    (marker,) = axes[0, 2].plot([steps[-1]], [track[-1]], "o", ms=10, mfc="none", color="k")
    warm = p.get("warmup", 0)
    if p["mode"] == "max" and warm:
        axes[0, 2].axvspan(0, warm, color=plots.MUTED, alpha=0.15, label="random-order warm-up")
        axes[0, 2].legend(loc="lower right", fontsize=9)
    axes[0, 2].set(xlabel="training step", ylabel="fraction of test sets", ylim=(-0.02, 1.02),
                   title="best order: descending")

    def draw(v):
        lp = logp[v["step"]][v["example"]][None]
        i_idx = int(idx_ex[v["example"]])
        if v["mode"] == "random":
            w = torch.full((1, K), 1.0 / K)
        elif v["mode"] in ("desc", "index"):
            w = order_weights(lp, "fixed", torch.tensor([0 if v["mode"] == "desc" else i_idx]))
        else:
            w = order_weights(lp, v["mode"])
        nll = (-lp[0]).numpy()
        for j, (b1, b2) in enumerate(zip(bars_lp, bars_w)):
            b1.set_height(nll[j])
            b1.set_color(COLORS["desc"] if j == 0 else COLORS["index"] if j == i_idx else plots.MUTED)
            b2.set_height(float(w[0, j]))
        axes[0, 1].set_title(f"trained on ({v['mode']})")
        si = steps.index(v["step"])
        marker.set_data([v["step"]], [track[si]])
        best = int(lp[0].argmax())
        return {"weights": w[0], "logp": lp[0], "best": best, "track": track,
                "status": f"step {v['step']}: most likely order {names[best]}"
                          f"{' (descending)' if best == 0 else ''}, p = {math.exp(float(lp[0, best])):.2f}; "
                          f"blue bar: descending order, orange: index order"}

    return widgets.Panel(controls, fig, draw)


def _style():
    return dict(continuous_update=False, style={"description_width": "initial"})


def sort_panel(*, autorun: bool = True, **defaults):
    """A Train button over :func:`train_sort`: process steps P, set size N, masked writer, fed-back
    input, encoder (``rpw`` or the ``lstm`` reader), training steps and seed.  Draws the learning
    curves and one test set's pointer distributions."""
    import ipywidgets as W

    from .. import widgets

    d = dict(P=1, n=5, mask=False, feed=True, encoder="rpw", steps=200, seed=0) | defaults
    s = _style()
    controls = {
        "P": W.IntSlider(value=d["P"], min=0, max=10, description="P (process)", **s),
        "n": W.IntSlider(value=d["n"], min=3, max=10, description="N (set size)", **s),
        "steps": W.IntSlider(value=d["steps"], min=100, max=600, step=100, description="train steps", **s),
        "encoder": W.Dropdown(options=["rpw", "lstm"], value=d["encoder"], description="encoder",
                              layout=W.Layout(width="170px")),
        "mask": W.Checkbox(value=d["mask"], description="mask chosen", indent=False),
        "feed": W.Checkbox(value=d["feed"], description="feed back", indent=False),
        "seed": W.BoundedIntText(value=d["seed"], min=0, max=99, description="seed", layout=W.Layout(width="140px")),
    }

    def run(v, progress):
        return train_sort(v["P"], n=v["n"], mask=v["mask"], feed=v["feed"], encoder=v["encoder"],
                          steps=v["steps"], seed=v["seed"], progress=progress)

    def draw(axes, result, _v):
        plot_runs(axes[0, :2], {f"P={result.params['P']}": result})
        x, _ = sort_batch(1, result.params["n"], torch.Generator().manual_seed(10_000))
        pointer_plot([axes[0, 2], axes[0, 3]], result.model, x)
        return {"status": f"{result!r} in {result.seconds:.1f} s"}

    return widgets.run_panel(controls, run, draw, ncols=4, width=2.5, height=3.2, autorun=autorun)


def topk_panel(*, autorun: bool = True, **defaults):
    """A Train button over :func:`train_topk`: the order mode, process steps P, the random-order
    warm-up of ``max`` mode, training steps and seed.  Draws the loss, the set accuracy and the
    fraction of decodes in descending order."""
    import ipywidgets as W

    from .. import widgets

    d = dict(mode="max", P=3, warmup=100, steps=200, seed=0) | defaults
    s = _style()
    controls = {
        "mode": W.Dropdown(options=list(ORDER_MODES), value=d["mode"], description="order mode",
                           layout=W.Layout(width="220px")),
        "P": W.IntSlider(value=d["P"], min=0, max=10, description="P (process)", **s),
        "warmup": W.IntSlider(value=d["warmup"], min=0, max=300, step=50, description="warm-up", **s),
        "steps": W.IntSlider(value=d["steps"], min=100, max=600, step=100, description="train steps", **s),
        "seed": W.BoundedIntText(value=d["seed"], min=0, max=99, description="seed", layout=W.Layout(width="140px")),
    }

    def run(v, progress):
        return train_topk(v["mode"], P=v["P"], warmup=v["warmup"], steps=v["steps"], seed=v["seed"],
                          progress=progress)

    def draw(axes, result, _v):
        plot_runs(axes[0], {result.params["mode"]: result}, what=("loss", "accuracy", "desc_fraction"))
        return {"status": f"{result!r} in {result.seconds:.1f} s"}

    return widgets.run_panel(controls, run, draw, ncols=3, width=3.3, height=3.2, autorun=autorun)
