# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     notebook_metadata_filter: -jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # 21 — Comp-sum losses: one dial from sum-exp through cross-entropy to MAE, and per-sample weights
#
# **Paper.** Anqi Mao, Mehryar Mohri, Yutao Zhong. *Cross-Entropy Loss Functions: Theoretical Analysis and
# Applications.* ICML 2023. [arXiv:2304.07288](https://arxiv.org/abs/2304.07288) · official code: none published
# (lossviz writes the losses from the paper's formulas).
#
# **The story.** Almost every classifier is trained with cross-entropy, yet what we care about is the 0-1 error.
# What does driving cross-entropy down guarantee about the error, *for the networks we actually train* rather than
# for all possible functions? The paper answers for a whole family, the **comp-sum losses**, which contains
# cross-entropy, the generalised cross-entropy (GCE), the mean absolute error (MAE) and the sum-exponential loss.
# One number, τ, moves along the family. For every τ it proves a bound that ties the loss's excess error to the 0-1
# excess error, with correction terms (minimisability gaps) that depend on the network class.
#
# That theorem cannot be checked on a laptop. What can be checked is a simple fact about the family that explains
# what τ does in practice: **every comp-sum loss has cross-entropy's gradient, multiplied by one number per
# sample**, $w = p_y^{\tau-1}$, where $p_y$ is the probability the network gives to the label. That number says how
# much the loss *listens* to each sample. It is the classification analogue of the pair weights of notebook 01, and
# notebooks 22-27 reuse it. In this notebook you will write the family, draw its weights, see which samples of a
# batch with wrong labels get the gradient, train classifiers on digits whose labels are 40 % wrong, and check that
# the weights explain why MAE and GCE survive the noise while cross-entropy memorises it.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Setup
#
# One cell: imports, seeds, one torch thread, and the `FAST` switch (`LOSSVIZ_FAST=1` compares 5 seeds instead
# of 8; every run keeps its 60 epochs).

# %%
import numpy as np
import torch
import torch.nn.functional as F
from IPython.display import Markdown, display

import lossviz as lv
from lossviz import plots
from lossviz import train as T
from lossviz.metrics import paired_difference
from lossviz.papers import comp_sum as M

