r"""Dynamic Bad Pair Mining (DBPM; Lan, Yan, Hong, Feng, ICLR 2024): find the *bad positive pairs* of a
contrastive run from each pair's loss history, and shrink their loss.

Two kinds of bad positive pair (the paper's names), both injected here with a known ground truth:

* **noisy** pairs: the item itself is dominated by a noise pattern that both views share, so the
  network can align the two views by the noise alone: an abnormally *easy* pair (low loss);
* **faulty** pairs: the augmentation destroyed the signal, so the two views show unrelated
  patterns: an abnormally *hard* pair (high loss).  Here view 2 comes from another item.

The method, as in the official code (``models/dbpm_model.py``):

1. the per-pair NT-Xent loss :math:`\ell_i = \tfrac12(\ell_{i \to i'} + \ell_{i' \to i})` of item i's two
   views i, i' (:func:`pair_losses`; its mean is :func:`lossviz.nt_xent_loss`);
2. a memory of every pair's raw loss at every epoch (:class:`DBPMRun`'s ``memory``, E x N);
3. from the warm-up epoch on, at the start of epoch e, the history score and the thresholds
   (:func:`history_scores`, :func:`flag_bad_pairs`)

   .. math::
       m_i = \frac1e \sum_{t<e} \ell_i^{(t)} \frac{t+1}{E},\quad \mu, \sigma = \operatorname{mean}_i m_i,
       \operatorname{std}_i m_i,\quad NP = \{m_i \le \mu - c_{np}\sigma\},\quad FP = \{m_i \ge \mu + c_{fp}\sigma\};

4. a flagged pair's loss is multiplied by a weight with no gradient (:func:`flag_weights`,
   :func:`weight_function`), the Gaussian pdf :math:`\mathcal N(\ell_i; \mu, \sigma^2)` at its *current raw* loss,
   and the batch loss is the mean (:func:`dbpm_loss`).

Not in the paper: a robust version of step 3 (``rule="mad"``: median and median absolute deviation
instead of mean and standard deviation), which :func:`rule_comparison` sets against DBPM's rule.

Everything else (the two-view NT-Xent, the augmentation, the network) is the contrastive engine of
:mod:`lossviz.contrastive`, :mod:`lossviz.augment` and :mod:`lossviz.papers.contrastive_temperature`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from .. import augment, checks, data, plots
from ..metrics import knn_accuracy
from ..models import encoder_projector
from ..similarity import masked_logsumexp, pair_batch, similarity, upcast
from ..train import Run, Trainer, memo

#: The kinds of positive pair, by code: ``kind == 0`` clean, ``1`` noisy, ``2`` faulty.
KINDS = ("clean", "noisy", "faulty")
CLEAN, NOISY, FAULTY = 0, 1, 2
#: One colour per kind (clean pairs are ordinary positive pairs: the positive-pair blue).  Faulty pairs
#: are positive pairs too, so never the negative-pair vermillion: Okabe-Ito's reddish purple.
KIND_COLORS = {"clean": plots.POS_COLOR, "noisy": "#009E73", "faulty": "#CC79A7"}
#: The two threshold presets of the official code: ``run.sh`` (used for the paper) and argparse's default.
PRESETS = {"run.sh": dict(c_np=2.0, c_fp=3.0), "argparse": dict(c_np=2.0, c_fp=2.0)}
#: The two weight forms: the Gaussian pdf as coded, or its normalised version with maximum 1.
FORMS = ("pdf", "normalised")
#: The two threshold rules: DBPM's mean and standard deviation (``"sigma"``), or the robust median and
#: median absolute deviation (``"mad"``, not in the paper).
RULES = ("sigma", "mad")
#: The MAD times 1.4826 estimates the standard deviation of Gaussian scores (1 / Phi^{-1}(3/4)).
MAD_SCALE = 1.4826
#: The views of the miniature (:func:`lossviz.augment.augment`, ``"mnist1d"``): a circular shift of up to
#: 3 samples, an amplitude factor uniform in 1 ± 0.175 (standard deviation 0.1), no trend, noise 0.1.
VIEWS = dict(shift=3, scale=0.35, shear=0.0, noise=0.1)


# ------------------------------------------------------------------------------------------------
# Injected bad pairs, with their ground truth
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BadPairs:
    """Which items of a training set make bad positive pairs, and how.

    ``kind`` (N,) codes of :data:`KINDS`; ``partner`` (N,) the item whose signal view 2 shows (the item
    itself unless faulty); ``pattern`` (N, L) the fixed noise pattern of each noisy item (0 elsewhere).
    ``noise`` says where a noisy item's pattern enters (see :func:`inject`)."""

    kind: torch.Tensor
    partner: torch.Tensor
    pattern: torch.Tensor
    keep: float = 0.2
    amp: float = 3.0
    noise: str = "shared"

    def views(self, x: torch.Tensor, idx: torch.Tensor, generator=None, **strength) -> tuple[torch.Tensor, torch.Tensor]:
        """The two views of items ``idx`` of ``x`` (:func:`lossviz.augment.augment`, ``"mnist1d"``,
        with ``strength``): ``(view1, view2)``, each ``len(idx) x L``."""
        generator = augment.as_generator(generator)      # one generator for both views, also from an int seed
        noisy = (self.kind[idx] == NOISY)[:, None]
        p = self.amp * self.pattern[idx]
        src1, src2 = x[idx], x[self.partner[idx]]
        if self.noise == "signal":          # the pattern is part of the signal: the views shift it
            src1, src2 = (torch.where(noisy, self.keep * s + p, s) for s in (src1, src2))
        v1, v2 = (augment.augment(s, "mnist1d", generator, **strength) for s in (src1, src2))
        if self.noise == "shared":          # the same pattern on top of both finished views
            v1, v2 = (torch.where(noisy, self.keep * v + p, v) for v in (v1, v2))
        return v1, v2

    def counts(self) -> dict:
        """``{kind name: number of items}``."""
        return {name: int((self.kind == code).sum()) for code, name in enumerate(KINDS)}


