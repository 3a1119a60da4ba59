r"""Discriminative vs. generative linear classifiers (Zheng et al., ICML 2023), in miniature.

Naive Bayes (NB) with one diagonal covariance shared by the classes and multiclass logistic
regression (LR) are both *linear* classifiers, ``argmax_k (W x + b)_k``.  NB reads its ``W, b`` off
class means and variances (a closed form); LR minimises the logistic (cross-entropy) surrogate.  The
paper's result: NB gets within epsilon of its own asymptotic error with O(log n) samples, LR needs
O(n), where n is the feature dimension.

* :func:`fit_naive_bayes`, :func:`nb_logits` (the paper's quadratic formula) and
  :func:`nb_linear` (the same classifier as ``W, b``), :func:`fit_logistic` (sklearn, lbfgs, C),
  :func:`cross_entropy` (the surrogate; its per-sample weights come from :func:`lossviz.sample_weights`)
  and :func:`lr_objective` (the objective sklearn minimises).
* The paper's Gaussian simulation: :func:`class_means`, :func:`class_variances`,
  :func:`sample_gaussian`, the exact error of a linear rule on two Gaussians
  (:func:`binary_linear_error`) and the Bayes error (:func:`bayes_error`); :func:`simulate` (cached
  learning curves, NB and LR on the same draws) and :func:`m_star`.
* Frozen features: :func:`train_encoder` (an MLP trained on digits 0-4, then frozen) and
  :func:`few_shot` (NB and LR on digits 5-9, k shots per class), :func:`shots_to_reach`.
* Pictures and panels: :func:`plot_curves`, :func:`draw_panel` (one draw, pure maths) and
  :func:`training_panel` (a Train button over :func:`simulate`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .. import checks, data, plots
from ..train import Run, Trainer, memo

#: One colour per classifier (not the pair colours, which mean pull / push).
COLORS = {"nb": "#009E73", "lr": "#E69F00", "bayes": plots.MUTED}
NAMES = {"nb": "naive Bayes", "lr": "logistic regression"}
#: Training sizes of the simulation: 4, 8, ..., 1024 (m = 4 is two samples per class).
M_GRID = tuple(2 ** k for k in range(2, 11))
DIMS = (20, 50, 100, 200)
SHOTS = (1, 2, 4, 8, 16, 32, 64)


# ------------------------------------------------------------------------------------------------
# The two classifiers
# ------------------------------------------------------------------------------------------------

@dataclass
class NaiveBayes:
    """Gaussian NB with a shared diagonal covariance: ``means`` (K x n), ``var`` (n,), ``log_prior`` (K,)."""

    means: torch.Tensor
    var: torch.Tensor
    log_prior: torch.Tensor


def _xy(x, y, n_classes=None):
    x = checks.as_float_tensor(x, "x (the features, m x n)", 2)
    y = checks.check_labels(y, x.shape[0], x.device)
    if n_classes is None:
        n_classes = int(y.max()) + 1 if len(y) else 0
    K = checks.integer(n_classes, "n_classes", 2)
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= K):
        raise ValueError(f"labels must be class ids in [0, {K - 1}]; got values from {int(y.min())} to {int(y.max())}")
    counts = torch.bincount(y, minlength=K)
    if bool((counts == 0).any()):
        missing = (counts == 0).nonzero()[:, 0].tolist()
        raise ValueError(f"every class needs at least one training sample; classes {missing} have none")
    return x, y, K, counts


def fit_naive_bayes(x, y, n_classes: int | None = None, *, var_floor: float = 1e-9) -> NaiveBayes:
    r"""Fit NB as the official ``models/gaussnb.py`` does:

    .. math::
        \mu_k = \text{mean of class } k, \qquad \pi_k = m_k / m, \qquad
        \sigma^2_j = \sum_k \pi_k\, \mathrm{var}_k(x_j) + \text{var\_floor}

    (``var_k`` with 1/m_k, the maximum-likelihood variance).  The floor keeps a coordinate that is
    constant in the training set (one shot per class, a blank pixel) from dividing by zero."""
    x, y, K, counts = _xy(x, y, n_classes)
    if not isinstance(var_floor, (int, float)) or isinstance(var_floor, bool) or not var_floor > 0:
        raise ValueError(f"var_floor must be a number > 0; got {var_floor!r}. With 0, a coordinate that is "
                         "constant within every class (one shot per class, a blank pixel) has variance 0 and "
                         "NB divides by it; the official code adds 1e-9")
    var_floor = checks.positive(var_floor, "var_floor")
    onehot = torch.nn.functional.one_hot(y, K).to(x.dtype)              # m x K
    n_k = counts.to(x.dtype)
    means = onehot.T @ x / n_k[:, None]                                  # mu_k
    pi = n_k / n_k.sum()
    var_k = onehot.T @ (x - means[y]) ** 2 / n_k[:, None]                # var_k(x_j)
    var = (pi[:, None] * var_k).sum(0) + var_floor                      # sigma^2_j
    return NaiveBayes(means, var, pi.log())


def nb_logits(x, nb: NaiveBayes) -> torch.Tensor:
    r"""The paper's decision function, ``log pi_k - 1/2 sum_j (x_j - mu_kj)^2 / sigma^2_j`` (m x K)."""
    x = checks.as_float_tensor(x, "x (the features, m x n)", 2)
    if x.shape[1] != nb.means.shape[1]:
        raise ValueError(f"x has {x.shape[1]} features but the model was fitted on {nb.means.shape[1]}")
    d2 = (((x[:, None, :] - nb.means[None]) ** 2) / nb.var).sum(-1)
    return nb.log_prior - 0.5 * d2