FAST = T.setup(seed=0)
SEEDS = range(5) if FAST else range(8)
print("lossviz", lv.__version__, "| torch", torch.__version__, "| FAST =", FAST)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1. The idea and the math
#
# ### The family
# A network gives sample $x$ one score (logit) $z_k$ per class $k = 1..n$; the softmax turns them into
# probabilities $p_k = e^{z_k} / \sum_j e^{z_j}$, and $p_y$ is the probability of the sample's label $y$. Write
#
# $$u = \sum_{k \neq y} e^{z_k - z_y} = \frac{1}{p_y} - 1 ,$$
#
# how much the other classes outscore the label ($u = 0$ when the label takes all the probability). A *comp-sum*
# loss is a **comp**osition of a function $\Phi$ with a **sum** over the other classes. The paper's family is
#
# $$\ell_\tau = \Phi^\tau(u) = \frac{(1 + u)^{1-\tau} - 1}{1 - \tau} = \frac{p_y^{\tau-1} - 1}{1-\tau}
#   \quad (\tau \neq 1), \qquad \ell_1 = \log(1 + u) = -\log p_y ,$$
#
# with τ ≥ 0. The second form uses $1 + u = 1/p_y$. Four values of τ give losses with their own names:
#
# | τ | loss | in terms of $p_y$ |
# |---|---|---|
# | 0 | sum-exponential | $1/p_y - 1 = \sum_{k\neq y} e^{z_k - z_y}$ |
# | 1 | cross-entropy (logistic loss) | $-\log p_y$ |
# | 1.7 | generalised cross-entropy, $q = \tau - 1 = 0.7$ (Zhang & Sabuncu, 2018) | $(1 - p_y^{q})/q$ |
# | 2 | mean absolute error | $1 - p_y$ |
#
# (MAE is often written $\lVert e_y - p\rVert_1 = 2(1 - p_y)$: the same loss, twice as large.)
#
# ### The gradient: cross-entropy's, times one number per sample
# Differentiate through $\log p_y$: $\partial \log p_y / \partial z = e_y - p$ ($e_y$ is the one-hot label), and
# $\partial \ell_\tau / \partial \log p_y = -p_y^{\tau-1}$. So
#
# $$\frac{\partial \ell_\tau}{\partial z} \;=\; p_y^{\tau-1}\,\big(p - e_y\big)
#   \;=\; w \cdot \frac{\partial \ell_{CE}}{\partial z}, \qquad w = p_y^{\tau - 1} .$$
#
# Every member pushes the logits in **the same direction as cross-entropy**. Only the step length differs, by the
# **per-sample weight** $w$:
# - τ = 1: $w = 1$ for every sample (cross-entropy listens to everyone equally, in this sense).
# - τ > 1 (GCE, MAE): $w = p_y^{\tau - 1} < 1$, and it is smallest for the samples with a small $p_y$: those the
#   network finds implausible. That is where the wrongly labelled samples end up.
# - τ < 1 (sum-exp): $w > 1$, largest for the implausible samples, without bound as $p_y \to 0$.
#
# How hard sample $i$ pulls its own label's logit up is $|\partial \ell/\partial z_y| = w\,(1 - p_y)$: for
# cross-entropy $1 - p_y$, largest for the samples it gets most wrong; for MAE $p_y(1 - p_y)$, which vanishes for
# them.
#
# ### The link to notebook 01
# General Pair Weighting (notebook 01) froze the coefficients $\partial L/\partial S_{ij}$ of a pair loss at the
# current step: the loss then acts like $\sum_{ij} (\partial L/\partial S_{ij})\, S_{ij}$, and all that
# distinguishes two pair losses is the weight $w_{ij} = |\partial L/\partial S_{ij}|$ each gives to each pair.
# Here the same move on the logits: at the current step a comp-sum loss acts like
# $\sum_i w_i \cdot \big[\text{cross-entropy's linearised loss of sample } i\big]$, so all that distinguishes
# two members is the weight $w_i$ each gives to each *sample*. `lv.sample_weights(loss, logits, labels,
# relative_to_ce=True)` reads $w_i$ off any loss by autograd, as `lv.pair_weights` reads $w_{ij}$.
# One contrast is worth keeping in mind. Multi-Similarity and InfoNCE (notebooks 01, 09) *raise* the weight of hard
# pairs, because in metric learning a hard pair is informative. GCE and MAE *lower* the weight of hard samples,
# because under label noise a hard sample is often a wrong label. The weighting idea is the same; the goal is the
# opposite.
#
# ### What the paper proves (narrated, not checked here)
# For a hypothesis set $\mathcal H$ (say, all networks of one architecture), write $R_\ell(h)$ for the expected loss
# of $h$, $R^*_\ell(\mathcal H)$ for the best value in $\mathcal H$, and $\mathcal M_\ell(\mathcal H) \ge 0$ for the
# *minimisability gap*: how far that best value lies above the average of the best *pointwise* values (zero when
# $\mathcal H$ contains every function). The paper proves **$\mathcal H$-consistency bounds** of the form
#
# $$R_{0\text{-}1}(h) - R^*_{0\text{-}1}(\mathcal H) + \mathcal M_{0\text{-}1}(\mathcal H)
#   \;\le\; \Gamma_\tau\Big(R_{\ell_\tau}(h) - R^*_{\ell_\tau}(\mathcal H) + \mathcal M_{\ell_\tau}(\mathcal H)\Big)$$
#
# for every $h \in \mathcal H$: a network close to the best in its class for $\ell_\tau$ is close to the best for the
# 0-1 error. $\Gamma_\tau$ is an increasing function with $\Gamma_\tau(0) = 0$, which the paper gives explicitly and
# shows to be tight. As we read the paper, it grows like a square root near 0 for the smooth members and linearly for MAE, with a factor
# that depends on the number of classes. We reproduce neither its constants nor the paper's analysis of the gaps:
# see the paper. The paper also derives *smooth adversarial comp-sum losses* (a comp-sum loss plus a
# smoothness term on the scores) for adversarial robustness; that part is out of reach here, and exercise 4
# sketches it.
#
# **Our miniature.** The bounds say the members are all sound surrogates of the 0-1 error. They do not say the
# members behave alike when the labels are wrong. The per-sample weight predicts how they differ, and that we can
# test: digits (sklearn, 1203 training and 594 test images), 40 % of the training labels flipped to another digit,
# a 64-128-128-10 MLP, 60 epochs of Adam, clean test labels.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 2. From formula to code
#
# `M.comp_sum_loss(logits, labels, tau=...)` computes $\ell_\tau$ from $\log p_y$ (a `log_softmax`) as
# `expm1((tau - 1) * log_p_y) / (1 - tau)`, and $-\log p_y$ when τ is within $10^{-6}$ of 1; it never forms $p_y$ or
# $u$, so it cannot overflow where the printed formula does (section 7). Below, on a fixed batch of random
# float64 logits: the loss equals the paper's $\Phi^\tau(u)$ (`M.comp_sum_formula`, written as printed) and a
# from-scratch $(p_y^{\tau-1} - 1)/(1 - \tau)$; the named members are cross-entropy, MAE and sum-exp; τ = 1 ± 10⁻⁴
# is cross-entropy to 10⁻³; and the gradient is $p_y^{\tau-1}(p - e_y)$ to 10⁻¹⁰, read by `lv.logit_weights`.