def inject(x, *, noisy: float = 0.1, faulty: float = 0.1, keep: float = 0.2, amp: float = 3.0,
           noise: str = "shared", seed: int = 0) -> BadPairs:
    """Choose ``round(noisy N)`` noisy and ``round(faulty N)`` faulty items of ``x`` (N x L), disjoint, seeded.

    * faulty item i: view 2 is made from a fixed random *other* item ``partner[i]``;
    * noisy item i: a fixed per-item white-noise pattern ``p_i`` (standard normal) of amplitude ``amp``
      dominates the item, whose own signal is scaled by ``keep``.  ``noise="shared"``: each view is
      ``keep * view + amp * p_i``, the same pattern on both views (an *easy* pair: the network can
      match the views by the pattern alone); ``noise="signal"``: the item's signal becomes
      ``keep * x_i + amp * p_i`` before augmentation, so each view shifts the pattern and a shift of
      one sample decorrelates white noise (a *hard* pair, not a noisy one in DBPM's sense).
    """
    x = checks.as_float_tensor(x, "x (training signals, N x L)", 2)
    n, length = x.shape
    noisy = checks.fraction(noisy, "noisy (rate of noisy pairs)", high=0.5)
    faulty = checks.fraction(faulty, "faulty (rate of faulty pairs)", high=0.5)
    keep = checks.non_negative(keep, "keep (the signal left in a noisy item)")
    amp = checks.non_negative(amp, "amp (the amplitude of a noisy item's pattern)")
    checks.choice(noise, "noise", ("shared", "signal"))
    if n < 2:
        raise ValueError(f"inject needs at least 2 items (a faulty pair needs another item); got {n}")
    g = torch.Generator().manual_seed(checks.integer(seed, "seed", 0))
    n_noisy, n_faulty = round(noisy * n), round(faulty * n)
    order = torch.randperm(n, generator=g)
    kind = torch.zeros(n, dtype=torch.long)
    kind[order[:n_noisy]] = NOISY
    kind[order[n_noisy:n_noisy + n_faulty]] = FAULTY
    partner = torch.arange(n)
    shift = torch.randint(1, n, (n,), generator=g)              # never 0: a faulty partner is another item
    partner = torch.where(kind == FAULTY, (partner + shift) % n, partner)
    p = torch.randn(n, length, generator=g)
    p = torch.where((kind == NOISY)[:, None], p, 0.0).to(x.dtype)
    return BadPairs(kind.to(x.device), partner.to(x.device), p.to(x.device), keep, amp, noise)


# ------------------------------------------------------------------------------------------------
# The loss: per-pair NT-Xent, weighted
# ------------------------------------------------------------------------------------------------

def pair_losses(S, labels, *, tau: float = 0.2) -> torch.Tensor:
    r"""The per-pair NT-Xent loss of a two-view batch (every label exactly twice), one value per label
    in increasing label order (item k for :func:`lossviz.augment.two_view_labels`):

    .. math::
        \ell_k = \frac12\Big[-\log\frac{e^{S_{ii'}/\tau}}{e^{S_{ii'}/\tau} + \sum_{n \in N_i} e^{S_{in}/\tau}}
                 -\log\frac{e^{S_{i'i}/\tau}}{e^{S_{i'i}/\tau} + \sum_{n \in N_{i'}} e^{S_{i'n}/\tau}}\Big]

    for the views i, i' of label k (the negatives N_i: every view but i and i').  Its mean over the
    labels is :func:`lossviz.nt_xent_loss` (``tau`` 0.2 as in the official code).
    """
    S, pos, neg = pair_batch(S, labels)
    tau = checks.temperature(tau)
    labels = torch.as_tensor(labels, device=S.device)
    uniq, inverse, counts = torch.unique(labels, return_inverse=True, return_counts=True)
    if checks.validation_enabled() and not bool((counts == 2).all()):
        raise ValueError("the per-pair loss needs two views per item: every label exactly twice "
                         "(lossviz.augment.two_view_labels)")
    z = upcast(S) / tau
    lse_neg = masked_logsumexp(z, neg, keepdim=True)                      # -inf for a view without negatives ...
    z_pos = z.gather(1, pos.to(torch.uint8).argmax(dim=1, keepdim=True))   # each view's one positive
    per_anchor = (torch.logaddexp(z_pos, lse_neg) - z_pos)[:, 0]           # ... whose term is then exactly 0
    return per_anchor.new_zeros(len(uniq)).index_add(0, inverse, per_anchor) / 2


def dbpm_loss(S, labels, *, tau: float = 0.2, w=None) -> torch.Tensor:
    r"""The DBPM batch loss :math:`L = \frac1B \sum_k w_k \ell_k` (:func:`pair_losses`), with per-pair
    weights ``w`` (B,) that carry no gradient (as in the official code, where they come from numpy).
    ``w=None`` (every weight 1) is :func:`lossviz.nt_xent_loss`.  Its General Pair Weighting view
    (:func:`lossviz.pair_weights`): pair k's pull and all its views' pushes are scaled by ``w_k``;
    within an anchor the negatives keep their InfoNCE softmax shares."""
    ell = pair_losses(S, labels, tau=tau)
    if w is None:
        return ell.mean()
    w = checks.as_float_tensor(torch.as_tensor(w), "w (one weight per pair)", 1).to(ell)
    if w.shape != ell.shape:
        raise ValueError(f"w must hold one weight per pair ({len(ell)} pairs); got shape {tuple(w.shape)}")
    if checks.validation_enabled() and bool((w < 0).any()):
        raise ValueError("the pair weights w must be >= 0 (a negative weight would push a positive pair apart)")
    return (w.detach() * ell).mean()


def weight_function(ell, mu: float, sigma: float, *, form: str = "pdf") -> torch.Tensor:
    r"""DBPM's weight of a flagged pair with current raw loss ``ell``:

    * ``"pdf"`` (the official code, ``scipy.stats.norm(mu, sd).pdf``):
      :math:`\mathcal N(\ell; \mu, \sigma^2) = e^{-(\ell-\mu)^2 / 2\sigma^2} / (\sigma\sqrt{2\pi})`,
      whose maximum :math:`1/(\sigma\sqrt{2\pi})` exceeds 1 when :math:`\sigma < 0.399`;
    * ``"normalised"``: :math:`e^{-(\ell-\mu)^2 / 2\sigma^2} \in (0, 1]`.
    """
    checks.choice(form, "form", FORMS)
    mu = checks.finite(mu, "mu (the mean history score)")
    sigma = checks.positive(sigma, "sigma (the spread of the history scores)")
    ell = torch.as_tensor(ell)
    ell = ell if ell.is_floating_point() else ell.double()
    w = torch.exp(-0.5 * ((ell - mu) / sigma) ** 2)
    return w / (sigma * math.sqrt(2 * math.pi)) if form == "pdf" else w