def nb_linear(nb: NaiveBayes) -> tuple[torch.Tensor, torch.Tensor]:
    r"""NB as a linear classifier ``W x + b``: expanding the square, the term ``-1/2 sum x_j^2/sigma^2_j``
    is the same for every class and drops out of the argmax (and of the softmax), leaving

    .. math:: W_{kj} = \mu_{kj} / \sigma^2_j, \qquad b_k = \log \pi_k - \tfrac12 \sum_j \mu_{kj}^2 / \sigma^2_j ."""
    W = nb.means / nb.var
    return W, nb.log_prior - 0.5 * (nb.means ** 2 / nb.var).sum(1)


def fit_logistic(x, y, n_classes: int | None = None, *, C: float = 1.0, max_iter: int = 1000,
                 scale: str = "none") -> tuple[torch.Tensor, torch.Tensor]:
    """Multiclass logistic regression as the paper fits it (sklearn, lbfgs, L2 penalty, ``C``), as
    ``W`` (K x n) and ``b`` (K,) in float64.  Binary sklearn returns one weight vector ``w``; we write
    it as ``W = [0, w]`` so that ``softmax(W x + b)`` is its sigmoid.  ``scale="minmax"`` fits a
    MinMaxScaler on this training set first (the paper's recipe for deep features); the returned
    ``W, b`` then act on the unscaled ``x``."""
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    x, y, K, _ = _xy(x, y, n_classes)
    C = checks.positive(C, "C (inverse regularisation strength)")
    max_iter = checks.integer(max_iter, "max_iter", 1)
    checks.choice(scale, "scale", ("none", "minmax"))
    xn = x.double().numpy()
    lo, span = np.zeros(xn.shape[1]), np.ones(xn.shape[1])
    if scale == "minmax":
        lo, hi = xn.min(0), xn.max(0)
        span = np.where(hi > lo, hi - lo, 1.0)
    with threadpool_limits(1):               # BLAS threads on a small busy machine: slower, not faster
        clf = LogisticRegression(C=C, max_iter=max_iter).fit((xn - lo) / span, y.numpy())
    coef, icpt = clf.coef_ / span, clf.intercept_ - (clf.coef_ / span) @ lo
    if K == 2:
        coef, icpt = np.vstack([np.zeros_like(coef), coef]), np.concatenate([[0.0], icpt])
    return torch.as_tensor(coef), torch.as_tensor(icpt)