# %%
g = torch.Generator().manual_seed(0)
y = torch.tensor([0, 3, 3, 7, 9, 1])
z = torch.randn(6, 10, generator=g, dtype=torch.float64) + torch.tensor([5.0, 3, 2, 0, -1, 4])[:, None] * F.one_hot(y, 10)
p = torch.softmax(z, dim=1)
p_y = p[torch.arange(6), y]
for tau in (0.0, 0.5, 1.0, 1.7, 2.0):
    ours = M.comp_sum_loss(z, y, tau=tau, reduction="none")
    scratch = -p_y.log() if tau == 1 else (p_y ** (tau - 1) - 1) / (1 - tau)
    assert torch.allclose(ours, M.comp_sum_formula(z, y, tau=tau, reduction="none"), rtol=1e-12)
    assert torch.allclose(ours, scratch, rtol=1e-12)
    G = lv.logit_weights(M.comp_sum_loss, z, y, tau=tau, reduction="none")    # dℓ/dz, by autograd
    assert torch.allclose(G, p_y[:, None] ** (tau - 1) * (p - F.one_hot(y, 10)), atol=1e-10)
    print(f"{M.name(tau):18s} loss per sample: {np.round(ours.numpy(), 3)}")
assert torch.allclose(M.comp_sum_loss(z, y, tau=1.0), F.cross_entropy(z, y))
assert torch.allclose(M.comp_sum_loss(z, y, tau=2.0, reduction="none"), 1 - p_y, atol=1e-15)
assert all((M.comp_sum_loss(z, y, tau=1 + d) - F.cross_entropy(z, y)).abs() < 1e-3 for d in (-1e-4, 1e-4))
print("p_y:", np.round(p_y.numpy(), 3))