@dataclass(frozen=True)
class Flags:
    """The flags of one epoch: ``noisy`` and ``faulty`` (N,) bool, and the statistics ``mu``, ``sigma``
    of the history scores they came from (with ``rule="mad"``: the median and the scaled MAD)."""

    noisy: torch.Tensor
    faulty: torch.Tensor
    mu: float
    sigma: float

    @property
    def any(self) -> torch.Tensor:
        return self.noisy | self.faulty


def history_scores(memory, epochs: int) -> torch.Tensor:
    r"""Each pair's history score :math:`m_i = \frac1e \sum_{t<e} \ell_i^{(t)} \frac{t+1}{E}` from the
    raw per-pair losses ``memory`` (e x N, row t = epoch t) of the ``e`` epochs so far, ``E = epochs``
    the run's total.  A plain mean of the epoch-weighted losses (not a normalised weighted mean), as
    in the official code: late epochs count more, and ``m`` is on a smaller scale than ``ell``."""
    memory = checks.as_float_tensor(torch.as_tensor(memory), "memory (e epochs x N pairs)", 2)
    e = memory.shape[0]
    epochs = checks.integer(epochs, "epochs (E, the run's total)", 1)
    if e < 1 or e > epochs:
        raise ValueError(f"memory must hold between 1 and E = {epochs} epochs of losses; got {e}")
    if checks.validation_enabled() and not bool(torch.isfinite(memory).all()):
        raise ValueError("memory holds NaN or Inf: every pair needs a loss at every epoch so far")
    t = torch.arange(1, e + 1, dtype=memory.dtype, device=memory.device)[:, None]
    return (memory * t / epochs).mean(dim=0)


def flag_bad_pairs(m, *, c_np: float = 2.0, c_fp: float = 3.0, rule: str = "sigma") -> Flags:
    r"""DBPM's dynamic threshold on the history scores ``m`` (N,): with :math:`\mu, \sigma` their mean
    and (population) standard deviation, noisy :math:`m_i \le \mu - c_{np}\sigma`, faulty
    :math:`m_i \ge \mu + c_{fp}\sigma`.  Defaults: ``run.sh`` (:data:`PRESETS`).  When all scores are
    equal (:math:`\sigma = 0`) nothing is flagged (the official code would build a degenerate Gaussian).

    ``rule="mad"`` (not in the paper) uses robust statistics instead, which one tail of outliers
    cannot drag: :math:`\mu = \operatorname{median}_i m_i` and
    :math:`\sigma = 1.4826\,\operatorname{median}_i |m_i - \mu|` (numpy's median, the mean of the two
    middle values for an even count)."""
    m = checks.as_float_tensor(torch.as_tensor(m), "m (history scores, N)", 1)
    if len(m) < 2:
        raise ValueError(f"the threshold needs the scores of at least 2 pairs; got {len(m)}")
    if checks.validation_enabled() and not bool(torch.isfinite(m).all()):
        raise ValueError("m holds NaN or Inf")
    c_np = checks.non_negative(c_np, "c_np (the noisy-pair cut, in standard deviations)")
    c_fp = checks.non_negative(c_fp, "c_fp (the faulty-pair cut, in standard deviations)")
    checks.choice(rule, "rule", RULES)
    if rule == "sigma":
        mu, sigma = m.mean(), m.std(unbiased=False)
    else:
        mu = m.quantile(0.5)
        sigma = MAD_SCALE * (m - mu).abs().quantile(0.5)
    ok = sigma > 0
    return Flags(ok & (m <= mu - c_np * sigma), ok & (m >= mu + c_fp * sigma), float(mu), float(sigma))


def flag_weights(ell, flags: Flags, *, form: str = "pdf") -> torch.Tensor:
    """The weight of each pair in :func:`dbpm_loss`: 1 for an unflagged pair, :func:`weight_function` of
    its current raw loss ``ell`` for a flagged one (``ell`` and the masks of ``flags`` aligned)."""
    ell = torch.as_tensor(ell).detach()
    if flags.sigma <= 0:
        return torch.ones_like(ell)
    g = weight_function(ell, flags.mu, flags.sigma, form=form)
    return torch.where(flags.any.to(ell.device), g, torch.ones_like(g))


def precision_recall(flagged, truth) -> tuple[float, float]:
    """``(precision, recall)`` of boolean flags against the boolean ground truth; precision is NaN
    when nothing is flagged, recall NaN when there is nothing to find."""
    flagged, truth = torch.as_tensor(flagged, dtype=torch.bool), torch.as_tensor(truth, dtype=torch.bool)
    if flagged.shape != truth.shape:
        raise ValueError(f"flags and ground truth must have the same shape; got {tuple(flagged.shape)} "
                         f"and {tuple(truth.shape)}")
    hits = int((flagged & truth).sum())
    n_flag, n_true = int(flagged.sum()), int(truth.sum())
    return (hits / n_flag if n_flag else math.nan), (hits / n_true if n_true else math.nan)


def missed_faulty(m, kind, *, c_np: float = 2.0, c_fp: float = 3.0) -> dict:
    """Why DBPM's rule (:func:`flag_bad_pairs`, ``rule="sigma"``) misses faulty pairs, from the history
    scores ``m`` (N,) and the true ``kind`` (N,): ``missed`` (faulty pairs not flagged faulty), of them
    ``above_clean`` (scoring above every clean pair), ``sigma`` (of all scores) against
    ``sigma_without_faulty`` (of the scores of the other pairs), the ``cut`` mu + c_fp sigma and the
    highest clean score ``clean_max``."""
    m = torch.as_tensor(m, dtype=torch.float64)
    kind = torch.as_tensor(kind)
    if m.shape != kind.shape:
        raise ValueError(f"m and kind must have the same shape; got {tuple(m.shape)} and {tuple(kind.shape)}")
    faulty, clean = kind == FAULTY, kind == CLEAN
    if not (faulty.any() and clean.any()):
        raise ValueError("missed_faulty needs faulty and clean pairs")
    f = flag_bad_pairs(m, c_np=c_np, c_fp=c_fp)
    missed = faulty & ~f.faulty
    clean_max = float(m[clean].max())
    return {"missed": int(missed.sum()), "above_clean": int((missed & (m > clean_max)).sum()),
            "sigma": f.sigma, "sigma_without_faulty": float(m[~faulty].std(unbiased=False)),
            "cut": f.mu + c_fp * f.sigma, "clean_max": clean_max}