def cross_entropy(logits, labels, *, reduction: str = "mean") -> torch.Tensor:
    r"""The logistic surrogate LR minimises, ``-log softmax(z)_y`` (``reduction``: mean, sum or none).
    Its per-sample weight ``|dL/dz_y| = 1 - p_y`` is what :func:`lossviz.sample_weights` reads."""
    z = checks.as_float_tensor(logits, "logits (m x K)", 2)
    y = checks.check_labels(labels, z.shape[0], z.device)
    if checks.validation_enabled() and len(y) and (int(y.min()) < 0 or int(y.max()) >= z.shape[1]):
        raise ValueError(f"labels must be class ids in [0, {z.shape[1] - 1}]")
    checks.choice(reduction, "reduction", ("mean", "sum", "none"))
    per = torch.logsumexp(z, dim=1) - z.gather(1, y[:, None])[:, 0]
    return per if reduction == "none" else per.sum() if reduction == "sum" else per.mean()


def lr_objective(W, b, x, y, *, C: float = 1.0) -> torch.Tensor:
    r"""sklearn's L2-regularised objective, ``1/2 ||W||^2 + C sum_i CE(W x_i + b, y_i)`` (the bias is
    not penalised).  For a binary problem pass ``W = [0, w]`` as :func:`fit_logistic` returns it."""
    return 0.5 * (W ** 2).sum() + C * cross_entropy(x @ W.T + b, y, reduction="sum")


# ------------------------------------------------------------------------------------------------
# The paper's Gaussian simulation
# ------------------------------------------------------------------------------------------------

def class_means(n: int, K: int = 2) -> torch.Tensor:
    """``data/generate_data.py``: class 0 has every coordinate -1, class k >= 1 every coordinate 2^(k-1)."""
    n, K = checks.integer(n, "n (the feature dimension)", 2), checks.integer(K, "K (the number of classes)", 2)
    levels = torch.tensor([-1.0] + [2.0 ** (k - 1) for k in range(1, K)], dtype=torch.float64)
    return levels[:, None].expand(K, n).clone()