# %% [markdown] slideshow={"slide_type": "subslide"}
# The first and last samples, whose label the logits favour, cost little under every member. The fourth and fifth,
# whose label gets a few percent of the probability, are where the members disagree most: sum-exp charges them
# tens, cross-entropy a few units, MAE never more than 1. These are properties of the loss, true for any network.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 3. Weights as pictures
#
# ### The weight as a function of $p_y$ and of the margin
# Left: the loss against $p_y$. Middle: the weight $w = p_y^{\tau-1}$ relative to cross-entropy (log scale), read
# by `lv.sample_weights(..., relative_to_ce=True)` from synthetic logits. Right: the same weight against the
# **margin** $z_y - \max_{k\neq y} z_k$ (10 classes, the other nine logits tied). At a margin of a few units every
# member agrees with cross-entropy ($w \approx 1$): on samples the network already gets right, the family is one
# loss. They part ways on the samples with a negative margin, which is where the wrong labels sit: MAE's weight falls
# roughly like $e^{\text{margin}}$, sum-exp's rises like $e^{-\text{margin}}$.

# %%
fig, axes = plots.new_figure(3, width=3.3, height=3.3)
curves = M.plot_weight_curves(axes[0])
for tau, (p_grid, w_grid) in curves.items():
    assert torch.allclose(w_grid, p_grid ** (tau - 1), rtol=1e-9)      # autograd = the closed form
fig

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Per-sample pulls over a batch with wrong labels
# Now a real batch: 200 training digits, with logits from a network trained for three epochs on *clean* labels (it
# knows the digits and has memorised nothing). We flip 40 % of the labels to another digit (`M.flip_labels`) and
# ask each loss how hard each sample pulls, $|\partial \ell / \partial z_y|$, as a share of the batch's total
# (`lv.sample_weights`). The samples are sorted by $p_y$ of the label they carry; flipped ones are pink. The network
# disagrees with the flipped labels, so they sit on the left. Sum-exp spends almost all its gradient on them.
# Cross-entropy spends more than their share. MAE hands most of the pull to the clean samples. This is the whole
# mechanism of the notebook, on one batch, before any noisy training.

# %% tags=["nbval-ignore-output"]
z_b, y_b = M.batch_logits(200)
noisy_b, flipped_b = M.flip_labels(y_b, 0.4, 10, seed=0)
fig, axes = plots.new_figure(3, width=3.3, height=3.2, sharey=True)
share_b = [M.plot_batch_pull(ax, z_b, noisy_b, flipped_b, tau) for ax, tau in zip(axes[0], (0.0, 1.0, 2.0))]
print(f"{int(flipped_b.sum())} of 200 labels flipped ({flipped_b.float().mean():.0%}); their share of the pull: "
      + ", ".join(f"{M.name(t)} {s:.0%}" for t, s in zip((0.0, 1.0, 2.0), share_b)))
assert share_b[0] > share_b[1] > flipped_b.float().mean() > share_b[2]
fig

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 4. Explore
#
# The panels here are built on `lossviz.widgets`: moving a control redraws the figure in place, and a Train button
# runs a real training run, cached by its settings.
#
# **Turn the dial.** The panel holds the same 200 samples and their network's logits. τ moves along the family; the
# noise rate says how many of the labels are wrong (more noise flips the same samples and more). Left: the weight
# curve $w = p_y^{\tau - 1}$ with every sample of the batch on it (pink: flipped label). Right: the share of the
# batch's pull that comes from the flipped samples, against τ (the dot is the current τ; the dashed line is the
# share they would get if every sample pulled equally). Pure maths: nothing is trained, each change is one autograd
# call per point of the curve.
#
# Things to try: τ = 1, then τ = 0 (the flipped samples' weights shoot up), then τ = 2 (they sink to the bottom
# left); noise 0 (nothing is flipped: every τ gives the clean samples all the pull); where does the curve cross the
# dashed line, and does that τ move with the noise rate?

# %%
panel = M.weights_panel(z_b, y_b, tau=1.0, noise=0.4)
assert panel.state["shares"][0] > panel.state["shares"][-1]                # the dial moves the pull off the wrong labels
panel