def _share(value: float, undefined: str) -> str:
    """A precision or recall for a status line: ``n/a (why)`` where it is undefined (NaN)."""
    return f"n/a ({undefined})" if math.isnan(value) else f"{value:.2f}"


# ------------------------------------------------------------------------------------------------
# Training: SimCLR with injected bad pairs, with or without DBPM
# ------------------------------------------------------------------------------------------------

@dataclass(repr=False)
class DBPMRun(Run):
    """One run: per-iteration ``history`` (loss, raw_loss, mean_weight), ``evals`` (iter, epoch and the
    5-NN test accuracy ``knn`` of the encoder, at some epochs) and, per epoch and pair: ``memory``
    (E x N raw pair losses), ``flags`` (E x N: 0 none, 1 noisy, 2 faulty, from the history before that
    epoch; used for weighting only from the warm-up on), ``weights`` (E x N, the weight each pair's
    loss got), ``stats`` (mu, sigma and the precision/recall of each kind's flags, per epoch).
    ``kind`` is the ground truth."""

    kind: np.ndarray | None = None
    memory: np.ndarray | None = None
    flags: np.ndarray | None = None
    weights: np.ndarray | None = None
    stats: dict = field(default_factory=dict)

    @property
    def knn(self) -> float:
        """5-NN test accuracy of the encoder after training."""
        return self.final("knn")

    def final_losses(self) -> dict:
        """Mean raw loss of each kind of pair in the last epoch."""
        return {name: float(self.memory[-1, self.kind == code].mean()) for code, name in enumerate(KINDS)
                if (self.kind == code).any()}

    def final_flags(self, kind: str = "faulty") -> tuple[float, float]:
        """Precision and recall of the last epoch's flags of ``kind`` ('noisy' or 'faulty')."""
        return float(self.stats[f"{kind}_precision"][-1]), float(self.stats[f"{kind}_recall"][-1])

    def __repr__(self) -> str:
        p = self.params
        fp, fr = self.final_flags("faulty")
        npr, nr = self.final_flags("noisy")
        return (f"DBPMRun({p['method']}, {p['epochs']} epochs: 5-NN {self.knn:.3f}; faulty flags P {fp:.2f} "
                f"R {fr:.2f}; noisy flags P {npr:.2f} R {nr:.2f})")


def mnist1d_small(n_train: int = 2000, n_test: int = 500) -> data.Split:
    """The miniature's data: the first ``n_train`` training and ``n_test`` test signals of MNIST-1D's own
    split (:func:`lossviz.data.mnist1d`, ``"seen"``; already standardised to mean 0, std 1)."""
    s = data.load("mnist1d")
    return data.Split("mnist1d_small", s.x_train[:n_train], s.y_train[:n_train], s.x_test[:n_test],
                      s.y_test[:n_test], f"MNIST-1D, {n_train} train / {n_test} test signals")


def train_dbpm(method: str = "dbpm", *, epochs: int = 40, warmup: int = 20, c_np: float = 2.0, c_fp: float = 3.0,
               form: str = "pdf", noisy: float = 0.1, faulty: float = 0.1, noise: str = "shared",
               tau: float = 0.2, batch_size: int = 256, lr: float = 9e-4, seed: int = 0, eval_every: int = 10,
               progress=True, cache: bool = True) -> DBPMRun:
    """SimCLR on the miniature (:func:`mnist1d_small`, :data:`VIEWS`) with injected bad pairs
    (:func:`inject`, seeded by ``seed``), and DBPM from epoch ``warmup`` on (``method="dbpm"``) or not
    (``"simclr"``: the same flags are computed and scored, never used).

    Each epoch visits every item once (a new permutation, the last batch smaller), two views each;
    the network is :func:`lossviz.models.encoder_projector` (40-128-128 encoder, 128-128-32
    projector), Adam.  Evaluation: 5-NN accuracy of the encoder on the clean test signals, the clean
    training signals as gallery (labels used only here).  Cached by parameters (:func:`lossviz.train.memo`).
    """
    checks.choice(method, "method", ("dbpm", "simclr"))
    epochs = checks.integer(epochs, "epochs", 2)
    warmup = checks.integer(warmup, "warmup (epochs before DBPM starts)", 1)
    if warmup >= epochs:
        raise ValueError(f"warmup ({warmup}) must be smaller than epochs ({epochs}), or DBPM never starts")
    checks.choice(form, "form", FORMS)
    params = dict(method=method, epochs=epochs, warmup=warmup, form=form, noise=noise,
                  c_np=checks.non_negative(c_np, "c_np"), c_fp=checks.non_negative(c_fp, "c_fp"),
                  noisy=checks.fraction(noisy, "noisy", high=0.5), faulty=checks.fraction(faulty, "faulty", high=0.5),
                  tau=checks.temperature(tau), batch_size=checks.integer(batch_size, "batch_size", 2),
                  lr=checks.positive(lr, "lr"), seed=checks.integer(seed, "seed", 0),
                  eval_every=checks.integer(eval_every, "eval_every", 1))
    return memo("dbpm", params, lambda: _train(params, progress), cache=cache)


# The per-epoch statistics of a run's flags (DBPMRun.stats).
_STATS = ("mu", "sigma", "noisy_precision", "noisy_recall", "faulty_precision", "faulty_recall")


