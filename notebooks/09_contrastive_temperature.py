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
# # 09 — The temperature of the contrastive loss: hard negatives and the uniformity-tolerance dilemma
#
# **Paper.** Feng Wang, Huaping Liu. *Understanding the Behaviour of Contrastive Loss.* CVPR 2021.
# [arXiv:2012.09740](https://arxiv.org/abs/2012.09740) · official code: none published (lossviz implements the
# formulas from the paper; where it reconstructs one, it says so) · related:
# Wang & Isola, *Understanding Contrastive Representation Learning through Alignment and Uniformity on the
# Hypersphere*, ICML 2020 ([code](https://github.com/SsnL/align_uniform)).
#
# **The story.** Self-supervised contrastive learning (SimCLR, MoCo) learns features without labels: it shows the
# network two random views of each image and asks it to tell which views belong together. Its loss, InfoNCE /
# NT-Xent, has one number that changes results a lot: the **temperature τ**. Why should dividing similarities by
# 0.1 rather than 0.5 matter so much? The paper's answer comes in two parts. First, the loss is **hardness-aware**:
# it pushes hardest on the negatives that are most similar to the anchor, and τ sets how sharply. Second, this
# creates a **dilemma**. A small τ spreads the embeddings evenly over the sphere (*uniformity*), which makes
# features separable. But it also pushes apart images that are different instances of the same class, which the
# loss cannot tell from true negatives. A larger τ is more *tolerant* of such near neighbours, at the price of
# uniformity.
#
# In this notebook you will derive the per-negative weights, watch τ move them, train small self-supervised
# models at three temperatures and with the paper's hard-negative loss, measure uniformity and tolerance on
# paired seeds, and see which part of the claim survives at small scale, and why the smallest τ breaks the trend.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Setup
#
# One cell: imports, seeds, one torch thread, and the `FAST` switch (`LOSSVIZ_FAST=1` trains 4 paired seeds per
# setting in section 6 instead of 8; every run keeps its 30 epochs, so every comparison keeps equal budgets).

# %%
import inspect
import math

import numpy as np
import torch

import lossviz as lv
from lossviz import augment, data, metrics, plots
from lossviz import widgets
from lossviz import contrastive as C
from lossviz.papers import contrastive_temperature as TT
from lossviz import train as T

FAST = T.setup(seed=0)
EPOCHS = 30                                    # every run, every temperature: one budget
SEEDS = tuple(range(4 if FAST else 8))         # paired: seed k starts every setting from the same network
print("lossviz", lv.__version__, "| torch", torch.__version__, "| FAST =", FAST)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1. The idea and the math
#
# ### NT-Xent, the SimCLR loss
# Take $B$ images and make two random views of each: $2B$ views. The network maps each view to an L2-normalised
# embedding $z_i$, and $s_{ik} = z_i^\top z_k$ is the cosine similarity. For view $i$, the **positive** $p(i)$ is
# the other view of the same image; every other view $k \ne i, p(i)$ is a **negative** ($2B-2$ of them). The loss
# of anchor $i$ is a softmax cross-entropy over its row of similarities divided by the temperature $\tau$:
#
# $$\ell_i = -\log \frac{e^{s_{i,p(i)}/\tau}}{e^{s_{i,p(i)}/\tau} + \sum_{k \in N_i} e^{s_{ik}/\tau}},
#   \qquad L = \frac{1}{2B}\sum_i \ell_i .$$
#
# In lossviz this is `lv.nt_xent_loss(S, labels, tau=...)` with the labels $0,\dots,B-1,0,\dots,B-1$: the two
# views of an image share a label, so SimCLR is the special case of the loss of notebook 01's family where every
# label appears exactly twice. Class labels are never used for training.
#
# ### The gradient: one pull, many pushes (General Pair Weighting)
# Let $q$ be the softmax of the row $s_{i\cdot}/\tau$ over $\{p\} \cup N_i$. Then
#
# $$\frac{\partial \ell_i}{\partial s_{ip}} = -\frac{1}{\tau}\,(1 - q_p), \qquad
#   \frac{\partial \ell_i}{\partial s_{ik}} = +\frac{1}{\tau}\, q_k \quad (k \in N_i), \qquad
#   \sum_{k\in N_i} q_k = 1 - q_p .$$
#
# The positive is pulled with weight $1-q_p$; the negatives share an *equal* total push. How the push is shared is
# the paper's **relative penalty**
#
# $$r_{ik} = \frac{q_k}{1 - q_p} = \frac{e^{s_{ik}/\tau}}{\sum_{k' \in N_i} e^{s_{ik'}/\tau}},$$
#
# a softmax over the negatives alone: a Boltzmann distribution at temperature $\tau$.
# - $\tau \to 0$: $r$ becomes one-hot on the hardest negative, and $\tau\,\ell_i \to (s_{\max} - s_{ip})_+$, a
#   triplet loss on the hardest negative.
# - $\tau \to \infty$: $r \to 1/|N_i|$, every negative is pushed equally; hardness no longer matters. This is the
#   paper's **simple loss** $-s_{ip} + \lambda\sum_{k} s_{ik}$ (`C.simple_contrastive_loss`), whose weights are constants.
#
# We measure how peaked $r$ is by its **entropy** $H_i = -\sum_k r_{ik}\log r_{ik}$, from 0 (one negative gets
# everything) to $\log|N_i|$ (uniform). In notebook 01 we met the same softmax: MS loss with $\lambda \to -\infty$
# weights its negatives by softmax($\beta S$), lifted structure's weighting at temperature $1/\beta$.
#
# ### Uniformity and tolerance: what τ does to the embedding
# - **Uniformity** (Wang & Isola 2020), lower = more evenly spread on the sphere:
#   $\mathcal L_{\text{uniform}} = \log \mathbb E_{x,y}\, e^{-2\lVert z_x - z_y \rVert^2}$ (about −4 at best, 0 when
#   everything collapses to one point).
# - **Tolerance** (this paper): the mean similarity of pairs *of the same class*,
#   $T = \mathbb E[z_x^\top z_y \mid l(x) = l(y)]$. Labels are used only to measure it.
#
# Small τ hunts the nearest negatives, and the nearest negatives are often images of the same class: pushing them
# away raises uniformity but lowers tolerance. That is the **uniformity-tolerance dilemma**.
#
# The paper also uses a **hard contrastive loss** that keeps only each anchor's most similar negatives in the
# denominator (`C.hard_nt_xent_loss`, a fraction `frac` of them). Both comparison losses are reconstructed from the
# paper's text, since no code was published.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 2. From formula to code
#
# The weights in closed form: a log-softmax over the negatives gives $r$, a sigmoid gives the pull $1-q_p$ (never
# computed as one minus a rounded probability), and the push is $r$ times the pull.