# %%
panel.controls["tau"].value = 2.0
assert float(panel.state["w"][panel.state["flipped"]].median()) < float(panel.state["w"][~panel.state["flipped"]].median())
panel.controls["tau"].value = 1.0

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 5. A real training run: cross-entropy, GCE and MAE on digits with 40 % wrong labels
#
# **Protocol** (the spec's, measured before this notebook was written).
# - Data: sklearn digits, stratified 67/33 split (1203 training, 594 test images), standardised with the training
#   split's statistics. Each training label is flipped with probability 0.4, to one of the *other* nine digits.
#   Test labels are clean.
# - Model: MLP 64 → 128 → 128 → 10 (ReLU), Adam (learning rate 10⁻³), batches of 128, 60 epochs (600 steps).
# - The three losses: cross-entropy (τ = 1), GCE (τ = 1.7, i.e. $q = 0.7$, the value Zhang & Sabuncu recommend)
#   and MAE (τ = 2). Same budget, same learning rate, no early stopping.
# - Seeds: seed $s$ fixes the split, the flipped labels, the initialisation and the batch order, so the three losses
#   see the same everything and differ only in τ; results are compared seed by seed. The seeds of one loss train
#   together as one batched network (`M.StackedClassifier`; tested to equal separate runs), in less time than
#   separate runs.
#
# Every fourth epoch each run records its clean test accuracy, its accuracy on the *noisy* labels it trains on,
# how many flipped samples it predicts as their wrong label ("memorised"), and the share of the pull that comes from
# flipped samples. Below: seed 0 of each.

# %% tags=["nbval-ignore-output"]
NOISY = [(1.0, 0.4), (1.7, 0.4), (2.0, 0.4)]
runs = M.paired_runs(NOISY, seeds=SEEDS)
seed0 = {M.name(tau): runs[tau, noise][0] for tau, noise in NOISY}
for label, run in seed0.items():
    print(f"{run!r}  memorised {run.evals['memorised'][-1]:.0%} of the flipped labels")
for rs in runs.values():
    assert all(r.history["loss"][-50:].mean() < r.history["loss"][:10].mean() for r in rs)   # every run learns
    assert all(r.scores["best_epoch"] > 0 and r.scores["best_test_acc"] > 0.85 for r in rs)

# %% [markdown] slideshow={"slide_type": "subslide"}
# **The memorisation picture.** Left: clean test accuracy (solid) and accuracy on the noisy training labels (dashed).
# Middle: the share of flipped samples the network predicts as their *wrong* label. Right: the share of the total
# pull that comes from the flipped samples (dotted: their share of the data).
#
# All three losses first learn the digits: test accuracy climbs within a few epochs, because the 60 % correct labels
# agree with each other and the wrong ones do not. Then cross-entropy goes on to fit the wrong labels one by one.
# Its noisy-label accuracy keeps rising, the memorised share climbs, and test accuracy falls. Its pull explains it:
# once the clean samples are fitted their pull $1 - p_y$ vanishes, and the flipped samples take most of the
# gradient. MAE's weight $p_y$ keeps the flipped samples quiet: while the network learns the digits they get
# well under their share of the pull, and later, when every pull is small, about their share. It barely memorises
# them. GCE sits in between.

# %% tags=["nbval-ignore-output"]
fig, axes = plots.new_figure(3, width=3.3, height=3.4)
M.plot_memorisation(axes[0], seed0)
ce0, mae0 = seed0["CE (τ = 1)"], seed0["MAE (τ = 2)"]
print(f"seed 0, CE: best test accuracy {ce0.scores['best_test_acc']:.3f} at epoch {ce0.scores['best_epoch']}, "
      f"{ce0.scores['test_acc']:.3f} at the end | MAE: {mae0.scores['test_acc']:.3f} at the end")