def class_variances(n: int) -> torch.Tensor:
    """The shared diagonal covariance: n on the first n // 2 coordinates, 1 on the rest."""
    n = checks.integer(n, "n (the feature dimension)", 2)
    v = torch.ones(n, dtype=torch.float64)
    v[: n // 2] = float(n)
    return v


def sample_gaussian(n: int, K: int, m: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``m`` balanced samples (labels 0, 1, ..., K-1, 0, 1, ...) from the simulation, float64."""
    m = checks.integer(m, "m (the training size)", K)
    y = torch.arange(m) % K
    x = class_means(n, K)[y] + torch.randn(m, n, generator=generator, dtype=torch.float64) * class_variances(n).sqrt()
    return x, y


def _phi(t: torch.Tensor) -> torch.Tensor:
    return 0.5 * torch.special.erfc(-t / math.sqrt(2))


def binary_linear_error(W, b, n: int) -> float:
    r"""The exact test error of the linear rule ``argmax(W x + b)`` on the two-class simulation
    (balanced): with ``f = w.x + c`` (``w = W_1 - W_0``, ``c = b_1 - b_0``), ``f`` given class y is
    normal with mean ``w.mu_y + c`` and variance ``sum_j w_j^2 sigma^2_j``, so

    .. math:: \text{err} = \tfrac12\,\Phi\big((w\cdot\mu_0 + c)/s\big) + \tfrac12\,\Phi\big(-(w\cdot\mu_1 + c)/s\big).

    No test sample is drawn: the curves carry no test-set noise."""
    W, b = torch.as_tensor(W, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    w, c = W[1] - W[0], b[1] - b[0]
    mu, v = class_means(n, 2), class_variances(n)
    s = torch.sqrt((w ** 2 * v).sum())
    if float(s) == 0.0:
        return 0.5
    return float(0.5 * _phi((w @ mu[0] + c) / s) + 0.5 * _phi(-(w @ mu[1] + c) / s))


def bayes_error(n: int, K: int = 2, *, n_test: int = 4000, seed: int = 1234) -> float:
    r"""The Bayes error of the simulation.  Two classes: the Bayes rule is linear with
    ``w = Sigma^{-1}(mu_1 - mu_0)``, and its error is ``Phi(-Delta / 2)``,
    ``Delta^2 = sum_j (mu_1j - mu_0j)^2 / sigma^2_j``.  More classes: the error of the true NB model
    (the Bayes rule here) on a seeded test set of ``n_test`` samples (an estimate)."""
    if checks.integer(K, "K", 2) == 2:
        delta = torch.sqrt(((class_means(n, 2)[1] - class_means(n, 2)[0]) ** 2 / class_variances(n)).sum())
        return float(_phi(-delta / 2))
    true = NaiveBayes(class_means(n, K), class_variances(n), torch.full((K,), -math.log(K), dtype=torch.float64))
    x, y = sample_gaussian(n, K, n_test, torch.Generator().manual_seed(seed))
    return float((nb_logits(x, true).argmax(1) != y).double().mean())


def linear_error(W, b, n: int, K: int, test=None) -> float:
    """The error of ``argmax(W x + b)``: exact for two classes (:func:`binary_linear_error`), else on ``test``."""
    if K == 2:
        return binary_linear_error(W, b, n)
    x, y = test
    return float(((x @ W.T + b).argmax(1) != y).double().mean())


@dataclass(repr=False)
class SimRun(Run):
    """A simulation: ``errors[model]`` is len(ms) x repeats (test error of each fit), ``bayes`` the Bayes error."""

    ms: tuple = ()
    errors: dict = field(default_factory=dict)
    bayes: float = 0.0

    def mean(self, model: str) -> np.ndarray:
        return self.errors[model].mean(1)

    def m_star(self, model: str, margin: float = 0.01):
        """The smallest m whose mean error is within ``margin`` of the Bayes error (None if none)."""
        return m_star(self.ms, self.mean(model), self.bayes + margin)

    def __repr__(self) -> str:
        p = self.params
        return (f"SimRun(n={p['n']}, K={p['K']}, C={p['C']:.3g}, {p['repeats']} repeats: "
                f"m* NB {self.m_star('nb')}, m* LR {self.m_star('lr')}, Bayes {self.bayes:.2g})")


def claim_table(sims: dict, *, m_nb: int = 16, m_lr: int = 64, m_pair: int = 8) -> tuple[str, dict]:
    """The claim's numbers for ``{n: SimRun}`` (same ``ms`` and repeats): a Markdown table of NB's mean
    error at ``m_nb``, LR's at ``m_lr``, both m*, and LR's minus NB's error at ``m_pair``, compared draw
    by draw (:func:`lossviz.metrics.paired_difference`); returns ``(markdown, {n: PairedDifference})``."""
    from ..metrics import paired_difference

    rows, paired = [], {}
    for n, r in sims.items():
        i_nb, i_lr, i_p = r.ms.index(m_nb), r.ms.index(m_lr), r.ms.index(m_pair)
        d = paired[n] = paired_difference(r.errors["lr"][i_p], r.errors["nb"][i_p])
        rows.append(f"| {n} | {r.mean('nb')[i_nb]:.3f} | {r.mean('lr')[i_lr]:.3f} | {r.m_star('nb')} | "
                    f"{r.m_star('lr')} | {d.mean:+.3f} ± {d.se:.3f}, {d.verdict} ({d.wins} of {d.n}) |")
    head = (f"| n | NB, m = {m_nb} | LR, m = {m_lr} | m* NB | m* LR | LR − NB at m = {m_pair} (paired draws) |\n"
            "|---|---|---|---|---|---|\n")
    return head + "\n".join(rows), paired


def m_star(ms, mean_errors, target: float):
    """The smallest training size whose mean error is ``<= target``; None when no size reaches it."""
    for m, e in zip(ms, np.asarray(mean_errors)):
        if e <= target:
            return int(m)
    return None


def simulate(n: int = 20, *, K: int = 2, ms=M_GRID, repeats: int = 10, C: float = 1.0, seed: int = 0,
             n_test: int = 4000, progress=True, cache: bool = True) -> SimRun:
    """Learning curves of NB and LR on the paper's Gaussian simulation: for every training size m in
    ``ms`` and every repeat r, one balanced training set (seeded by ``(seed, n, K, m, r)``) on which
    both models are fitted, so NB and LR are paired draw by draw.  Errors are exact for K = 2
    (:func:`binary_linear_error`), else measured on one seeded test set of ``n_test`` samples."""
    n, K = checks.integer(n, "n (the feature dimension)", 2), checks.integer(K, "K (the number of classes)", 2, 10)
    ms = tuple(checks.integer(m, "each m in ms", K) for m in ms)
    repeats = checks.integer(repeats, "repeats", 1)
    C = checks.positive(C, "C")
    params = dict(n=n, K=K, ms=ms, repeats=repeats, C=C, seed=seed, n_test=n_test)
    return memo("dis_vs_gen_sim", params, lambda: _simulate(params, progress), cache=cache)


def _simulate(p: dict, progress) -> SimRun:
    import time

    from ..train import loop

    n, K, ms, R = p["n"], p["K"], p["ms"], p["repeats"]
    test = None if K == 2 else sample_gaussian(n, K, p["n_test"], torch.Generator().manual_seed(10_000 + n))
    errors = {"nb": np.zeros((len(ms), R)), "lr": np.zeros((len(ms), R))}

    def step(it: int) -> dict:
        i, r = divmod(it - 1, R)
        g = torch.Generator().manual_seed(int(np.random.SeedSequence([p["seed"], n, K, ms[i], r]).generate_state(1)[0]))
        x, y = sample_gaussian(n, K, ms[i], g)
        errors["nb"][i, r] = linear_error(*nb_linear(fit_naive_bayes(x, y, K)), n, K, test)
        errors["lr"][i, r] = linear_error(*fit_logistic(x, y, K, C=p["C"]), n, K, test)
        return {}

    start = time.perf_counter()
    loop(step, len(ms) * R, desc=f"simulation n = {n}", progress=progress)
    return SimRun(params=p, ms=ms, errors=errors, bayes=bayes_error(n, K, n_test=p["n_test"]),
                  seconds=time.perf_counter() - start)


# ------------------------------------------------------------------------------------------------
# Frozen features: a digits encoder, then few-shot NB and LR on unseen digits
# ------------------------------------------------------------------------------------------------

def encoder_net(hidden: int = 128, dim: int = 64) -> nn.Sequential:
    """The frozen feature extractor: MLP 64 -> 128 -> ReLU -> 64 -> ReLU."""
    return nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, dim), nn.ReLU())


@dataclass(repr=False)
class EncoderRun(Run):
    """The pre-trained encoder: ``features`` of digits 5-9 (N x 64, frozen), ``labels`` 0-4 for 5-9."""

    features: torch.Tensor | None = None
    pixels: torch.Tensor | None = None
    labels: torch.Tensor | None = None

    def __repr__(self) -> str:
        return f"EncoderRun(digits 0-4, {self.params['epochs']} epochs: train accuracy {self.scores['acc']:.3f})"


def train_encoder(*, epochs: int = 30, batch_size: int = 64, lr: float = 1e-3, seed: int = 0,
                  progress=True, cache: bool = True) -> EncoderRun:
    """Train :func:`encoder_net` + a linear head with cross-entropy on digits 0-4, then freeze it and
    return its features of digits 5-9 (the classes it never saw): our stand-in for a pre-trained model."""
    for name, v, lo in (("epochs", epochs, 1), ("batch_size", batch_size, 2)):
        checks.integer(v, name, lo)
    params = dict(epochs=epochs, batch_size=batch_size, lr=checks.positive(lr, "lr"), seed=seed)
    return memo("dis_vs_gen_encoder", params, lambda: _train_encoder(params, progress), cache=cache)


def _train_encoder(p: dict, progress) -> EncoderRun:
    split = data.digits("zero_shot")
    x, y = split.x_train, split.y_train
    trainer = Trainer(lambda: nn.Sequential(encoder_net(), nn.Linear(64, 5)), lr=p["lr"], seed=p["seed"])
    g = torch.Generator().manual_seed(p["seed"])
    per_epoch = math.ceil(len(x) / p["batch_size"])
    order = {}

    def step(it: int) -> dict:
        e, j = divmod(it - 1, per_epoch)
        if j == 0:
            order["perm"] = torch.randperm(len(x), generator=g)
        idx = order["perm"][j * p["batch_size"]:(j + 1) * p["batch_size"]]
        value = cross_entropy(trainer.model(x[idx]), y[idx])
        trainer.update(value)
        return {"loss": value.detach()}

    history, _, seconds = trainer.run(step, p["epochs"] * per_epoch, desc="encoder on digits 0-4", progress=progress)
    model = trainer.model
    with torch.no_grad():
        acc = float((model(x).argmax(1) == y).float().mean())
        feats = model[0](split.x_test)
    return EncoderRun(params=p, history=history, scores={"acc": acc}, seconds=seconds,
                      features=feats.double(), pixels=split.x_test.double(), labels=split.y_test - 5)


def few_shot(features, labels, *, shots=SHOTS, repeats: int = 10, n_test: int = 400, C: float = 1.0,
             scale: str = "none", seed: int = 0) -> dict:
    """Accuracy of NB and LR against shots per class: ``{"nb": S x R, "lr": S x R}`` (S shot counts,
    R repeats).  Repeat r shuffles the set with seed ``(seed, r)``, keeps ``n_test`` samples for
    testing, and takes the first k of each class's remaining samples (nested: the 2-shot training
    set holds the 1-shot one); NB and LR see the same samples.  ``scale="minmax"`` is LR's
    MinMaxScaler (NB's predictions do not change under a per-coordinate affine map, but for its floor)."""
    x = checks.as_float_tensor(features, "features (N x d)", 2).double()
    y = checks.check_labels(labels, x.shape[0], x.device)
    K = int(y.max()) + 1
    shots = tuple(checks.integer(k, "each shot count", 1) for k in shots)
    repeats, n_test = checks.integer(repeats, "repeats", 1), checks.integer(n_test, "n_test", 1, len(y) - 1)
    acc = {"nb": np.zeros((len(shots), repeats)), "lr": np.zeros((len(shots), repeats))}
    for r in range(repeats):
        perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(1000 * seed + r))
        te, tr = perm[:n_test], perm[n_test:]
        pools = [tr[y[tr] == k] for k in range(K)]
        if min(len(pl) for pl in pools) < max(shots):
            raise ValueError(f"{max(shots)} shots per class need more samples than the set keeps after the test split")
        for i, k in enumerate(shots):
            idx = torch.cat([pl[:k] for pl in pools])
            for model, (W, b) in (("nb", nb_linear(fit_naive_bayes(x[idx], y[idx], K))),
                                  ("lr", fit_logistic(x[idx], y[idx], K, C=C, scale=scale))):
                acc[model][i, r] = float(((x[te] @ W.T + b).argmax(1) == y[te]).double().mean())
    return acc


def shots_to_reach(shots, mean_acc, tol: float = 0.03) -> int:
    """The fewest shots whose mean accuracy is within ``tol`` of the accuracy at the most shots."""
    mean_acc = np.asarray(mean_acc)
    return int(next(k for k, a in zip(shots, mean_acc) if a >= mean_acc[-1] - tol))


# ------------------------------------------------------------------------------------------------
# Pictures and panels
# ------------------------------------------------------------------------------------------------

def plot_curves(ax, run: SimRun, *, title: str | None = None, legend: bool = True) -> None:
    """Test error against m (log axis) for NB and LR, mean +- one standard error over the repeats, with
    the Bayes error (both models' asymptote in this simulation) and each model's m* marked."""
    ms = np.array(run.ms)
    for model in ("nb", "lr"):
        e = run.errors[model]
        mean, se = e.mean(1), e.std(1, ddof=1) / math.sqrt(e.shape[1]) if e.shape[1] > 1 else 0 * e.mean(1)
        ax.plot(ms, mean, "o-", ms=3, color=COLORS[model], label=NAMES[model])
        ax.fill_between(ms, mean - se, mean + se, color=COLORS[model], alpha=0.2, lw=0)
        star = run.m_star(model)
        if star is not None:
            ax.axvline(star, color=COLORS[model], ls=":", lw=1.2)
    ax.axhline(run.bayes, color=COLORS["bayes"], ls="--", lw=1.2, label="Bayes error (asymptote)")
    ax.axhline(run.bayes + 0.01, color=COLORS["bayes"], ls=":", lw=0.8)
    ax.set(xscale="log", xlabel="training size m", ylabel="test error", ylim=(-0.01, 0.5),
           title=title or f"n = {run.params['n']}, K = {run.params['K']}")
    ax.set_xticks(ms[::2], [str(m) for m in ms[::2]])
    if legend:
        ax.legend(loc="upper right", fontsize=8)


def bayes_direction(n: int) -> torch.Tensor:
    """The Bayes rule's weights for two classes, ``Sigma^{-1}(mu_1 - mu_0) = 2 / sigma^2_j``, unit length."""
    w = 2.0 / class_variances(n)
    return w / w.norm()


def one_draw(n: int, m: int, *, C: float = 1.0, seed: int = 0) -> dict:
    """One training set of the two-class simulation, NB and LR fitted on it: their weight directions
    ``w = W_1 - W_0`` (unit length), exact test errors, and the training set with LR's logits."""
    x, y = sample_gaussian(n, 2, m, torch.Generator().manual_seed(seed))
    fits = {"nb": nb_linear(fit_naive_bayes(x, y, 2)), "lr": fit_logistic(x, y, 2, C=C)}
    out = {"x": x, "y": y, "fits": fits, "bayes": bayes_error(n)}
    for k, (W, b) in fits.items():
        w = W[1] - W[0]
        out[f"w_{k}"] = w / w.norm().clamp_min(1e-300)
        out[f"err_{k}"] = binary_linear_error(W, b, n)
    return out


def draw_panel(*, n: int = 100, log2_m: int = 4, C: float = 1.0, seed: int = 0):
    """Pure maths, one draw: left, the weight each classifier puts on each coordinate (unit-length
    ``w``) against the Bayes rule's; right, their exact test errors.  Sliders: n, log2 m, C, seed."""
    import ipywidgets as W

    from .. import widgets

    style = dict(continuous_update=False, style={"description_width": "initial"})
    controls = {
        "n": W.SelectionSlider(options=list(DIMS), value=n, description="n (dim)", **style),
        "log2_m": W.IntSlider(value=log2_m, min=2, max=10, description="log₂ m", **style),
        "C": W.FloatLogSlider(value=C, base=10, min=-2, max=2, step=0.25, description="LR's C",
                              readout_format=".3g", **style),
        "seed": W.IntSlider(value=seed, min=0, max=9, description="seed", **style),
    }
    fig, axes = plots.new_figure(2, width=4.6, height=3.5)
    ax, ax2 = axes[0, 0], axes[0, 1]
    lines = {k: ax.plot([], [], "o" if k != "bayes" else "-", ms=3, color=COLORS[k], lw=1.5,
                        label={"bayes": "Bayes rule", **NAMES}[k])[0] for k in ("bayes", "lr", "nb")}
    ax.set(xlabel="coordinate j (first half: variance n)", ylabel="weight $w_j$ (unit-length w)")
    ax.legend(loc="upper left", fontsize=8)
    bars = ax2.bar([0, 1, 2], [0, 0, 0], color=[COLORS["nb"], COLORS["lr"], COLORS["bayes"]])
    ax2.set_xticks([0, 1, 2], ["NB", "LR", "Bayes"])
    ax2.set(ylabel="exact test error", ylim=(0, 0.5))
    labels = [ax2.text(i, 0, "", ha="center", va="bottom", fontsize=10) for i in range(3)]

    def draw(v):
        n_, m = int(v["n"]), 2 ** int(v["log2_m"])
        d = one_draw(n_, m, C=float(v["C"]), seed=int(v["seed"]))
        j = np.arange(n_)
        for k in ("nb", "lr"):
            lines[k].set_data(j, d[f"w_{k}"].numpy())
        lines["bayes"].set_data(j, bayes_direction(n_).numpy())
        lo = min(float(d["w_nb"].min()), float(d["w_lr"].min()), 0.0)
        hi = max(float(d["w_nb"].max()), float(d["w_lr"].max()), float(bayes_direction(n_).max()))
        ax.set(xlim=(-1, n_), ylim=(lo - 0.02, hi + 0.02), title=f"weights, n = {n_}, m = {m}")
        errs = [d["err_nb"], d["err_lr"], d["bayes"]]
        for bar, txt, e in zip(bars, labels, errs):
            bar.set_height(e)
            txt.set_position((txt.get_position()[0], e + 0.01))
            txt.set_text(f"{e:.3g}")
        ax2.set_title(f"one draw, LR's C = {float(v['C']):.3g}")
        cos = {k: float(d[f"w_{k}"] @ bayes_direction(n_)) for k in ("nb", "lr")}
        return {"draw": d, "m": m, "cos": cos, "errors": dict(zip(("nb", "lr", "bayes"), errs)),
                "status": f"n = {n_}, m = {m}: error NB {errs[0]:.3g}, LR {errs[1]:.3g} "
                          f"(Bayes {errs[2]:.2g}); cosine to the Bayes weights NB {cos['nb']:.3f}, LR {cos['lr']:.3f}"}

    return widgets.Panel(controls, fig, draw)


def training_panel(*, n: int = 50, K: int = 2, C: float = 1.0, repeats: int = 10, seed: int = 0,
                   ms=M_GRID[:-2], autorun: bool = True):
    """A Train button over :func:`simulate` (training sizes ``ms``): n, K, LR's C, repeats and seed;
    draws the learning curves."""
    import ipywidgets as W

    from .. import widgets

    style = dict(continuous_update=False, style={"description_width": "initial"})
    controls = {
        "n": W.Dropdown(options=list(DIMS), value=n, description="n (dim)", layout=W.Layout(width="150px")),
        "K": W.Dropdown(options=[2, 3, 5], value=K, description="K", layout=W.Layout(width="120px")),
        "C": W.FloatLogSlider(value=C, base=10, min=-2, max=2, step=0.25, description="LR's C",
                              readout_format=".3g", **style),
        "repeats": W.IntSlider(value=repeats, min=2, max=20, description="repeats", **style),
        "seed": W.BoundedIntText(value=seed, min=0, max=99, description="seed", layout=W.Layout(width="140px")),
    }

    def run(v, progress):
        return simulate(int(v["n"]), K=int(v["K"]), ms=tuple(ms), C=float(v["C"]), repeats=int(v["repeats"]),
                        seed=int(v["seed"]), progress=progress)

    def draw(axes, result, _v):
        plot_curves(axes[0, 0], result)
        return {"status": f"{result!r} in {result.seconds:.1f} s"}

    return widgets.run_panel(controls, run, draw, ncols=1, width=6.0, height=3.6, autorun=autorun)