# %%
print(inspect.getsource(C.nt_xent_weights))

# %% [markdown] slideshow={"slide_type": "subslide"}
# **A real SimCLR batch.** Sixteen training digits, two random views each (`augment.TwoViewSampler`: a random
# one-pixel shift, brightness ±20 %, 15 % of the pixels dropped, Gaussian noise 0.1). For these pictures the
# embedding is the raw pixels, so no training is needed yet. Three checks: `lv.nt_xent_loss` equals the textbook
# SimCLR recipe (`cross_entropy` on $S/\tau$ with the diagonal masked and target "the other view"); the closed-form
# weights equal the autograd weights of `lv.pair_weights` up to the loss's $1/\tau$ and its mean over the $2B$
# anchors; and $r$ is the softmax over the negatives.

# %%
digits = data.load("digits")
views, y, _ = augment.TwoViewSampler(digits.x_train, "digits", batch_size=16, seed=0).sample()
S = lv.similarity(views.double())
tau, n = 0.2, len(y)
textbook = torch.nn.functional.cross_entropy((S / tau).fill_diagonal_(-math.inf), torch.arange(n).roll(n // 2))
assert torch.allclose(lv.nt_xent_loss(S, y, tau=tau), textbook, atol=1e-12)
W = C.nt_xent_weights(S, y, tau=tau)
gap = (lv.pair_weights(lv.nt_xent_loss, S, y, tau=tau) * tau * n - W).abs().max()
pos, neg = lv.pair_masks(y)
r_scratch = torch.softmax(S.masked_fill(~neg, -math.inf) / tau, dim=1)
print(f"loss {float(textbook):.4f} | "
      f"max |autograd x tau x 2B - closed form| {'< 1e-12' if gap < 1e-12 else float(gap)}")
assert gap < 1e-12 and torch.allclose(C.relative_penalty(S, y, tau=tau), r_scratch, atol=1e-12)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 3. Weights as pictures
#
# ### The canonical plot: the share of the push per negative
# Anchor 0's 30 negatives (their raw-pixel similarities), and the share $r$ each one gets at five temperatures.
# At τ = 0.05 the most similar negatives take most of the push and the rest get almost nothing (note the log
# scale); at τ = 1 the curve is nearly flat at $1/30$.

# %%
s_pos, s_neg = float(S[0, pos[0]]), S[0, neg[0]]
fig, axes = plots.new_figure(3, width=4.6, height=3.8)
_ = plots.temperature_curves(axes[0, 0], s_neg, [0.05, 0.1, 0.2, 0.5, 1.0])
for ax, t in zip(axes[0, 1:], (0.05, 1.0)):
    w_pos, w_neg = C.anchor_nt_xent_weights(s_pos, s_neg, tau=t)
    _ = plots.anchor_weights_view(ax, s_pos, s_neg, w_pos, w_neg, title=f"anchor 0, τ = {t:g}")
fig

# %% [markdown] slideshow={"slide_type": "subslide"}
# Middle and right: the signed weights of the same anchor (times τ). Blue stems pull the positive, vermillion
# stems push the negatives; the legend gives each total: the pull always equals the total push. This anchor's
# other view is a poor match in pixels (less similar than most negatives), so the pull is close to its
# maximum of 1 at both temperatures; what τ changes is *where the push goes*: to the few hardest negatives at
# τ = 0.05, evenly to all at τ = 1. (An anchor whose positive beats every negative by a margin gets almost no
# weight at small τ, its hinge is satisfied, but still about 1 at τ = 1: see the panel of section 4.)
#
# ### Entropy of the push against τ, for every anchor of the batch
# The normalised entropy $H_i/\log|N_i|$ rises from about 0 (one-hot) to 1 (uniform), and the share of the
# hardest negative falls from about 1 to $1/|N_i|$.

# %%
taus = np.logspace(-3, 1, 41)
H = torch.stack([C.negative_weight_entropy(S, y, tau=t, normalized=True) for t in taus])
top = torch.stack([C.relative_penalty(S, y, tau=t).amax(dim=1) for t in taus])
fig, axes = plots.new_figure(2, width=4.6, height=3.4)
for ax, vals, label in ((axes[0, 0], H, "entropy of r / log |N|"), (axes[0, 1], top, "share of the hardest negative")):
    ax.plot(taus, vals.numpy(), color=plots.NEG_COLOR, lw=0.6, alpha=0.5)
    ax.plot(taus, vals.mean(1).numpy(), color="k", lw=2.5, label="mean over the 32 anchors")
    ax.set(xscale="log", xlabel="τ (log scale)", ylabel=label, title=label, ylim=(0, 1.03))
axes[0, 0].legend(loc="upper left")
fig

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### The whole batch as a heat-map
# Signed weights $\partial L/\partial S_{ij}$ for every pair, sorted by image, so each outlined 2 × 2 block holds
# one image's two views and its blue off-diagonal cells are the positive pairs. At τ = 0.05 each row's push sits
# on a few hard negatives; at τ = 1 it is a faint, even wash.

# %%
fig, axes = plots.new_figure(2, width=4.4, height=3.9)
for ax, t in zip(axes[0], (0.05, 1.0)):
    _ = plots.weight_heatmap(ax, C.nt_xent_weights(S, y, tau=t, signed=True), y, title=f"NT-Xent weights, τ = {t:g}")
fig

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Three exact facts, checked numerically
# 1. For every anchor, the entropy of $r$ never decreases as τ grows, and the largest share never increases.
# 2. The pull equals the total push: $\sum_{k \in N_i} |\partial\ell/\partial s_{ik}| = |\partial\ell/\partial s_{ip}|$,
#    here with autograd's gradient.
# 3. As τ → 0, $\tau \cdot L$ tends to the hardest-negative hinge $\frac{1}{2B}\sum_i (\max_{k\in N_i} s_{ik} - s_{ip})_+$.

# %%
assert bool((H.diff(dim=0) >= -1e-12).all()) and bool((top.diff(dim=0) <= 1e-12).all())
G = lv.pair_weights(lv.nt_xent_loss, S, y, tau=0.2)
balance = ((G * neg).sum(1) - (G * pos).sum(1)).abs().max()
hinge = (S.masked_fill(~neg, -2).amax(1) - S[pos]).clamp(min=0).mean()
limit = 1e-3 * lv.nt_xent_loss(S, y, tau=1e-3)
print(f"|pull - push| {'< 1e-12' if balance < 1e-12 else float(balance)} | tau*L at tau=1e-3: {float(limit):.4f}, "
      f"hinge {float(hinge):.4f}")
assert balance < 1e-12 and abs(float(limit - hinge)) < 1e-2

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 4. Explore
#
# The panels here are built on `lossviz.widgets`: moving a control redraws the figure in place,
# and a Train button runs a real training run, cached by its settings.
#
# **Move τ, pick an anchor.** One anchor of the batch above: its pull and pushes (left) and where τ sits on its
# entropy curve (right). The panel answers at once (pure maths, no training). Try τ = 0.01: the hardest negative
# takes almost all the push. Try τ = 2: the push is flat, every negative counts the same. Then pick the anchor
# printed below, whose positive beats its hardest negative by the widest margin, at τ = 0.05 and at τ = 1.

# %%
tau_panel = TT.temperature_panel(S, y, tau=0.2, anchor=0)
best = int((S[pos] - S.masked_fill(~neg, -2).amax(1)).argmax())
print(f"anchor {best}: positive at {float(S[best, pos[best]]):.2f}, hardest negative at "
      f"{float(S[best, neg[best]].max()):.2f}")
assert isinstance(tau_panel, widgets.Panel) and abs(tau_panel.state["w_pos"] - tau_panel.state["w_neg"].sum()) < 1e-12
tau_panel

# %%
before = tau_panel.state["entropy"]
tau_panel.controls["tau"].value = 0.02
assert tau_panel.state["entropy"] < before and tau_panel.state["top_share"] > 0.5
tau_panel.controls["anchor"].value = best          # its hinge is satisfied: almost no weight at small τ
assert tau_panel.state["w_pos"] < 0.01
tau_panel.controls["tau"].value, tau_panel.controls["anchor"].value = 0.2, 0

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 5. A real training run: SimCLR on digits at three temperatures
#
# **Protocol** (the "digits two-view kit"). scikit-learn's digits, lossviz's stratified 50/50 split (898 train /
# 899 test images). Two views per image as above. Network: an MLP encoder 64 → 128 → 128 and a projector
# 128 → 128 → 32, L2-normalised; the loss sees the 32-d $z$. NT-Xent on batches of 128 images (256 views, 254
# negatives per anchor), Adam (lr 1e-3), one torch thread, and **one budget for every run of the notebook**:
# `EPOCHS` = 30 epochs (210 iterations), whatever the temperature or the loss. Labels are used only to evaluate, on
# the *test* embeddings: uniformity, tolerance, and the alignment of two fresh views
# ($\mathbb E\lVert z_x - z_{x'}\rVert^2$). During training we record, from the gradient, how the push is shared:
# the normalised entropy of each anchor's negative weights (`TT.push_entropy`), and the share of the push that
# lands on negatives *already closer to the anchor than its own positive* (`TT.closer_share`; section 6 needs it).

# %% tags=["nbval-ignore-output"]
TAUS = (0.05, 0.2, 1.0)                        # 0.1 and 0.5: one click away in the panel below
runs = TT.sweep(TAUS, epochs=EPOCHS)
for t, run in runs.items():
    print(f"τ = {t:<5g} {run!r}   Recall@1 {run.scores['recall_at_1']:.3f}   ({run.seconds:.1f} s)")
assert all(np.isfinite(r.history["loss"]).all() for r in runs.values())
assert all(r.history["loss"][-20:].mean() < r.history["loss"][:5].mean() - 0.3 for r in runs.values())  # all learn
assert all(r.scores["recall_at_1"] > 0.5 for r in runs.values())          # far above chance (0.1)

# %% [markdown] slideshow={"slide_type": "subslide"}
# The two measures, from scratch on the τ = 0.2 test embeddings: uniformity as Wang & Isola's one-liner
# (`pdist`, squared, times −2, exp, mean, log) and tolerance as the mean cosine over same-class pairs, against
# `lossviz.metrics`.

# %%
z = torch.nn.functional.normalize(torch.as_tensor(runs[0.2].z_test).double(), dim=1)   # float32 norms: 1 ± 1e-7
labels = torch.as_tensor(runs[0.2].y_test)
u_scratch = torch.pdist(z, p=2).pow(2).mul(-2).exp().mean().log()
same = (labels[:, None] == labels[None, :]).fill_diagonal_(False)
t_scratch = (z @ z.T)[same].mean()
assert abs(float(u_scratch) - metrics.uniformity(z)) < 1e-9
assert abs(float(t_scratch) - metrics.tolerance(z, labels)) < 1e-9

# %% [markdown] slideshow={"slide_type": "subslide"}
# **During training.** Left: the loss. It starts near $\log(2B-1) = 5.5$ for every τ, because the untrained network
# puts all the views close together. Middle: how evenly each anchor's push is shared. At τ = 1 it stays near
# uniform; at τ = 0.05 it drops as the embedding forms and real hard negatives appear. Right: the share of the push
# spent on negatives that already beat the positive. At the start it is large for every τ (the untrained network
# ranks the digits much as their pixels do, and in pixels many digits are closer to an image than its own
# augmented view). Training brings it down, least of all at the smallest τ. Keep this panel in mind for
# section 6. The loss is still falling slowly over the second half of training at every τ: a straight line fitted
# to it slopes down. Section 6 asks whether more training is what the smallest τ lacks.

# %% tags=["nbval-ignore-output"]
fig, axes = plots.new_figure(3, width=4.4, height=3.5)
colors = plots.mpl.colormaps["viridis"](np.linspace(0, 0.85, len(TAUS)))
for (t, run), c in zip(runs.items(), colors):
    for ax, key in zip(axes[0], ("loss", "entropy", "closer_share")):
        ax.plot(run.history["iter"], run.history[key], color=c, lw=1, label=f"τ = {t:g}")
axes[0, 0].set(xlabel="iteration", ylabel="NT-Xent loss", title="training loss")
axes[0, 1].set(xlabel="iteration", ylabel="entropy of the push / log |N|", title="how evenly the push is shared",
               ylim=(0, 1.02))
axes[0, 2].set(xlabel="iteration", ylabel="share of the push", ylim=(0, 1.02),
               title="push on negatives closer than the positive")
axes[0, 1].legend(loc="lower left")
L, E = {t: r.history["loss"] for t, r in runs.items()}, runs[0.05].history["entropy"]
half = len(runs[1.0].history["iter"]) // 2
assert all(abs(L[t][0] - math.log(2 * 128 - 1)) < 0.1 for t in TAUS)         # every τ starts at log(2B - 1)
assert runs[1.0].history["entropy"].min() > 0.9 and E[-20:].mean() < E[0] - 0.2   # τ = 1 flat, τ = 0.05 drops
assert all(np.polyfit(runs[t].history["iter"][half:], L[t][half:], 1)[0] < 0 for t in TAUS)   # still falling
fig

# %% [markdown] slideshow={"slide_type": "subslide"}
# **The embeddings.** For each test pair, its cosine similarity, split by whether the two images share a class
# (the dashed line is the mean of the blue histogram: the tolerance). At τ = 0.2 the different-class pairs
# (vermillion) form a broad bump around 0 (asserted below), the mark of points spread over the sphere. How to read
# the blue histograms: a tolerant embedding piles its same-class pairs up near 1, each class a tight clump; clumps
# leave much of the sphere empty, which the uniformity loss counts as less uniform. Compare τ = 0.2 with τ = 1.
# Right: the dilemma, one point per τ (τ = 0.05 sits apart; section 6 explains why). This is one seed; section 6
# checks the differences on paired seeds.

# %% tags=["nbval-ignore-output"]
fig, axes = plots.new_figure(3, width=4.4, height=3.6)
for ax, t in zip(axes[0, :2], (0.2, 1.0)):
    _ = TT.similarity_histograms(ax, runs[t].z_test, runs[t].y_test)
    ax.set_title(f"test pairs, τ = {t:g}")
_ = TT.dilemma_plot(axes[0, 2], runs)
zt, yt = torch.as_tensor(runs[0.2].z_test).double(), torch.as_tensor(runs[0.2].y_test)
different = (yt[:, None] != yt[None, :]).triu(1)
assert abs(float((zt @ zt.T)[different].mean())) < 0.1           # τ = 0.2: different classes centred on 0
fig

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Train it yourself.** Choose the loss (NT-Xent, the hard contrastive loss, the simple loss with equal weights),
# τ, the hard-negative fraction, the epochs and the seed, and press *Train* (about 1.5 s per 30 epochs; a setting
# already trained comes back at once from the cache). The star is your run on the uniformity-tolerance plane.

# %% tags=["nbval-ignore-output"]
train_panel = TT.training_panel(reference_runs=runs, tau=0.2)
assert train_panel.state["result"] is runs[0.2]              # the default setting comes from the cache
train_panel

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 6. The claim, checked
#
# **The paper's claim.** (a) The contrastive loss is hardness-aware, and τ sets the strength of the penalty on hard
# negatives. (b) Small τ favours uniformity, large τ favours tolerance; a good τ balances the two. (c) Choosing the
# hard negatives explicitly eases the dilemma: the *hard contrastive loss* at a large τ is more uniform than plain
# NT-Xent at that τ, and keeps its tolerance. (All on CIFAR, SVHN and ImageNet-100, with MoCo queues and linear
# evaluation.)
#
# **What we can check here.** Four settings, each trained on the same paired seeds `SEEDS` (seed k starts every
# setting from the same network and draws the same batches) with the same budget of 30 epochs: NT-Xent at
# τ = 0.05, 0.2 and 1, and the hard contrastive loss at τ = 1 that keeps each anchor's hardest 50 % of negatives
# (`frac = 0.5`; the paper selects negatives by a similarity threshold, and no code was published). A difference is
# asserted only when its paired mean is more than two standard errors from 0 (`metrics.paired_difference`).
# 1. *Hardness awareness is exact* (section 3): the entropy and the largest share move monotonically with τ, the
#    pull equals the push, and the small-τ limit is the hardest-negative hinge.
# 2. *The mechanism on real runs:* at the end of training the push is shared more evenly the larger τ is, in
#    every seed.
# 3. *The dilemma, τ = 0.2 against τ = 1:* a lower uniformity loss at τ = 0.2, a higher tolerance at τ = 1.
# 4. *The hard contrastive loss against plain NT-Xent, both at τ = 1:* more uniform, and its tolerance kept.
#
# Tolerance differences at this scale are a few hundredths, about the size of the seed-to-seed spread, and need
# more seeds than uniformity differences do.
# 5. *Below τ = 0.2 the trend breaks.* We show it and measure why (the second half of this section).
#
# Runs cost seconds, so each setting gets 8 paired seeds (4 with `LOSSVIZ_FAST=1`): 32 runs, of which three were
# trained above, about 45 s. A difference below is asserted only where it clears two standard errors at this
# number of seeds; where it does not, we assert at most that it does not go the other way (and FAST's 4 seeds
# assert only that).

# %% tags=["nbval-ignore-output"]
ARMS = {"0.05": dict(tau=0.05), "0.2": dict(tau=0.2), "1": dict(tau=1.0),
        "hard": dict(loss="hard_nt_xent", tau=1.0, frac=0.5)}
NAMES = {"0.05": "τ = 0.05", "0.2": "τ = 0.2", "1": "τ = 1", "hard": "hard 50 %, τ = 1"}
seeded = {arm: [TT.train_two_view(epochs=EPOCHS, seed=s, **kw) for s in SEEDS] for arm, kw in ARMS.items()}
unif, tol, push_H, closer = ({arm: np.array([f(r) for r in rs]) for arm, rs in seeded.items()} for f in (
    lambda r: r.uniformity, lambda r: r.tolerance, lambda r: r.history["entropy"][-20:].mean(),
    lambda r: r.history["closer_share"][-20:].mean()))
for arm in ARMS:
    print(f"{NAMES[arm]:<17} uniformity {unif[arm].mean():.3f} ± {unif[arm].std(ddof=1):.3f}   tolerance "
          f"{tol[arm].mean():.3f} ± {tol[arm].std(ddof=1):.3f}   push entropy {push_H[arm].mean():.3f}   (mean ± sd)")
assert all(seeded[arm][0] is runs[t] for arm, t in (("0.05", 0.05), ("0.2", 0.2), ("1", 1.0)))   # seed 0: cached
assert all(r.history["loss"][-20:].mean() < r.history["loss"][:5].mean() - 0.3 for rs in seeded.values() for r in rs)

# %% [markdown] slideshow={"slide_type": "subslide"}
# Each dot is one seed, each large marker a seed mean. Below the figure, the paired differences: mean ± standard
# error over the seeds, on how many seeds the first setting came out ahead, and the verdict at two standard errors.

# %% tags=["nbval-ignore-output"]
claims = {"uniformity loss, τ = 1 minus τ = 0.2": metrics.paired_difference(unif["1"], unif["0.2"]),
          "tolerance, τ = 1 minus τ = 0.2": metrics.paired_difference(tol["1"], tol["0.2"]),
          "uniformity loss, τ = 1 minus hard": metrics.paired_difference(unif["1"], unif["hard"]),
          "tolerance, hard minus τ = 1": metrics.paired_difference(tol["hard"], tol["1"]),
          "tolerance, hard minus τ = 0.2": metrics.paired_difference(tol["hard"], tol["0.2"]),
          "uniformity loss, hard minus τ = 0.2": metrics.paired_difference(unif["hard"], unif["0.2"])}
fig, axes = plots.new_figure(1, width=6.4, height=4.4)
_ = TT.seeded_dilemma_plot(axes[0, 0], {NAMES[a]: rs for a, rs in seeded.items()})
for name, d in claims.items():
    print(f"{name:<40} {d}")
assert all((push_H["0.05"] < push_H["0.2"]) & (push_H["0.2"] < push_H["1"]))       # 2. larger τ, more even push
gap = claims["uniformity loss, τ = 1 minus τ = 0.2"]
assert gap.verdict == "ahead" and gap.wins == gap.n                               # 3. τ = 0.2 more uniform ...
def resolved(d):                          # 8 seeds: ahead beyond 2 se; FAST's 4 seeds: at least not behind
    return d.verdict != "behind" if FAST else d.verdict == "ahead"


assert resolved(claims["tolerance, τ = 1 minus τ = 0.2"])                        # ... τ = 1 more tolerant
assert claims["uniformity loss, τ = 1 minus hard"].verdict == "ahead"             # 4. hard: more uniform ...
assert resolved(claims["tolerance, hard minus τ = 0.2"])                         # ... more tolerant than τ = 0.2
assert claims["uniformity loss, hard minus τ = 0.2"].verdict == "ahead"           #     (and less uniform)
fig

# %% [markdown] slideshow={"slide_type": "subslide"}
# **What holds.**
# - *The dilemma, uniformity side,* holds for τ ∈ {0.2, 1}: τ = 0.2 is the more uniform on every seed, far beyond
#   the seed noise. *The tolerance side* is much weaker at this scale: compare the printed gap with the spread of
#   the tolerance in the table. Its verdict is printed above ("ahead" means the gap clears two standard errors).
#   With 8 paired seeds it does (asserted: τ = 1 is the more tolerant); with FAST's 4 seeds it may not, and the
#   assert then asks only that τ = 1 is not the *less* tolerant.
# - *The hard contrastive loss* is more uniform than plain NT-Xent at τ = 1, far beyond the seed noise, as the paper
#   says. It is less uniform than τ = 0.2: it sits between the two. *Tolerance kept?* It is more tolerant than
#   τ = 0.2, the plain way to buy uniformity (asserted on 8 seeds). Against τ = 1 its tolerance difference is
#   printed with its verdict: a few thousandths, inside the seed noise, so we claim nothing there. Whether it lands
#   *above* the curve that τ traces needs more temperatures (exercise 6).
# - *Downstream quality:* the paper's point is that a middle τ gives the best linear-probe accuracy. Our Recall@1
#   on $z$ is printed in section 5, but digits is too easy to rank τ with it (raw-pixel nearest neighbours already
#   reach a Recall@1 of about 0.98), so we claim nothing about it.
#
# ### Below τ = 0.2: the trend breaks, and why
# In the table above τ = 0.05 comes out as the *least* uniform and the *most* tolerant setting (its paired
# differences with τ = 0.2 are printed below). That is the opposite of the paper's finding on CIFAR. Three
# explanations come to mind:
# - *Numerical saturation?* The logits are at most $1/\tau = 20$ in size, and the loss goes through log-sum-exp
#   (section 7): float32 handles that without overflow, so the arithmetic is not the problem.
# - *Too little training?* Then the τ = 0.05 loss would prefer a more uniform embedding, and more training would
#   move toward it. We can ask the loss directly. Take the trained networks and score them under the τ = 0.05
#   loss, on the same fixed training batches (`TT.loss_on_batches`, float64, no training).
# - *The loss prefers a compact embedding?* Take the most uniform network (τ = 0.2), move its embedding toward its
#   mean (`TT.shrink`, factor < 1) or away from it (factor > 1), and watch each loss.

# %% tags=["nbval-ignore-output"]
batches = TT.fixed_batches()                 # 4 batches of 128 training digits, two views each, drawn once
FACTORS = (0.25, 0.5, 0.7, 1.0, 1.5, 2.0)
path = {(arm, tp): np.array([TT.shrink_path(r.model, batches, FACTORS, tau=tp) for r in seeded[arm]])
        for arm, tp in (("0.2", 0.05), ("0.2", 0.2), ("0.2", 1.0), ("0.05", 0.05), ("1", 1.0))}   # seeds x factors
at = {f: FACTORS.index(f) for f in FACTORS}
mech = {"τ = 0.05 loss: the τ = 0.2 network minus its own": metrics.paired_difference(
            path["0.2", 0.05][:, at[1.0]], path["0.05", 0.05][:, at[1.0]]),
        "uniformity loss, τ = 0.05 minus τ = 0.2": metrics.paired_difference(unif["0.05"], unif["0.2"]),
        "tolerance, τ = 0.05 minus τ = 0.2": metrics.paired_difference(tol["0.05"], tol["0.2"]),
        "τ = 0.05 loss of the τ = 0.2 network, unshrunk minus shrunk to 0.5": metrics.paired_difference(
            path["0.2", 0.05][:, at[1.0]], path["0.2", 0.05][:, at[0.5]]),
        "τ = 0.2 loss of the τ = 0.2 network, shrunk to 0.5 minus unshrunk": metrics.paired_difference(
            path["0.2", 0.2][:, at[0.5]], path["0.2", 0.2][:, at[1.0]]),
        "τ = 0.05 network, own loss: shrunk to 0.7 minus as trained": metrics.paired_difference(
            path["0.05", 0.05][:, at[0.7]], path["0.05", 0.05][:, at[1.0]]),
        "τ = 0.05 network, own loss: inflated to 1.5 minus as trained": metrics.paired_difference(
            path["0.05", 0.05][:, at[1.5]], path["0.05", 0.05][:, at[1.0]]),
        "τ = 0.2 network, own loss: inflated to 1.5 minus as trained": metrics.paired_difference(
            path["0.2", 0.2][:, at[1.5]], path["0.2", 0.2][:, at[1.0]]),
        "τ = 1 network, own loss: inflated to 1.5 minus as trained": metrics.paired_difference(
            path["1", 1.0][:, at[1.5]], path["1", 1.0][:, at[1.0]]),
        "push share on closer negatives, τ = 0.05 minus τ = 0.2": metrics.paired_difference(
            closer["0.05"], closer["0.2"])}
for name, d in mech.items():
    print(f"{name:<68} {d}")
assert mech["τ = 0.05 loss: the τ = 0.2 network minus its own"].verdict == "ahead"         # 1. not under-training
assert mech["τ = 0.05 network, own loss: shrunk to 0.7 minus as trained"].verdict == "ahead"   # 1. at the bottom
assert mech["τ = 0.05 network, own loss: inflated to 1.5 minus as trained"].verdict == "ahead"  #    of its loss,
assert mech["τ = 0.2 network, own loss: inflated to 1.5 minus as trained"].verdict == "behind"  # the others want
assert mech["τ = 1 network, own loss: inflated to 1.5 minus as trained"].verdict == "behind"    # more spread
assert mech["τ = 0.05 loss of the τ = 0.2 network, unshrunk minus shrunk to 0.5"].verdict == "ahead"  # 2. rewards
assert mech["τ = 0.2 loss of the τ = 0.2 network, shrunk to 0.5 minus unshrunk"].verdict == "ahead"   #    shrinking
assert mech["push share on closer negatives, τ = 0.05 minus τ = 0.2"].verdict == "ahead"  # 3. push on near-duplicates

# %% [markdown] slideshow={"slide_type": "subslide"}
# The same numbers as a picture, seed means. Left: the uniform τ = 0.2 network, shrunk or inflated, under three
# losses. Right: each network under its own loss.

# %% tags=["nbval-ignore-output"]
fig, axes = plots.new_figure(2, width=5.0, height=3.7)
_ = TT.shrink_plot(axes[0, 0], {f"τ' = {tp:g} loss": path["0.2", tp] for tp in (0.05, 0.2, 1.0)}, FACTORS,
                   title="the τ = 0.2 network, three losses")
_ = TT.shrink_plot(axes[0, 1], {f"τ = {a} network, own loss": path[a, float(a)] for a in ("0.05", "0.2", "1")},
                   FACTORS, title="each network under its own loss")
assert all(np.isfinite(v).all() for v in path.values())
fig

# %% [markdown] slideshow={"slide_type": "subslide"}
# **What the numbers say** (printed above; each line is a paired difference over the seeds).
# 1. *Not under-training.* The τ = 0.05 loss scores its own compact network **lower** than the uniform τ = 0.2
#    network, well beyond the seed noise. Training is doing what that loss asks; more of it has no reason to move
#    toward the uniform embedding. Right panel: the τ = 0.05 network sits at the bottom of its own loss along the shrink
#    path (shrinking it or inflating it both cost), while the τ = 0.2 and τ = 1 losses still fall, a little, when
#    their networks are inflated: those runs would like *more* spread, not less.
# 2. *The small-τ loss rewards shrinking.* Left panel: shrink the uniform τ = 0.2 embedding toward its mean and the
#    τ = 0.05 loss goes **down**, while the τ = 0.2 loss goes up.
# 3. *Why: the push goes to negatives the positive already loses to.* At τ = 0.05 a larger share of the push lands
#    on negatives that are more similar to the anchor than its own second view (right panel of the training figure;
#    last line above). Such a negative is a near-duplicate. With our augmentations (a one-pixel shift of an 8 × 8
#    image, 15 % of the pixels dropped, noise), a digit moves farther in pixels than many other digits of the batch
#    lie from it: the fraction of negatives closer than the positive, in pixels and after training, is printed
#    below. A small τ approximates the hinge $(s_{ik} - s_{ip})_+$ on the hardest negatives. For a comparison the
#    positive already loses ($s_{ik} > s_{ip}$) that hinge gets *smaller* when the whole cloud shrinks, because every
#    similarity moves toward 1. The cloud cannot collapse all the way: as it shrinks, more negatives come within τ
#    of the hardest and share its weight, and a collapsed cloud costs $\log(2B - 1)$. So the run settles in a
#    compact state that has not collapsed: less uniform, and more tolerant, because near-duplicates stay together.
#
# So at this scale the smallest τ does not fail for lack of training, nor through arithmetic. It optimises a different
# objective, and that objective prefers a compact embedding. The paper's setting differs: many more negatives from a
# queue, richer images and stronger augmentations, so we do not claim the same happens there. We assert the
# mechanism (lines 1, 2 and 3 above), not that the paper's trend fails.

# %% tags=["nbval-ignore-output"]
closer_pixels = TT.fraction_closer(batches)                     # the raw views, compared by pixel cosine
closer_1 = np.mean([TT.fraction_closer(batches, r.model) for r in seeded["1"]])
print(f"negatives closer to an anchor than its own positive: {closer_pixels:.0%} in pixels, "
      f"{closer_1:.0%} after training at τ = 1 (seed mean)")
assert closer_pixels > 0.25 and 0 < closer_1 < closer_pixels

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 7. Pitfalls
#
# **Unequal budgets.** Every comparison in this notebook gives each setting the same 30 epochs, the same batches and
# the same seeds. Training one τ longer and comparing it with another at its default mixes up "this τ is better"
# and "this run trained longer", and every loss here is still falling slowly at 30 epochs (section 5). To compare
# at another budget, train *all* the settings at it (exercise 4).
#
# **Too few hard negatives collapse the embedding.** The hard contrastive loss at τ = 1 that keeps only 10 % of the
# negatives (each anchor's 26 most similar) ends collapsed: uniformity ≈ 0, all test digits at one point. The cause
# is the one we just met at τ = 0.05, in its sharpest form: the kept negatives are the ones the positive already
# loses to. Compare the fraction of negatives that even the trained τ = 1 networks leave closer to an anchor than
# its positive (printed above) with the 10 % kept: the kept set holds little else. For such comparisons,
# shrinking the cloud lowers the loss, and with nothing else in the denominator it can shrink all the way. The
# table scores the trained, *spread* τ = 1 networks of section 6 under the hard loss with several fractions, and
# compares them with a collapsing cloud, whose loss tends to $\log(1 + k)$ with $k$ kept negatives. At 10 % the
# spread networks score *worse* than the collapse: even a well-spread start lies uphill from it, so the collapse is
# not the fault of the nearly collapsed untrained network (exercise 3 starts from a spread one). At 50 % they
# score clearly better, and that loss trains (section 6).

# %% tags=["nbval-ignore-output"]
hard10 = TT.train_two_view("hard_nt_xent", tau=1.0, frac=0.1, epochs=EPOCHS)
print(f"hard, τ = 1, 10% of negatives: {hard10!r}\nfull NT-Xent, τ = 1:            {runs[1.0]!r}\n")
FRACS = (0.1, 0.3, 0.5, 1.0)
kept = {f: math.ceil(f * (2 * 128 - 2)) for f in FRACS}
gain = {f: metrics.paired_difference([math.log(1 + kept[f])] * len(SEEDS),
                                     [TT.loss_on_batches(r.model, batches, "hard_nt_xent", tau=1.0, frac=f)
                                      for r in seeded["1"]]) for f in FRACS}
print("hard loss at τ = 1: collapsed cloud minus the trained τ = 1 networks (> 0: spread is better)")
for f in FRACS:
    print(f"  keep {f:>4.0%} ({kept[f]:>3} negatives): {gain[f]}")
assert hard10.uniformity > -0.1 and hard10.tolerance > 0.99                      # collapsed
assert gain[0.1].verdict == "behind" and gain[0.5].verdict == "ahead"            # 10 %: collapse wins; 50 %: spread

# %% [markdown] slideshow={"slide_type": "subslide"}
# **More traps.**
# - *Never form `exp(S / τ)` yourself.* At τ = 0.01 a similarity of 0.9 gives $e^{90}$, past float32's range:

# %%
naive = torch.exp(S.float() / 0.01).sum(1).log()
stable = torch.logsumexp(S.float() / 0.01, dim=1)
print(f"naive log-sum-exp: {naive[:3].tolist()}  stable: {[round(v, 2) for v in stable[:3].tolist()]}")
assert not torch.isfinite(naive).all() and torch.isfinite(stable).all()

# %% [markdown] slideshow={"slide_type": "subslide"}
# - *Conventions differ.* Some code multiplies by a scale $s = 1/\tau$ (an inverse temperature; notebook 14), and
#   some leaves the positive out of the denominator (then the push no longer equals the pull). lossviz follows
#   SimCLR: divide by τ, positive in the denominator.
# - *Labels must not leak.* Tolerance needs class labels; training must not see them. `TT.train_two_view` gives the
#   loss only the view labels $0..B-1$ twice (check `augment.two_view_labels`).
# - *kNN on digits is saturated*: use uniformity and tolerance (or a harder data set, MNIST-1D:
#   `augment.two_views(x, "mnist1d", ...)` works on it) to compare temperatures.
# - *A temperature of 0* is refused with a clear error rather than dividing by zero:

# %%
try:
    lv.nt_xent_loss(S, y, tau=0)
except ValueError as err:
    print("ValueError:", err)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 8. Exercises
# 1. **Batch size and hardness.** Draw a two-view batch of 64 images instead of 16 and redo the entropy-vs-τ
#    plot. At a fixed τ, is the push more or less concentrated? *Hint:* more negatives means more chances of a
#    very similar one; compare `C.negative_weight_entropy(..., normalized=True)`.
# 2. **The simple loss.** In the training panel choose `simple`. Where does it land on the uniformity-tolerance
#    plane? *Hint:* its push is uniform (entropy 1), the τ → ∞ limit of NT-Xent; compare it with the τ = 1 run.
# 3. **Collapse from a spread start?** Start the 10 % hard loss from the trained, spread τ = 1 network instead of
#    a fresh one: `TT.train_two_view("hard_nt_xent", tau=1.0, frac=0.1, init=runs[1.0])`. Does the spread survive?
#    Then try `frac=0.3` and `frac=0.5`. *Hint:* compare the run's first loss, `run.history["loss"][0]`, with the
#    collapsed cloud's $\log(1 + k)$, $k$ the number of kept negatives: which one is lower tells you which way the
#    loss will go.
# 4. **Longer budgets, for everyone.** Rerun the sweep with `epochs=120` for *every* τ (`TT.sweep(TAUS,
#    epochs=120)`, about 20 s) and plot it with `TT.dilemma_plot`. Does τ = 0.05 catch up with τ = 0.2? Then start
#    τ = 0.05 from the uniform τ = 0.2 network, `TT.train_two_view(tau=0.05, init=runs[0.2])`: does it keep the
#    uniformity it starts with? *Hint:* section 6 says which way the τ = 0.05 loss pulls.
# 5. **The step size?** Is the τ = 0.05 result an artefact of Adam's step size? Train it with
#    `lr=3e-3` and `lr=3e-4` (30 epochs each) and place them on the uniformity-tolerance plane. *Hint:* a smaller
#    step also learns less in 30 epochs; compare with τ = 0.2 at the same learning rate.
# 6. **More seeds, more temperatures.** Set `SEEDS = tuple(range(16))` and rerun section 6 (about 90 s): does the
#    tolerance gap of the hard loss against τ = 1 now clear two standard errors? Add τ = 0.5
#    as a fifth setting: is the hard loss at τ = 1 above the curve that τ traces, or on it? *Hint:* compare the hard loss with τ = 0.5 by
#    `metrics.paired_difference` on both measures.
#
# ## 9. Summary
# - NT-Xent pulls each positive with weight $1 - q_p$ and pushes its negatives with the same total weight, shared
#   out by the relative penalty $r$ = softmax of the negatives' similarities at temperature τ.
# - τ is a hardness knob: as τ → 0 all the push goes to the hardest negative (a triplet loss on it), as τ → ∞ it is
#   spread evenly (the simple loss). The entropy of $r$ measures where a setting sits.
# - On self-supervised digits, with paired seeds and equal budgets: τ = 0.2 is more uniform than τ = 1 on every
#   seed, and the hard contrastive loss at τ = 1 (50 % of the negatives) is more uniform than plain NT-Xent at
#   τ = 1, as the paper says. The tolerance side is weak at this scale, differences of a few hundredths: 8 paired
#   seeds resolve τ = 1 over τ = 0.2 and the hard loss over τ = 0.2, not the hard loss against τ = 1.
# - Below τ = 0.2 the trend breaks, and not for lack of training: the τ = 0.05 loss prefers a compact embedding,
#   because much of its push goes to near-duplicate negatives that already beat the positive, and shrinking the
#   cloud shrinks those violations. The same mechanism, unchecked, collapses the hard loss with 10 % of negatives.
#
# **References.** Wang & Liu, *Understanding the Behaviour of Contrastive Loss*, CVPR 2021. Wang & Isola,
# *Understanding Contrastive Representation Learning through Alignment and Uniformity on the Hypersphere*, ICML
# 2020. Chen, Kornblith, Norouzi, Hinton, *A Simple Framework for Contrastive Learning of Visual Representations*
# (SimCLR), ICML 2020. He et al., *Momentum Contrast for Unsupervised Visual Representation Learning* (MoCo), CVPR
# 2020. Oord, Li, Vinyals, *Representation Learning with Contrastive Predictive Coding* (InfoNCE), 2018.