assert ce0.scores["test_acc"] < ce0.scores["best_test_acc"] - 0.05                  # CE loses what it learned ...
best = int(np.argmax(ce0.evals["test_acc"]))
assert ce0.evals["memorised"][-1] > ce0.evals["memorised"][best] + 0.2                # ... as it memorises
assert mae0.evals["memorised"][-1] < 0.5 * ce0.evals["memorised"][-1]
fig

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Train it yourself.** τ (0 is sum-exp, 1 cross-entropy, 2 MAE), the noise rate, the epochs and the seed; press
# *Train*. When τ is not 1, cross-entropy with the same noise, seed and epochs is drawn too (in black) for
# comparison. A run takes a second or two, and a setting already trained comes back at once from the cache. Try
# τ = 0.5 or 0 at 40 % noise (worse than cross-entropy?), 60 % noise, and no noise at all.

# %% tags=["nbval-ignore-output"]
train_panel = M.training_panel()
assert train_panel.state["result"]["run"] is runs[2.0, 0.4][0]            # the default setting comes from the cache
train_panel

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 6. The claim, checked
#
# **The paper's claims.** (i) Comp-sum losses admit tight $\mathcal H$-consistency bounds, governed by minimisability
# gaps; (ii) their smooth adversarial variants give robust training algorithms that beat the state of the art.
#
# **What we can check here.** Neither bound is testable at this scale (nor the adversarial comparison, which needs
# CIFAR-sized training). Two visible consequences are:
# 1. *On clean labels the members perform alike.* They are all sound surrogates of the 0-1 error, and on samples the
#    network gets right their weights agree (section 3). Check: MAE − cross-entropy, paired over seeds, is within
#    ±0.02 (mean ± 2 standard errors), and cross-entropy reaches 0.95 test accuracy on every seed (the baseline learns).
# 2. *Under label noise, τ sets the robustness through the per-sample weight.* Check, at 40 % noise, paired over
#    seeds: MAE beats cross-entropy by more than 0.08 and GCE beats it by more than 0.05 (mean − 2 standard errors
#    above the margin, as `paired_difference` reports). The spec fixed these margins before any run; they are about
#    half the gaps measured then.
# 3. *The mechanism, which depends on training:* cross-entropy memorises the flipped labels and MAE and GCE do not.
#    Check: the share of flipped samples fitted to their wrong label, cross-entropy minus MAE and minus GCE, paired,
#    above 0.3.
#
# (The gradient identity of section 2 is a property of the loss, exact for any network: not a measurement.)

# %% tags=["nbval-ignore-output"]
runs |= M.paired_runs([(1.0, 0.0), (2.0, 0.0)], seeds=SEEDS)
acc = {key: np.array([r.scores["test_acc"] for r in rs]) for key, rs in runs.items()}
memo_ = {key: np.array([r.evals["memorised"][-1] for r in rs]) for key, rs in runs.items()}
d = {"MAE − CE, 40 % noise": paired_difference(acc[2.0, 0.4], acc[1.0, 0.4]),
     "GCE − CE, 40 % noise": paired_difference(acc[1.7, 0.4], acc[1.0, 0.4]),
     "MAE − CE, clean labels": paired_difference(acc[2.0, 0.0], acc[1.0, 0.0]),
     "memorised, CE − MAE": paired_difference(memo_[1.0, 0.4], memo_[2.0, 0.4]),
     "memorised, CE − GCE": paired_difference(memo_[1.0, 0.4], memo_[1.7, 0.4])}
for (tau, noise), a in acc.items():
    print(f"{M.name(tau):14s} noise {noise:.1f}: test accuracy {a.mean():.3f} (seeds {a.min():.3f} to {a.max():.3f})")
display(Markdown("\n".join(f"- {k}: {v}" for k, v in d.items())))
assert (acc[1.0, 0.0] >= 0.95).all()                                                    # the baseline learns
assert d["MAE − CE, 40 % noise"].verdict == "ahead" and d["MAE − CE, 40 % noise"].mean - 2 * d["MAE − CE, 40 % noise"].se > 0.08
assert d["GCE − CE, 40 % noise"].verdict == "ahead" and d["GCE − CE, 40 % noise"].mean - 2 * d["GCE − CE, 40 % noise"].se > 0.05
clean = d["MAE − CE, clean labels"]
assert abs(clean.mean) + 2 * clean.se < 0.02                                            # a tie, within ±0.02
assert all(v.mean - 2 * v.se > 0.3 for k, v in d.items() if k.startswith("memorised"))