def _flag_epoch(e: int, memory: torch.Tensor, p: dict, truth: torch.Tensor, flags: torch.Tensor,
                stats: dict) -> Flags:
    """The flags of epoch ``e`` from the losses of epochs 0..e-1, written into row ``e`` of ``flags``
    and ``stats`` with their precision and recall against the ``truth`` (scored even when unused)."""
    f = flag_bad_pairs(history_scores(memory[:e], p["epochs"]), c_np=p["c_np"], c_fp=p["c_fp"])
    flags[e] = torch.where(f.noisy, NOISY, torch.where(f.faulty, FAULTY, CLEAN)).to(torch.int8)
    stats["mu"][e], stats["sigma"][e] = f.mu, f.sigma
    for name, flagged, code in (("noisy", f.noisy, NOISY), ("faulty", f.faulty, FAULTY)):
        stats[f"{name}_precision"][e], stats[f"{name}_recall"][e] = precision_recall(flagged, truth == code)
    return f


def _train(p: dict, progress) -> DBPMRun:
    split = mnist1d_small()
    x = split.x_train
    n, E, B = len(x), p["epochs"], p["batch_size"]
    bad = inject(x, noisy=p["noisy"], faulty=p["faulty"], noise=p["noise"], seed=p["seed"])
    trainer = Trainer(lambda: encoder_projector(x.shape[1], hidden=128, dim=32), lr=p["lr"], seed=p["seed"])
    model = trainer.model
    encoder = model[:4]
    g = torch.Generator().manual_seed(p["seed"])      # the epochs' orders and the views, drawn as they come
    per_epoch = -(-n // B)                            # every item once per epoch, the last batch smaller
    memory = torch.full((E, n), math.nan)
    flags = torch.zeros(E, n, dtype=torch.int8)
    weights = torch.ones(E, n)
    stats = {k: np.full(E, np.nan) for k in _STATS}
    state = {}

    def new_epoch(e: int) -> None:
        state["order"] = torch.randperm(n, generator=g)
        f = _flag_epoch(e, memory, p, bad.kind, flags, stats) if e > 0 else None
        state["flags"] = f if (p["method"] == "dbpm" and e >= p["warmup"]) else None

    def step(it: int) -> dict:
        e, j = divmod(it - 1, per_epoch)
        if j == 0:
            new_epoch(e)
        idx = state["order"][j * B:(j + 1) * B]
        views = torch.cat(bad.views(x, idx, g, **VIEWS))
        ell = pair_losses(similarity(model(views)), augment.two_view_labels(len(idx)), tau=p["tau"])
        memory[e, idx] = ell.detach()
        f = state["flags"]
        w = torch.ones_like(ell) if f is None else flag_weights(
            ell, Flags(f.noisy[idx], f.faulty[idx], f.mu, f.sigma), form=p["form"])
        weights[e, idx] = w
        loss = (w * ell).mean()
        trainer.update(loss)
        return {"loss": loss.detach(), "raw_loss": ell.detach().mean(), "mean_weight": w.mean()}

    def evaluate() -> dict:
        return {"knn": knn_accuracy(encoder(split.x_train), split.y_train, encoder(split.x_test), split.y_test)}

    history, evals, seconds = trainer.run(step, E * per_epoch, evaluate=evaluate, eval_every=per_epoch * p["eval_every"],
                                          desc=p["method"], progress=progress)
    evals["epoch"] = evals["iter"] // per_epoch       # evaluations fall at the ends of epochs
    return DBPMRun(params=p, history=history, evals=evals, seconds=seconds, kind=bad.kind.numpy(),
                   memory=memory.numpy(), flags=flags.numpy(), weights=weights.numpy(), stats=stats)


#: What :func:`rule_comparison` scores per seed and rule.
_RULE_SCORES = ("faulty_precision", "faulty_recall", "noisy_precision", "noisy_recall")


def rule_comparison(seeds=range(8), *, epochs: int = 10, c_np: float = 2.0, c_fp: float = 3.0,
                    progress=False) -> dict:
    """DBPM's threshold rule against the robust one (:data:`RULES`), paired by seed: for each seed a
    SimCLR run of ``epochs`` epochs on the miniature with 10 % noisy and 10 % faulty pairs
    (:func:`train_dbpm`, cached), whose whole loss memory is flagged by both rules, as DBPM would at
    the start of the next epoch.  Returns ``{"seeds": [...], rule: {score: array over seeds}}`` with the
    precision and recall of each kind's flags (precision NaN where nothing is flagged)."""
    seeds = [checks.integer(s, "seed", 0) for s in seeds]
    epochs = checks.integer(epochs, "epochs", 2)
    out = {"seeds": seeds} | {rule: {k: np.full(len(seeds), np.nan) for k in _RULE_SCORES} for rule in RULES}
    for j, seed in enumerate(seeds):
        run = train_dbpm("simclr", epochs=epochs, warmup=epochs - 1, seed=seed, eval_every=epochs, progress=progress)
        m = history_scores(torch.as_tensor(run.memory, dtype=torch.float64), epochs)
        truth = torch.as_tensor(run.kind)
        for rule in RULES:
            f = flag_bad_pairs(m, c_np=c_np, c_fp=c_fp, rule=rule)
            for name, flagged, code in (("noisy", f.noisy, NOISY), ("faulty", f.faulty, FAULTY)):
                p, r = precision_recall(flagged, truth == code)
                out[rule][f"{name}_precision"][j], out[rule][f"{name}_recall"][j] = p, r
    return out


# ------------------------------------------------------------------------------------------------
# Pictures
# ------------------------------------------------------------------------------------------------

def _gaussian(x, mu: float, sigma: float) -> np.ndarray:
    return np.exp(-0.5 * ((np.asarray(x) - mu) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))


def pair_picture(axes, x, bad: BadPairs, *, seed: int = 0) -> dict:
    """One clean, one noisy and one faulty pair (the first item of each kind), as their two views
    (seeded), in three axes.  Returns ``{kind name: item index}``."""
    g = torch.Generator().manual_seed(seed)
    titles = {"clean": "clean pair: two views of one signal", "noisy": "noisy pair: a shared pattern dominates",
              "faulty": "faulty pair: view 2 is another signal"}
    shown = {}
    for ax, (code, name) in zip(np.ravel(axes), enumerate(KINDS)):
        items = torch.nonzero(bad.kind == code).flatten()
        if len(items) == 0:
            ax.set_axis_off()
            continue
        i = items[:1]
        v1, v2 = bad.views(x, i, g, **VIEWS)
        ax.plot(v1[0].numpy(), color=KIND_COLORS[name], lw=2, label="view 1")
        ax.plot(v2[0].numpy(), color="k", lw=1.2, ls="--", label="view 2")
        ax.set(title=titles[name], xlabel="time step", ylabel="signal (standardised units)")
        ax.legend(loc="upper right", fontsize=9)
        shown[name] = int(i)
    return shown


def _pad(lo: float, hi: float, frac: float = 0.05) -> tuple[float, float]:
    """``(lo, hi)`` widened by ``frac`` of its width on each side (matplotlib's default margin)."""
    pad = frac * max(hi - lo, 1e-9)
    return lo - pad, hi + pad


class ScoreHistogram:
    """The view of :func:`score_histogram`, made once on ``ax`` for the pairs' true ``kind``:
    :meth:`update` refills the histograms and moves the cuts in place (what :func:`flag_panel` does
    on a control change)."""

    def __init__(self, ax, kind):
        self.ax, self.kind = ax, np.asarray(kind)
        self.present = [(code, name) for code, name in enumerate(KINDS) if (self.kind == code).any()]
        self.bars = [ax.stairs(np.zeros(1), [0.0, 1.0], fill=True, color=KIND_COLORS[name], alpha=0.6,
                               label=f"{name} ({int((self.kind == code).sum())})") for code, name in self.present]
        self.low = ax.axvline(0, color=KIND_COLORS["noisy"], ls="--", lw=1.5, label="noisy cut")
        self.high = ax.axvline(0, color=KIND_COLORS["faulty"], ls="--", lw=1.5, label="faulty cut")
        self.centre = ax.axvline(0, color="k", lw=1)
        ax.set(xlabel="history score m (nats, epoch-weighted)", ylabel="number of pairs")
        ax.set_yscale("symlog", linthresh=1)
        ax.legend(loc="upper right", fontsize=9)

    def update(self, m, *, c_np: float = 2.0, c_fp: float = 3.0, rule: str = "sigma",
               title: str = "history scores") -> Flags:
        m = torch.as_tensor(m, dtype=torch.float64)
        f = flag_bad_pairs(m, c_np=c_np, c_fp=c_fp, rule=rule)
        centre, spread = ("μ", "σ") if rule == "sigma" else ("median", "MAD")
        lo, hi = f.mu - c_np * f.sigma, f.mu + c_fp * f.sigma
        edges = np.linspace(min(float(m.min()), lo) - 0.05, max(float(m.max()), hi) + 0.05, 60)
        top = 1.0
        for (code, _), bars in zip(self.present, self.bars):
            counts, _ = np.histogram(m.numpy()[self.kind == code], bins=edges)
            bars.set_data(counts, edges)
            top = max(top, float(counts.max()))
        for line, x in ((self.low, lo), (self.high, hi), (self.centre, f.mu)):
            line.set_xdata([x, x])
        texts = self.ax.get_legend().get_texts()
        texts[-2].set_text(f"{centre} − {c_np:.3g}·{spread} (noisy below)")
        texts[-1].set_text(f"{centre} + {c_fp:.3g}·{spread} (faulty above)")
        to_axis = self.ax.yaxis.get_transform()                         # symlog: a 5 % margin on screen
        ends = to_axis.transform(np.array([[0.0], [top]]))[:, 0]
        ceiling = float(to_axis.inverted().transform([[_pad(*ends)[1]]])[0, 0])
        self.ax.set(xlim=_pad(edges[0], edges[-1]), ylim=(0, ceiling), title=title)
        return f


def score_histogram(ax, m, kind, *, c_np: float = 2.0, c_fp: float = 3.0, rule: str = "sigma",
                    title: str = "history scores") -> Flags:
    """Histogram of the history scores ``m`` coloured by the true ``kind`` of each pair, with the
    thresholds mu - c_np sigma and mu + c_fp sigma of ``rule`` (:func:`flag_bad_pairs`).  Returns the
    :class:`Flags` (:class:`ScoreHistogram` is the view that a panel updates)."""
    return ScoreHistogram(ax, kind).update(m, c_np=c_np, c_fp=c_fp, rule=rule, title=title)


class WeightView:
    """The view of :func:`weight_view`, made once on ``ax`` for the pairs' true ``kind``; :meth:`update`
    moves the curve and the flagged pairs in place (the legend lists the kinds that have flagged pairs)."""

    def __init__(self, ax, kind):
        self.ax, self.kind = ax, np.asarray(kind)
        (self.curve,) = ax.plot([], [], color="k", lw=1.5)
        ax.axhline(1, color=plots.MUTED, ls=":", lw=1.2)
        self.dots = [ax.scatter([], [], color=KIND_COLORS[name], s=18, zorder=3) for name in KINDS]
        ax.set(xlabel="current raw pair loss ℓ (nats)", ylabel="weight of the pair's loss")
        self.shown = None

    def update(self, ell, flags: Flags, *, form: str = "pdf", title: str | None = None) -> None:
        ell = torch.as_tensor(ell, dtype=torch.float64)
        hi = max(float(ell.max()), flags.mu + 4 * flags.sigma) + 0.5
        grid = torch.linspace(0, hi, 400, dtype=torch.float64)
        curve = weight_function(grid, flags.mu, flags.sigma, form=form).numpy()
        self.curve.set_data(grid.numpy(), curve)
        self.curve.set_label(f"{form} weight, μ={flags.mu:.2f}, σ={flags.sigma:.2f}")
        w = weight_function(ell, flags.mu, flags.sigma, form=form).numpy()
        flagged = flags.any.cpu().numpy()
        shown = [self.curve]
        for code, (name, dots) in enumerate(zip(KINDS, self.dots)):
            sel = flagged & (self.kind == code)
            dots.set_offsets(np.column_stack([ell.numpy()[sel], w[sel]]))
            dots.set_label(f"flagged, truly {name} ({int(sel.sum())})")
            if sel.any():
                shown.append(dots)
        if shown != self.shown:                                # other kinds flagged: other legend rows
            self.shown = shown
            self.ax.legend(handles=shown, loc="upper right", fontsize=9)
        else:
            for text, artist in zip(self.ax.get_legend().get_texts(), shown):
                text.set_text(artist.get_label())
        self.ax.set(xlim=_pad(0.0, hi), ylim=_pad(min(float(curve.min()), 1.0), max(float(curve.max()), 1.0)),
                    title=title or "the down-weighting curve")


def weight_view(ax, ell, kind, flags: Flags, *, form: str = "pdf", title: str | None = None):
    """DBPM's weight against the current raw loss: the curve (:func:`weight_function`) and the flagged
    pairs on it, coloured by their true kind; the dotted line is weight 1 (:class:`WeightView` is the
    view that a panel updates)."""
    WeightView(ax, kind).update(ell, flags, form=form, title=title)
    return ax


def loss_trajectories(ax, run: DBPMRun, *, per_kind: int = 5, title: str | None = None):
    """Per-epoch raw loss of a few pairs of each kind (thin) and each kind's mean (thick); the
    dotted line marks the warm-up's end."""
    epochs = np.arange(run.memory.shape[0])
    for code, name in enumerate(KINDS):
        sel = np.flatnonzero(run.kind == code)
        if len(sel) == 0:
            continue
        ax.plot(epochs, run.memory[:, sel[:per_kind]], color=KIND_COLORS[name], lw=0.6, alpha=0.6)
        ax.plot(epochs, run.memory[:, sel].mean(1), color=KIND_COLORS[name], lw=2.5, label=f"{name} (mean)")
    ax.axvline(run.params["warmup"], color=plots.MUTED, ls=":", lw=1.5)
    ax.set(xlabel="epoch", ylabel="raw pair loss ℓ (nats)",
           title=title or f"pair losses during training ({run.params['method']})")
    ax.legend(loc="upper right", fontsize=9)
    return ax


def flag_curves(ax, run: DBPMRun, *, title: str | None = None):
    """Precision (solid) and recall (dashed) of the noisy and the faulty flags, per epoch, against the
    injected ground truth.  Before the warm-up's end (dotted line) the flags are computed, not used."""
    epochs = np.arange(run.memory.shape[0])
    for name in ("noisy", "faulty"):
        if not (run.kind == KINDS.index(name)).any():
            continue
        ax.plot(epochs, run.stats[f"{name}_precision"], color=KIND_COLORS[name], lw=2, label=f"{name}: precision")
        ax.plot(epochs, run.stats[f"{name}_recall"], color=KIND_COLORS[name], lw=2, ls="--", label=f"{name}: recall")
    ax.axvline(run.params["warmup"], color=plots.MUTED, ls=":", lw=1.5)
    ax.set(xlabel="epoch", ylabel="fraction", ylim=(-0.03, 1.03), title=title or "flags against the truth")
    ax.legend(loc="lower right", fontsize=9)
    return ax


# ------------------------------------------------------------------------------------------------
# Panels
# ------------------------------------------------------------------------------------------------

def _style():
    return dict(continuous_update=False, style={"description_width": "initial"})


def threshold_panel(*, mu: float = 1.0, sigma: float = 0.3, c_np: float = 2.0, c_fp: float = 3.0,
                    form: str = "pdf"):
    """Pure maths: the threshold knobs and the weight function.  Left: a Gaussian spread of history
    scores with mean mu and standard deviation sigma, the two cuts and the share of pairs beyond each
    (for Gaussian scores); right: the weight of a flagged pair against its current loss, both forms."""
    import ipywidgets as W

    from .. import widgets

    controls = {
        "mu": W.FloatSlider(value=mu, min=0.2, max=4.0, step=0.05, description="μ (mean score)", **_style()),
        "sigma": W.FloatLogSlider(value=sigma, base=10, min=-1.3, max=0.3, step=0.02, description="σ (spread)",
                                  readout_format=".3g", **_style()),
        "c_np": W.FloatSlider(value=c_np, min=1.0, max=4.0, step=0.1, description="c_np", **_style()),
        "c_fp": W.FloatSlider(value=c_fp, min=1.0, max=4.0, step=0.1, description="c_fp", **_style()),
        "form": W.ToggleButtons(options=list(FORMS), value=form, description="weight"),
    }
    fig, axes = plots.new_figure(2, width=4.8, height=3.6)
    for ax in axes.ravel():                  # titles at a fixed height: no tick-label measuring at each draw
        ax.set_title("", y=1.0)
    ell = torch.linspace(0, 8, 400, dtype=torch.float64)
    # The artists, made once; a control change only moves them.
    ax = axes[0, 0]
    (density,) = ax.plot([], [], color=plots.POS_COLOR)
    noisy = ax.fill_between([0, 1], [0, 0], color=KIND_COLORS["noisy"], alpha=0.5, label="flagged noisy")
    faulty = ax.fill_between([0, 1], [0, 0], color=KIND_COLORS["faulty"], alpha=0.5, label="flagged faulty")
    ax.set(xlabel="history score m", ylabel="density")
    ax.legend(loc="upper right", fontsize=9)
    ax = axes[0, 1]
    (weight,) = ax.plot(ell.numpy(), ell.numpy() * 0, color="k")
    ax.axhline(1, color=plots.MUTED, ls=":")
    above = ax.fill_between(ell.numpy(), 1, 1, color="#E69F00", alpha=0.4, label="weight > 1: up-weighted!")
    ax.set(xlabel="current raw pair loss ℓ (nats)", ylabel="weight", xlim=_pad(0.0, 8.0))
    ax.legend(loc="upper right", fontsize=9)

    def draw(v):
        m, s = v["mu"], v["sigma"]
        grid = np.linspace(m - 5 * s, m + 5 * s, 400)
        dens = _gaussian(grid, m, s)
        lo, hi = m - v["c_np"] * s, m + v["c_fp"] * s
        density.set_data(grid, dens)
        noisy.set_data(grid, dens, 0, where=grid <= lo)
        faulty.set_data(grid, dens, 0, where=grid >= hi)
        axes[0, 0].set(xlim=_pad(grid[0], grid[-1]), ylim=_pad(0.0, float(dens.max())),
                       title=f"cuts at μ − {v['c_np']:.1f}σ and μ + {v['c_fp']:.1f}σ")
        share = (0.5 * math.erfc(v["c_np"] / math.sqrt(2)), 0.5 * math.erfc(v["c_fp"] / math.sqrt(2)))
        w = weight_function(ell, m, s, form=v["form"])
        weight.set_ydata(w.numpy())
        above.set_data(ell.numpy(), 1, w.numpy(), where=w.numpy() > 1)
        axes[0, 1].set(ylim=_pad(min(float(w.min()), 1.0), max(float(w.max()), 1.0)), title=f"{v['form']} weight")
        top = float(w.max())
        return {"share": share, "max_weight": top, "w": w,
                "status": f"Gaussian scores: {share[0]:.1%} flagged noisy, {share[1]:.2%} flagged faulty; "
                          f"largest weight {top:.2f}" + (" (the pdf <b>up-weights</b> pairs near μ)" if top > 1 else "")}

    return widgets.Panel(controls, fig, draw)


def flag_panel(run: DBPMRun, *, epoch: int | None = None, c_np: float | None = None, c_fp: float | None = None,
               form: str | None = None, rule: str = "sigma"):
    """Re-flag a finished run without training (pure maths on its memory): at epoch ``e``, the history
    scores of epochs 0..e-1, the cuts of the threshold ``rule``, and the weight each flagged pair's
    current loss would get."""
    import ipywidgets as W

    from .. import widgets

    E = run.memory.shape[0]
    p = run.params
    controls = {
        "epoch": W.IntSlider(value=epoch or p["warmup"], min=1, max=E - 1, description="epoch e", **_style()),
        "c_np": W.FloatSlider(value=c_np or p["c_np"], min=1.0, max=4.0, step=0.1, description="c_np", **_style()),
        "c_fp": W.FloatSlider(value=c_fp or p["c_fp"], min=1.0, max=4.0, step=0.1, description="c_fp", **_style()),
        "form": W.ToggleButtons(options=list(FORMS), value=form or p["form"], description="weight"),
        "rule": W.ToggleButtons(options=list(RULES), value=checks.choice(rule, "rule", RULES), description="rule"),
    }
    fig, axes = plots.new_figure(2, width=5.0, height=3.7)
    for ax in axes.ravel():                  # titles at a fixed height: no tick-label measuring at each draw
        ax.set_title("", y=1.0)
    memory = torch.as_tensor(run.memory, dtype=torch.float64)
    truth = torch.as_tensor(run.kind)
    scores, weights = ScoreHistogram(axes[0, 0], run.kind), WeightView(axes[0, 1], run.kind)   # made once

    def draw(v):
        e = v["epoch"]
        m = history_scores(memory[:e], E)
        f = scores.update(m, c_np=v["c_np"], c_fp=v["c_fp"], rule=v["rule"], title=f"history scores before epoch {e}")
        weights.update(memory[e], f, form=v["form"], title=f"weights in epoch {e}")
        pr = {name: precision_recall(f.noisy if name == "noisy" else f.faulty, truth == KINDS.index(name))
              for name in ("noisy", "faulty")}
        w = flag_weights(memory[e], f, form=v["form"])
        text = "; ".join(f"{k}: {int((f.noisy if k == 'noisy' else f.faulty).sum())} flagged, "
                         f"precision {_share(a, 'nothing flagged')}, recall {_share(b, 'nothing to find')}"
                         for k, (a, b) in pr.items())
        return {"flags": f, "pr": pr, "weights": w, "status": text}

    return widgets.Panel(controls, fig, draw)


def training_panel(*, autorun: bool = True, **defaults):
    """A Train button over :func:`train_dbpm`: method, the two cuts, warm-up fraction, injected rates,
    weight form, epochs and seed.  Draws the pair losses by kind, the flags' precision and recall, and
    the last epoch's history scores."""
    import ipywidgets as W

    from .. import widgets

    d = dict(method="dbpm", c_np=2.0, c_fp=3.0, warmup_frac=0.5, faulty=0.1, noisy=0.1, form="pdf",
             epochs=30, seed=0) | defaults
    controls = {
        "method": W.ToggleButtons(options=["dbpm", "simclr"], value=d["method"], description="method"),
        "form": W.ToggleButtons(options=list(FORMS), value=d["form"], description="weight"),
        "c_np": W.FloatSlider(value=d["c_np"], min=1.0, max=4.0, step=0.5, description="c_np", **_style()),
        "c_fp": W.FloatSlider(value=d["c_fp"], min=1.0, max=4.0, step=0.5, description="c_fp", **_style()),
        "warmup_frac": W.FloatSlider(value=d["warmup_frac"], min=0.2, max=0.8, step=0.1, description="warm-up fraction",
                                     **_style()),
        "faulty": W.FloatSlider(value=d["faulty"], min=0.0, max=0.3, step=0.05, description="faulty rate", **_style()),
        "noisy": W.FloatSlider(value=d["noisy"], min=0.0, max=0.3, step=0.05, description="noisy rate", **_style()),
        "epochs": W.Dropdown(options=sorted({20, 30, 40, d["epochs"]}), value=d["epochs"], description="epochs",
                             layout=W.Layout(width="160px")),
        "seed": W.BoundedIntText(value=d["seed"], min=0, max=99, description="seed", layout=W.Layout(width="140px")),
    }

    def run(v, progress):
        warmup = min(max(1, round(v["warmup_frac"] * v["epochs"])), v["epochs"] - 1)
        return train_dbpm(v["method"], epochs=v["epochs"], warmup=warmup, c_np=v["c_np"], c_fp=v["c_fp"],
                          form=v["form"], noisy=round(v["noisy"], 2), faulty=round(v["faulty"], 2),
                          seed=v["seed"], progress=progress)

    def draw(axes, result, _v):
        loss_trajectories(axes[0, 0], result)
        flag_curves(axes[0, 1], result)
        e = result.memory.shape[0] - 1
        score_histogram(axes[0, 2], history_scores(torch.as_tensor(result.memory[:e]), e + 1), result.kind,
                        c_np=result.params["c_np"], c_fp=result.params["c_fp"], title=f"history scores before epoch {e}")
        return {"status": f"{result!r} in {result.seconds:.1f} s"}

    return widgets.run_panel(controls, run, draw, ncols=3, width=4.6, height=3.6, autorun=autorun)