# %% [markdown] slideshow={"slide_type": "subslide"}
# **What it says.**
# - *Clean labels: a tie.* MAE and cross-entropy end within a hair of each other on every seed, as the weight
#   picture predicts: once the samples are fitted, all weights are near 1.
# - *40 % noise: the dial matters, a lot.* MAE and GCE beat cross-entropy on every seed, by far more than the
#   margins asserted. The order of the three follows τ, as the weight predicts.
# - *The mechanism is what the weights say.* Cross-entropy ends up predicting most flipped samples as their wrong
#   label, MAE almost none; GCE, halfway along the dial, memorises a few.
# - *One caveat a sceptic would raise.* Cross-entropy's *best* epoch is much better than its last (section 5):
#   stopped early on a clean validation set, it would recover much of the gap. The comparison here is at the end of a
#   fixed budget, as the label-noise literature usually compares losses. The weights say why the loss needs no
#   early stopping at τ = 2 and does at τ = 1.
# - *What we did not test.* The bounds themselves, the paper's minimisability-gap analysis, the adversarial
#   variant, and anything at CIFAR scale. Exercise 3 shows where MAE breaks: many classes.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 7. Pitfalls
#
# - **τ < 1 explodes.** The weight $p_y^{\tau-1}$ grows without bound as $p_y \to 0$, and the printed formula
#   $\Phi^\tau(u)$ overflows long before. For a sample whose label is outscored by 200 (float32):

# %%
far_z, far_y = torch.tensor([[0.0, 200.0, 0.0]]), torch.tensor([0])
for tau in (0.0, 0.5, 1.0, 2.0):
    print(f"{M.name(tau):18s} formula {float(M.comp_sum_formula(far_z, far_y, tau=tau)):.4g}   "
          f"stable {float(M.comp_sum_loss(far_z, far_y, tau=tau)):.4g}")
assert not torch.isfinite(M.comp_sum_formula(far_z, far_y, tau=0.0))
assert torch.isfinite(M.comp_sum_loss(far_z, far_y, tau=0.0))

# %% [markdown] slideshow={"slide_type": "subslide"}
#   `M.comp_sum_loss` clamps the exponent $(\tau-1)\log p_y$ at 80, where the loss is flat. So a sample that far
#   gone stops pulling instead of sending a NaN through the network. Below τ ≈ 0.5 training is fragile even so: a
#   few implausible samples own the gradient (the panel of section 4 at τ = 0).
# - **Flip to a *different* class.** "Replace the label by a uniformly random class" keeps the right label one time
#   in ten, so the real noise rate is $0.9 \times$ the nominal one:

# %%
labels = torch.arange(10).repeat(1000)
_, flipped = M.flip_labels(labels, 0.4, 10, seed=0)
naive = torch.where(torch.rand(len(labels), generator=torch.Generator().manual_seed(0)) < 0.4,
                    torch.randint(0, 10, (len(labels),), generator=torch.Generator().manual_seed(1)), labels)
print(f"nominal 0.4: M.flip_labels changes {flipped.float().mean():.3f} of the labels, the naive version "
      f"{(naive != labels).float().mean():.3f}")
assert bool((naive != labels).float().mean() < flipped.float().mean() - 0.02)

# %% [markdown] slideshow={"slide_type": "subslide"}
# - **MAE is slow with many classes.** At initialisation $p_y \approx 1/n$ for every sample, so MAE's weight is about
#   $1/n$ of cross-entropy's: a tenth on digits, a hundredth on CIFAR-100, a thousandth on ImageNet. Its gradient
#   starts that much smaller, and for samples the network gets wrong it stays small, so MAE can fail to fit at all
#   (exercise 3). GCE's weight $p_y^{0.7}$ falls off more gently; this is why GCE exists.
# - **Comparing at the best epoch.** Reading the test accuracy at cross-entropy's best epoch uses the test labels to
#   choose the epoch. Choose it on a clean validation split, or compare at a fixed budget, as here.
# - **`relative_to_ce` needs per-sample losses.** `lv.sample_weights(loss, z, y, relative_to_ce=True)` on a loss
#   with a mean reduction returns $w_i / B$. Pass `reduction="none"` to read $w_i$ itself.
#
# ## 8. Exercises
# 1. **Where is the crossover?** In the Explore panel, find the τ at which the flipped samples' share of the pull
#    equals their share of the data, at noise 0.2, 0.4 and 0.6. *Hint:* it depends on how implausible the network
#    finds the wrong labels, not only on the rate.
# 2. **The dial in training.** With the Train panel at 40 % noise, train τ = 0, 0.5, 1.5, 1.7 and 2 (seed 0). Plot
#    the final test accuracy against τ. Is it monotone? Does the best epoch move later as τ grows? *Hint:* each run's
#    `scores` hold `test_acc`, `best_test_acc` and `best_epoch`; the runs are in `lossviz.train`'s cache, so
#    `M.train_comp_sum(tau, noise=0.4)` returns them at once.
# 3. **Many classes break MAE.** Make a 100-class problem (`sklearn.datasets.make_classification` with
#    `n_classes=100, n_informative=20`) and train cross-entropy, GCE and MAE on clean labels. *Hint:* watch
#    `lv.sample_weights(M.comp_sum_loss, z, y, relative_to_ce=True, tau=2.0, reduction="none")` at step 0: about
#    0.01 for every sample.
# 4. **The smooth adversarial variant.** The paper adds to $\ell_\tau$ a term $\nu \sup_{\lVert x' - x\rVert \le \gamma}
#    \lVert h(x') - h(x)\rVert$ on the scores. Approximate the sup with a few steps of projected gradient ascent on
#    the standardised pixels (γ = 0.1, ν = 0.5), and compare clean and attacked test accuracy with and without it.
#    *Hint:* this costs about five times the clean training per PGD step count; check the exact form of the term in
#    the paper's section on adversarial robustness before trusting our summary.
#
# ## 9. Summary
# - The comp-sum family $\ell_\tau = (p_y^{\tau-1} - 1)/(1-\tau)$ runs from sum-exp (τ = 0) through cross-entropy
#   (1) and GCE (1 < τ < 2) to MAE (2). The paper proves $\mathcal H$-consistency bounds for all of them.
# - Every member's gradient is cross-entropy's times the per-sample weight $w = p_y^{\tau-1}$ (exact; checked by
#   autograd). `lv.sample_weights` reads that weight for any classification loss: it is the per-sample view of
#   General Pair Weighting, and notebooks 22-27 use it.
# - τ > 1 quietens the samples the network finds implausible. With 40 % wrong labels on digits, MAE and GCE keep
#   their test accuracy and cross-entropy memorises the noise, on every paired seed; on clean labels the members tie.
# - Not checked here: the bounds, the minimisability gaps, the adversarial variant, and CIFAR scale.
#
# **References.** Mao, Mohri, Zhong, *Cross-Entropy Loss Functions: Theoretical Analysis and Applications*, ICML
# 2023 (arXiv:2304.07288). Zhang & Sabuncu, *Generalized Cross Entropy Loss for Training Deep Neural Networks with
# Noisy Labels*, NeurIPS 2018. Ghosh, Kumar, Sastry, *Robust Loss Functions under Label Noise for Deep Neural
# Networks*, AAAI 2017 (why MAE is noise-tolerant). Wang et al., *Multi-Similarity Loss with General Pair Weighting
# for Deep Metric Learning*, CVPR 2019 (notebook 01). Awasthi, Mao, Mohri, Zhong, *Multi-Class
# $\mathcal H$-Consistency Bounds*, NeurIPS 2022 (the framework the bounds build on).
