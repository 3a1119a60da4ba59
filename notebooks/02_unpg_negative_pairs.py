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
# # 02 — UNPG: one softmax for proxy negatives and batch negatives
#
# **Paper.** Junuk Jung, Seonhoon Lee, Heung-Seon Oh, Yongjun Park, Joochan Park, Sungbin Son.
# *Unified Negative Pair Generation toward Well-discriminative Feature Space for Face Recognition.*
# [arXiv:2203.11593](https://arxiv.org/abs/2203.11593) (2022, revised 2024) ·
# official code: [Jung-Jun-Uk/UNPG](https://github.com/Jung-Jun-Uk/UNPG) (Apache-2.0; lossviz
# re-implements it from the formulas, because the official head only runs on a GPU — see the pitfalls).
#
# **The story.** Face verification asks one question of two photos: same person or not? It works when
# *every* same-person similarity is higher than *every* different-person similarity. Two families of
# losses train such features, and each sees only half of the negatives. A **metric loss** (notebook 01)
# compares the samples of a batch with each other: it sees real, sometimes very hard, negative pairs, but
# only among the few people who happen to be in the batch. A **classification loss** such as ArcFace
# compares each sample with one weight vector (a *proxy*) per person: it sees every identity at every
# step, but proxies sit at class centres and are never *very* hard negatives. UNPG asks: *why not put
# both kinds of negative pair into one softmax?* And since some batch pairs are noise (mislabelled faces),
# it first drops the outliers with a box-and-whisker rule.
#
# In this notebook you will write the loss, see which pairs it pushes apart and how hard (its pair
# weights, as in notebook 01), move its knobs, train ArcFace with and without UNPG on synthetic
# "faces", and check on unseen identities what of the paper's claim holds at small scale.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Setup
#
# One cell: imports, seeds, one torch thread, and the `FAST` switch (`LOSSVIZ_FAST=1` trains 4 paired seeds
# instead of 8).

# %%
import inspect
import math

import numpy as np
import torch
import torch.nn.functional as F

import lossviz as lv
from lossviz import data, margins, plots
from lossviz.papers import unpg
from lossviz import train as T

FAST = T.setup(seed=0)
SEEDS = tuple(range(4 if FAST else 8))           # paired: seed k trains both losses from the same start
KNOBS = dict(s=30.0, m=0.3, kind="arcface")     # small-scale choice; the paper trains with s = 64, m = 0.5
W = 1.5                                         # the whisker width of head.zoo.yaml
print("lossviz", lv.__version__, "| torch", torch.__version__, "| FAST =", FAST, "| seeds", SEEDS)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1. The idea and the math
#
# ### Notation
# A batch holds $B$ samples with labels $y_i$ and features $x_i$; $\hat x_i = x_i/\lVert x_i\rVert$. There
# are $K$ classes (identities), each with a learnable **proxy** $W_k$, $\hat W_k = W_k/\lVert W_k\rVert$.
# Two similarity matrices:
#
# * $C_{ik} = \cos\theta_{ik} = \langle \hat x_i, \hat W_k\rangle$ ($B\times K$): sample-to-proxy;
# * $S_{ab} = \langle \hat x_a, \hat x_b\rangle$ ($B\times B$): sample-to-sample, as in notebook 01.
#
# $s$ is the scale (an inverse temperature) and $m$ the margin; $\psi(\theta) = \cos(\theta+m)$ for ArcFace,
# $\cos\theta - m$ for CosFace.
#
# ### The baseline: ArcFace pairs each sample with every proxy
# $$L_{cls} = \frac1B\sum_i -\log\frac{e^{s\psi(\theta_{i,y_i})}}{e^{s\psi(\theta_{i,y_i})} + \sum_{k\neq y_i} e^{s\cos\theta_{ik}}}.$$
# Its negative pairs are the $K-1$ pairs (sample $i$, wrong proxy $k$).
#
# ### Metric pair generation and the box-and-whisker filter
# The batch negatives are the different-identity pairs of the upper triangle, each pair once:
# $S^n = \{S_{ab} : a<b,\ y_a\neq y_b\}$, $L = |S^n|$. Sort them; the official code takes the quartiles **by
# integer index**, $Q_1 = \mathrm{sort}(S^n)[\lfloor L/4\rfloor]$ and $Q_3 = \mathrm{sort}(S^n)[\lfloor 3L/4\rfloor]$, and
# keeps the pairs inside the whiskers of width $w$:
# $$S^{n\prime} = \{v\in S^n:\ Q_1 - w\,\mathrm{IQR} \le v \le Q_3 + w\,\mathrm{IQR}\},\qquad \mathrm{IQR} = Q_3 - Q_1.$$
# Both tails are cut. The upper tail holds the hardest negatives; the paper calls them *noisy* pairs (in
# web-scale face data many of them are mislabelled photos of the same person).
#
# ### UNPG: both kinds of negative pair in one softmax
# $$L_{UNPG} = \frac1B\sum_i -\log\frac{e^{s\psi(\theta_{i,y_i})}}{e^{s\psi(\theta_{i,y_i})} + \sum_{k\neq y_i} e^{s\cos\theta_{ik}} + \sum_{v\in S^{n\prime}} e^{s v}}.$$
# The **same** kept pairs enter every row's denominator, and they are not detached: the gradient reaches
# both features of every kept pair. There is no new knob besides $w$; $s$ is shared.
#
# ### The pair weights (General Pair Weighting, as in notebook 01)
# Let $Z_i$ be row $i$'s denominator and $p_{i,v} = e^{sv}/Z_i$ its softmax probability of kept pair $v=(a,b)$. Then
# $$\frac{\partial L}{\partial S_{ab}} = \frac sB\sum_i p_{i,v} = \frac sB\, e^{sS_{ab}} \sum_i \frac1{Z_i}\quad(\text{kept pair}),\qquad
#   \frac{\partial L}{\partial S_{ab}} = 0\quad(\text{filtered pair, positive pair}),$$
# $$\frac{\partial L}{\partial \cos\theta_{ik}} = \frac sB\, p_{ik} = \frac sB\,\frac{e^{s\cos\theta_{ik}}}{Z_i}\quad(k\neq y_i).$$
# Three things to read off:
# 1. **Hardness-aware, exponentially.** A pair's weight grows like $e^{sS_{ab}}$: a softmax at temperature
#    $1/s$, like the negative half of lifted structure or MS.
# 2. **Not tied to an anchor.** $\sum_i 1/Z_i$ is one number for the whole batch, so *every* kept pair lies on
#    the *same* exponential curve — unlike MS, whose weight depends on the anchor's other pairs. Every row
#    pushes pair $(a,b)$ apart, even rows whose sample is neither $a$ nor $b$; so at equal similarity a batch
#    pair gets about $B$ times the weight of one proxy negative.
# 3. **No positive-pair term.** UNPG only adds negatives; the pull towards the own class still comes from the proxy.
#
# | | negatives per row | weight of a negative | positives |
# |---|---|---|---|
# | ArcFace / CosFace | $K-1$ proxies | $\frac sB e^{s\cos\theta_{ik}}/Z_i$ (own row) | the proxy, with margin |
# | MS (notebook 01) | the anchor's mined batch negatives | $e^{\beta S_{ij}}$ over the anchor's own negatives | mined batch positives |
# | ArcFace + UNPG | $K-1$ proxies **and** all of $S^{n\prime}$ | $\frac sB e^{sS_{ab}}\sum_i 1/Z_i$ (all rows) | the proxy, with margin |
#
# ### One column instead of $|S^{n\prime}|$
# The official code appends the vector $s\,S^{n\prime}$ to every row: a $B\times|S^{n\prime}|$ block (about
# $128\times 8000$ logits here, $B^3/2$ in general). But $\sum_{v} e^{sv}$ is the same number in every row, so
# lossviz appends its logarithm, $\operatorname{logsumexp}(s\,S^{n\prime})$, as **one** extra column. Same loss,
# same gradients, and a UNPG step costs about as much as an ArcFace step.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 2. From formula to code
#
# `unpg.unpg_logits` builds the ArcFace logits with `margins.margin_logits` (notebook-independent, shared
# with the margin-softmax lessons), filters the batch negatives with `kept_pairs`, and appends the one column.
# `unpg_loss` is cross-entropy on these logits.

# %%
print(inspect.getsource(unpg.whisker_window))
print(inspect.getsource(unpg.unpg_logits))

# %% [markdown] slideshow={"slide_type": "subslide"}
# A batch of 64 training "faces" (see section 5 for the data: 32 features that carry the identity and 16
# that are pure noise) through an untrained network: a 16-d embedding $x$ and 300 random proxies give $C$ and $S$.

# %%
ids = unpg.face_data()
x64, y64 = unpg.probe_batch(ids, batch=64)
torch.manual_seed(0)
net0, head0 = unpg.face_model(), margins.CosineClassifier(16, 300)
with torch.no_grad():
    f0 = net0(x64).double()
C0, S0 = margins.cosine_logits(f0, head0.weight.detach().double()), lv.similarity(f0)
print(f"train: {len(ids.y_train)} images of {len(ids.y_train.unique())} identities; test: {len(ids.y_test)} images "
      f"of {len(ids.y_test.unique())} unseen identities; {ids.x_train.shape[1]} features per image | "
      f"batch: C {tuple(C0.shape)}, S {tuple(S0.shape)}")

# %% [markdown] slideshow={"slide_type": "subslide"}
# **From scratch, the official way:** sort the batch negatives, take the quartiles by index, keep the
# window, append the whole kept vector to every row, cross-entropy. It equals lossviz's one-column form.

# %%
s, m = KNOBS["s"], KNOBS["m"]
sn = S0[(y64[:, None] != y64[None, :]).triu(1)]            # S^n: upper triangle, different labels
ordered = sn.sort().values
L = len(ordered)
q1, q3 = ordered[int(0.25 * L)], ordered[int(0.75 * L)]
kept = ordered[(ordered >= q1 - W * (q3 - q1)) & (ordered <= q3 + W * (q3 - q1))]
logits = torch.cat([margins.margin_logits(C0, y64, s=s, m=m), s * kept.expand(64, -1)], dim=1)
literal = F.cross_entropy(logits, y64)
ours = unpg.unpg_loss(C0, S0, y64, w=W, **KNOBS)
print(f"{L} batch negatives, {len(kept)} kept; logits {tuple(logits.shape)} vs "
      f"{tuple(unpg.unpg_logits(C0, S0, y64, w=W, **KNOBS).shape)}")
gap = abs(float(literal) - float(ours))
print(f"literal {float(literal):.4f}   lossviz {float(ours):.4f}   |difference| {'< 1e-10' if gap < 1e-10 else gap}")
assert gap < 1e-10

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 3. Weights as pictures
#
# ### How many pairs does the filter keep?
# The kept count can only grow with $w$ (the window widens), and a huge $w$ keeps every pair. At $w = 0$ only
# the inter-quartile half of the pairs stays.

# %%
ws = [0.0, 0.5, 1.0, 1.5, 3.0, 1e3]
counts0 = unpg.kept_counts(S0, y64, ws)
print(f"|S^n| = {L}; kept at w = " + ", ".join(f"{w:g}: {c}" for w, c in zip(ws, counts0)))
assert list(counts0) == sorted(counts0) and counts0[-1] == L

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### The mismatch: batch negatives against proxy negatives
# The paper's motivation, as a picture. We take a fixed probe batch of 128 training images and plot three
# densities: all batch negatives $S^n$ (vermillion line), the kept window $S^{n\prime}$ (shaded vermillion,
# grey = the cut tails), and the proxy negatives $\cos\theta_{ik}$, $k\neq y_i$ (purple). Left: untrained
# network. Right: after 300 steps of plain ArcFace (the run of section 5, cached: it takes a few seconds).

# %% tags=["nbval-ignore-output"]
probe = unpg.probe_batch(ids)
arc0 = unpg.train_faces(unpg=False, seed=0, progress=False, **KNOBS)
C_init, S_init, y_p = unpg.batch_view(net0, head0, *probe)
C_arc, S_arc, _ = arc0.view(*probe)
fig, axes = plots.new_figure(2, width=5.2, height=3.8)
_ = unpg.mismatch_plot(axes[0, 0], C_init, S_init, y_p, w=W, title="untrained network")
_ = unpg.mismatch_plot(axes[0, 1], C_arc, S_arc, y_p, w=W, title="after 300 steps of ArcFace")
assert arc0.history["loss"][-10:].mean() < arc0.history["loss"][:10].mean()     # ArcFace trained
assert all(len(ax.patches) > 0 for ax in axes.ravel())                           # both panels drew
fig

# %% tags=["nbval-ignore-output"]
p99 = {name: unpg.mismatch(C_, S_, y_p) for name, (C_, S_) in
       {"untrained": (C_init, S_init), "after ArcFace": (C_arc, S_arc)}.items()}
for name, (pb, pp) in p99.items():
    print(f"{name:14s} 99th percentile: batch negatives {pb:.3f}, proxy negatives {pp:.3f}")
assert all(pb > pp for pb, pp in p99.values())          # batch negatives reach higher, before and after
assert p99["after ArcFace"][0] < p99["untrained"][0]    # training pulls the hardest batch negatives down

# %% [markdown] slideshow={"slide_type": "subslide"}
# Untrained, all features point roughly the same way, so batch negatives are very similar while random
# proxies are not. After ArcFace the bulk of both distributions sits near 0, but the batch negatives keep
# a longer upper tail than the proxies: the hardest negatives a sample meets are other *samples*, not
# class centres. Notice also what the whisker cuts at $w = 1.5$: a few pairs in the tails — exactly the
# hardest negatives.
#
# ### Weight against similarity
# The pair weights by autograd (`unpg.unpg_weights` makes $C$ and $S$ leaves and reads both gradients), for
# the probe batch after ArcFace training. Each kept batch pair (vermillion) and each proxy negative (purple)
# at its similarity, on a log scale (twelve decades; smaller weights fall off the bottom); filtered pairs are
# drawn as crosses on the bottom line: their weight is exactly 0.

# %% tags=["nbval-ignore-output"]
fig, axes = plots.new_figure(1, width=6.4, height=4.0)
wts = unpg.weight_plot(axes[0, 0], C_arc, S_arc, y_p, w=W, **KNOBS)
assert len(axes[0, 0].collections) == 3 and bool((wts.S > 0).any()) and bool((wts.C > 0).any())
fig

# %% [markdown] slideshow={"slide_type": "subslide"}
# The vermillion points lie on **one straight line** of slope $s/\ln 10$ per unit of similarity: the weight is
# $\frac sB e^{sS_{ab}}\sum_i 1/Z_i$, the same curve for every pair. The purple points form a band, not one line,
# because each proxy weight carries its own row's $1/Z_i$ (the band is thin when the rows' denominators are alike),
# and it sits about $\log_{10}B \approx 2$ decades lower. We check the three exact properties of the loss on this
# batch (they hold for any network, trained or not): zero weight off the kept pairs, the slope $s$, and
# autograd $=\frac sB\sum_i p_{i,v}$ (from the literal $B\times(K+|S^{n\prime}|)$ softmax).

# %%
kept_mask, neg_mask = unpg.kept_pairs(S_arc, y_p, w=W), unpg.negative_pairs(y_p)
pos_mask = lv.pair_masks(y_p)[0]
slope, _ = np.polyfit(S_arc[kept_mask].numpy(), np.log(wts.S[kept_mask].numpy()), 1)
full = torch.cat([margins.margin_logits(C_arc, y_p, s=s, m=m), s * S_arc[kept_mask].expand(len(y_p), -1)], 1)
closed = s / len(y_p) * full.softmax(dim=1)[:, C_arc.shape[1]:].sum(dim=0)     # (s/B) sum_i p_iv
err = float((wts.S[kept_mask] - closed).abs().max())
print(f"largest |weight| on filtered pairs: {float(wts.S[neg_mask & ~kept_mask].abs().max()):g}; "
      f"on positives: {float(wts.S[pos_mask].abs().max()):g}")
print(f"fitted slope of log-weight vs similarity: {slope:.6f} (s = {s:g});  "
      f"max |autograd - closed form| {'< 1e-12' if err < 1e-12 else err}")
assert bool((wts.S[~kept_mask] == 0).all()) and bool((wts.S[kept_mask] > 0).all())
assert abs(slope - s) < 1e-6 and err < 1e-6

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### The batch as a heat-map, next to MS loss
# A batch of 16 identities × 4 images (so that positive pairs exist and show as outlined blocks), through the
# ArcFace-trained network. Left: UNPG's $\partial L/\partial S$. Right: MS loss's weights on the same $S$
# (`lv.pair_weights(lv.ms_loss, ...)`, official-code knobs). UNPG's $S$ is used only on the upper triangle
# and MS's per anchor, so both maps show each pair's total, $\partial L/\partial S_{ab} + \partial L/\partial S_{ba}$;
# each map is scaled to its own largest weight.

# %% tags=["nbval-ignore-output"]
idx = data.PKSampler(ids.y_train.numpy(), p=16, k=4, seed=0).sample()
C_pk, S_pk, y_pk = arc0.view(ids.x_train[idx], ids.y_train[idx])
G_unpg = unpg.unpg_weights(C_pk, S_pk, y_pk, w=W, **KNOBS).S
G_ms = lv.pair_weights(lv.ms_loss, S_pk, y_pk, signed=True, **lv.MS_PRESETS["official_code"])
fig, axes = plots.new_figure(2, width=4.8, height=4.2)
_ = plots.weight_heatmap(axes[0, 0], G_unpg + G_unpg.T, y_pk, title="ArcFace + UNPG: ∂L/∂S")
_ = plots.weight_heatmap(axes[0, 1], G_ms + G_ms.T, y_pk, title="MS loss: ∂L/∂S")
assert all(len(ax.images) == 1 for ax in axes.ravel()) and bool(G_unpg.any()) and bool(G_ms.any())
fig

# %% tags=["nbval-ignore-output"]
pos_pk, neg_pk = lv.pair_masks(y_pk)
nonzero = {}
for name, G in (("UNPG", G_unpg), ("MS", G_ms)):
    nonzero[name] = [float(((G + G.T)[mask] != 0).float().mean()) for mask in (pos_pk, neg_pk)]
    print(f"{name:4s}: pairs with non-zero weight: {nonzero[name][0]:.0%} of positives, {nonzero[name][1]:.0%} of negatives")
assert bool((G_unpg[pos_pk] == 0).all()) and bool((G_ms[pos_pk] != 0).any())
assert nonzero["UNPG"][1] > 0.9 and nonzero["MS"][1] < 0.5     # UNPG pushes nearly all, MS a few per anchor

# %% [markdown] slideshow={"slide_type": "subslide"}
# The UNPG map has blank diagonal blocks (no positive-pair term) and bright spots wherever two different
# people look alike — wherever they are in the batch. MS pulls its mined positives (blue) and spends its
# push on each anchor's own few hardest negatives.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 4. Explore
#
# The panels here are built on `lossviz.widgets`: moving a control redraws the figure in place,
# and a Train button runs a real training run, cached by its settings.
#
# **Pure maths on the probe batch** (ArcFace-trained features). Move the scale $s$, the margin $m$, the whisker
# $w$ (or switch the filter off), and the margin type. Left: the mismatch picture with the whisker window;
# middle: pair weights against similarity; right: the kept count against $w$. The status line says how much
# of each row's softmax mass goes to the proxies and how much to the batch pairs. Try $s = 8$ (weights spread
# over many pairs) and $s = 64$ (the top few pairs take everything).

# %% tags=["nbval-ignore-output"]
explore = unpg.explore_panel(C_arc, S_arc, y_p, w=W, **KNOBS)
assert explore.state["kept"] == int(kept_mask.sum()) and explore.state["mass"][1] > 0
explore

# %% [markdown] slideshow={"slide_type": "subslide"}
# The panel is an ordinary object: setting a control redraws it.

# %%
explore.controls["w"].value = 0.0
kept_w0 = explore.state["kept"]
explore.controls["filter"].value = False
print(f"kept at w = 0: {kept_w0};  without the filter: {explore.state['kept']} of {int(neg_mask.sum())}")
assert kept_w0 < int(kept_mask.sum()) < explore.state["kept"] == int(neg_mask.sum())
explore.controls["filter"].value, explore.controls["w"].value = True, W

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 5. A real training run: verification on unseen identities
# **Data** (`unpg.face_data()`, generated locally). 400 synthetic identities, 12 images each, 48 features per
# image:
# * 32 features carry the identity (`data.load("ids")`): class centres $\mu_k\sim\mathcal N(0, I_{24})$, and an
#   image is $\tanh((\mu_k + 0.7\varepsilon)A) + 0.05\varepsilon'$ with one fixed random $24\times32$ map $A$;
# * 16 **nuisance** features, drawn from $\mathcal N(0, 1)$ independently of the identity: the stand-in for the
#   lighting, pose and background that change from one photo of a person to the next.
#
# We train on identities 0–299 (3600 images) and verify on the 100 unseen identities 300–399: 1200 images,
# 6,600 genuine pairs and about 712,000 impostor pairs.
#
# *Why the nuisance features?* Verification on unseen people only rewards what carries over from the training
# people. On the 32 clean features alone the raw cosine is already a good verifier (printed below), so a network
# has little to learn that would help with new people, and comparing two losses there compares little but seed
# noise. With the nuisance features the raw cosine is mostly noise; a network that learns, on the training
# identities, to ignore them ignores them on unseen people as well. That is a skill a loss can teach well or badly.
#
# **Model and training.** An MLP 48 → 128 → 128 → 16 with ReLU, L2-normalised; 300 proxies; ArcFace with
# $s = 30$, $m = 0.3$, with or without UNPG ($w = 1.5$); Adam, learning rate 2e-3, batches of 128 random images,
# 300 steps. **Paired seeds:** for each seed in `SEEDS` both losses start from the same network and proxies and
# see the same batches, so the difference between them is the loss and nothing else.
#
# **Metric.** TAR@FAR: the threshold is the $(1-\mathrm{FAR})$-quantile of the impostor cosines, TAR the fraction
# of genuine pairs above it — measured before training and every 50 steps. We also track the mismatch on the
# probe batch (99th percentile of batch negatives minus that of proxy negatives).

# %% tags=["nbval-ignore-output"]
runs = {(seed, u): unpg.train_faces(unpg=u, w=W, seed=seed, **KNOBS) for seed in SEEDS for u in (False, True)}
assert all(np.isfinite(r.history["loss"]).all() for r in runs.values())
assert all(r.history["loss"][-10:].mean() < r.history["loss"][:10].mean() for r in runs.values())
assert all(np.argmax(r.evals["tar@1e-2"]) > 0 for r in runs.values())   # every run's best checkpoint is after step 0

# %% tags=["nbval-ignore-output"]
fig, axes = plots.new_figure(3, width=4.3, height=3.5)
_ = unpg.learning_curves(axes[0], [runs[0, False], runs[0, True]])
e_arc, e_unpg = runs[0, False].evals, runs[0, True].evals
assert e_arc["tar@1e-2"][0] == e_unpg["tar@1e-2"][0]                  # paired: the same untrained network
assert ((e_arc["p99_batch"] - e_arc["p99_proxy"]) > 0).all()          # ArcFace's mismatch, at every evaluation
fig

# %% [markdown] slideshow={"slide_type": "subslide"}
# Seed 0. Left: the two losses are not comparable in value (UNPG's denominators hold about 8,000 more terms); both
# fall. Middle: TAR on the *unseen* identities; both curves start at the same point, the untrained network. Right:
# ArcFace leaves the hardest batch negatives above the hardest proxy negatives (gap > 0) throughout; UNPG pushes
# exactly those pairs. One seed shows the shape of things; section 6 compares the losses over all the seeds.
#
# **The controls.** Before comparing the two losses, three ways to verify that involve no loss at all:
# * *raw inputs:* the cosine of the 48 input features themselves;
# * *clean features (an oracle):* the cosine of the 32 identity features alone, i.e. a perfect "drop the nuisance"
#   with no other learning — we know which features are noise, the network does not;
# * *untrained network:* each run's evaluation at step 0 (the same network for both losses of a seed).
#
# Trained results are mean ± standard error over the seeds; the last lines are paired differences
# (`lv.metrics.paired_difference`: mean, SE, on how many seeds the first is ahead, and the verdict at 2 SE).

# %% tags=["nbval-ignore-output"]
raw_tar = lv.metrics.tar_at_far(ids.x_test, ids.y_test, 1e-2)
clean_tar = lv.metrics.tar_at_far(ids.x_test[:, :32], ids.y_test, 1e-2)
untrained, arcface, with_unpg = (np.array([runs[seed, u].evals["tar@1e-2"][i] for seed in SEEDS])
                                 for u, i in ((False, 0), (False, -1), (True, -1)))
for name, v in {"raw inputs (48 features)": [raw_tar], "clean features (oracle)": [clean_tar],
                "untrained network": untrained, "ArcFace": arcface, "ArcFace + UNPG": with_unpg}.items():
    spread = f" ± {np.std(v, ddof=1) / np.sqrt(len(v)):.3f} over {len(v)} seeds" if len(v) > 1 else ""
    print(f"{name:26s} TAR@1e-2 {np.mean(v):.3f}{spread}")
learned = {name: lv.metrics.paired_difference(v, untrained) for name, v in (("ArcFace", arcface), ("ArcFace + UNPG", with_unpg))}
vs_raw = {name: lv.metrics.paired_difference(v, raw_tar) for name, v in (("ArcFace", arcface), ("ArcFace + UNPG", with_unpg))}
for name in learned:
    print(f"{name:15s} - untrained: {learned[name]}\n{name:15s} - raw inputs: {vs_raw[name]}")
assert clean_tar > raw_tar + 0.2                         # the nuisance features drown the raw cosine
assert all(d.verdict == "ahead" for d in learned.values())   # learning matters: both trained networks beat their start
assert vs_raw["ArcFace"].verdict == "behind" and with_unpg.max() < clean_tar

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Learning matters in this miniature:** both trained networks verify new people far better than the untrained
# network they started from (asserted, paired by seed). The raw inputs are a stronger control: ArcFace alone is
# still below them after 300 steps (asserted); whether ArcFace + UNPG passes them is the verdict on the last
# line. And both networks stay far below the oracle that simply drops the nuisance features (asserted): a small
# MLP trained for a few seconds is a weak face model. The lesson is comparative: with the same network, the same
# batches and the same budget, which loss learns features that carry over to new people?
#
# **Train it yourself.** Choose ArcFace or CosFace, with or without UNPG, $s$, $m$, $w$ and the seed, and press
# *Train* (a few seconds; the panel also trains the plain margin softmax with the same knobs, for comparison;
# a setting already trained shows at once).

# %% tags=["nbval-ignore-output"]
panel = unpg.training_panel(w=W, **KNOBS)
assert panel.state["result"][1] is runs[0, True]        # the default setting came from the cache
panel

# %%
panel.controls["seed"].value = SEEDS[-1]                  # an example: another seed (already trained above)
base_, run_ = panel.train()
assert run_ is runs[SEEDS[-1], True] and base_ is runs[SEEDS[-1], False]

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 6. The claim, checked
# **The paper's claim.** Adding UNPG to ArcFace, CosFace or MagFace improves verification on the face
# benchmarks (IJB-B, IJB-C, K-FACE, trained on MS1MV2 with a ResNet-100), and the box-and-whisker filter is
# needed for reliable training.
#
# **What we check here**, on the paired seeds of section 5 (fixed in advance, not tuned):
# 1. *Training:* on the unseen identities ArcFace + UNPG verifies better than ArcFace. The paired difference of
#    TAR@FAR=1e-2 must be ahead with room to spare: its lower end, mean − 2 SE, above 0.05 (five points of TAR).
#    At FAR=1e-3, where TAR is small for both, we ask only for "ahead".
# 2. *The mismatch, in numbers:* after ArcFace-only training, the 99th percentile of the batch negatives is
#    above the 99th percentile of the proxy negatives (paired by seed: ahead).
# 3. *The mechanism:* UNPG pushes exactly those hardest batch negatives, so after UNPG training that gap is
#    smaller than after ArcFace (paired by seed: behind).
# 4. *The exact properties* (no training; properties of the loss, true for any network and any batch): checked in
#    sections 2 and 3 above and in `tests/test_unpg.py`.

# %% tags=["nbval-ignore-output"]
print(f"{'seed':>4s} {'untrained':>9s} {'ArcFace TAR@1e-3':>17s} {'@1e-2':>6s} {'+UNPG TAR@1e-3':>15s} {'@1e-2':>6s}"
      f"  {'gain @1e-2':>10s}  {'p99 batch':>9s} {'p99 proxy':>9s}")
for i, seed in enumerate(SEEDS):
    a, u = runs[seed, False], runs[seed, True]
    assert a.evals["tar@1e-2"][0] == u.evals["tar@1e-2"][0] == untrained[i]    # paired: one untrained network
    print(f"{seed:4d} {untrained[i]:9.3f} {a.tar(1e-3):17.3f} {a.tar(1e-2):6.3f} {u.tar(1e-3):15.3f} {u.tar(1e-2):6.3f}"
          f"  {u.tar(1e-2) - a.tar(1e-2):+10.3f}  {a.evals['p99_batch'][-1]:9.3f} {a.evals['p99_proxy'][-1]:9.3f}")

# %% tags=["nbval-ignore-output"]
per_seed = {(key, u): np.array([runs[seed, u].final(key) for seed in SEEDS])          # one number per seed
            for u in (False, True) for key in ("tar@1e-3", "tar@1e-2", "p99_batch", "p99_proxy")}
gap = {u: per_seed["p99_batch", u] - per_seed["p99_proxy", u] for u in (False, True)}
claims = {
    "1. UNPG gain, TAR@1e-2": lv.metrics.paired_difference(per_seed["tar@1e-2", True], per_seed["tar@1e-2", False]),
    "1. UNPG gain, TAR@1e-3": lv.metrics.paired_difference(per_seed["tar@1e-3", True], per_seed["tar@1e-3", False]),
    "2. ArcFace: p99 batch - p99 proxy": lv.metrics.paired_difference(per_seed["p99_batch", False], per_seed["p99_proxy", False]),
    "3. mismatch gap, UNPG - ArcFace": lv.metrics.paired_difference(gap[True], gap[False]),
}
for name, d in claims.items():
    print(f"{name:36s} {d}")
gain = claims["1. UNPG gain, TAR@1e-2"]
assert gain.verdict == "ahead" and gain.mean - 2 * gain.se > 0.05          # claim 1, with a margin
assert claims["1. UNPG gain, TAR@1e-3"].verdict == "ahead"
assert claims["2. ArcFace: p99 batch - p99 proxy"].verdict == "ahead"    # the mismatch
assert claims["3. mismatch gap, UNPG - ArcFace"].verdict == "behind"      # UNPG shrinks it

# %% [markdown] slideshow={"slide_type": "subslide"}
# **All three hold at this scale** (the asserts would stop the notebook otherwise). UNPG's gain is many standard
# errors away from zero — its lower end is asserted above five points of TAR — and the "wins" count says on how
# many seeds it was ahead. After ArcFace training the batch negatives do reach higher similarities than the proxy
# negatives, and UNPG, which puts those pairs into every row's softmax, closes most of that gap.
#
# **The filter: what does it cut?** The paper cuts the tails because, in web-scale face data, many of the hardest
# "negatives" are the same person under two labels. Our synthetic identities have **no label noise**, so the upper
# tail holds only genuine hard negatives. During training the filter keeps nearly every pair (the share is printed
# below). Why could cutting so few matter? Because of the exponential weight: on the probe batch after ArcFace,
# the pairs that $w = 1.5$ cuts would carry a share of all the batch-pair weight far larger than their share of
# the pairs, if they were kept.

# %% tags=["nbval-ignore-output"]
kept_share = np.mean([runs[seed, True].history["kept"].mean() for seed in SEEDS])
w_all = unpg.unpg_weights(C_arc, S_arc, y_p, w=math.inf, **KNOBS).S
cut = neg_mask & ~kept_mask
frac_pairs, frac_weight = float(cut.sum() / neg_mask.sum()), float(w_all[cut].sum() / w_all.sum())
print(f"during UNPG training, w = {W:g} kept {kept_share:.2%} of the batch negatives (mean over steps and seeds)")
print(f"probe batch after ArcFace: w = {W:g} cuts {int(cut.sum())} of {int(neg_mask.sum())} pairs ({frac_pairs:.2%}); "
      f"without the filter they would carry {frac_weight:.0%} of the batch-pair weight")
assert 0 < frac_pairs and frac_weight > 10 * frac_pairs

# %% [markdown] slideshow={"slide_type": "subslide"}
# On clean labels there is no reason to expect the filter to help: the pairs it removes from the top are the
# hardest *true* negatives, the very pairs that make the mismatch, and they carry much of the push. Whether UNPG
# does better or worse without it here is exercise 1 (train $w = \infty$ on the same seeds and compare, paired).
# The second half of the paper's claim is about noisy labels, and this miniature has none, so it cannot test it
# (exercise 2 adds noise).
#
# **What we do not claim.** The benchmark numbers need MS1MV2 (5.8M images, 85K identities), a ResNet-100 and
# IJB-B/C. Our small MLP is a weak face model (the controls in section 5 put it far below the clean-feature
# oracle). What carries over is the comparison: at the same budget, the extra batch negatives make the features
# generalise better to new people.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 7. Pitfalls
#
# **The official head assumes a GPU.** It stacks the kept vector once per visible GPU,
# `torch.stack([sn_prime] * torch.cuda.device_count())`. On a CPU-only machine that count is 0:

# %%
n_gpu = 0                                       # what torch.cuda.device_count() returns without a GPU
try:
    torch.stack([kept] * n_gpu)
except RuntimeError as err:
    print("RuntimeError:", err)

# %% [markdown] slideshow={"slide_type": "subslide"}
# **A batch of one identity has no negative pair.** The official quartile indexing then fails on an empty
# vector. lossviz returns plain ArcFace, exactly:

# %%
y_one = torch.zeros(64, dtype=torch.long)
assert not unpg.kept_pairs(S0, y_one).any()
assert torch.equal(unpg.unpg_loss(C0, S0, y_one, **KNOBS), margins.margin_softmax_loss(C0, y_one, **KNOBS))
print("one identity: UNPG == ArcFace, and dL/dS =", float(unpg.unpg_weights(C0, S0, y_one, **KNOBS).S.abs().max()))

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Quartiles.** `torch.quantile` interpolates; the official code indexes. The windows differ slightly, and so
# can the kept pairs (when a pair falls between the two edges). lossviz follows the official code.

# %% tags=["nbval-ignore-output"]
sn_arc = S_arc[neg_mask]
by_index = unpg.whisker_window(sn_arc, W)
q1_i, q3_i = torch.quantile(sn_arc, 0.25), torch.quantile(sn_arc, 0.75)
lo_i, hi_i = q1_i - W * (q3_i - q1_i), q3_i + W * (q3_i - q1_i)
print(f"integer index: [{float(by_index.lo):.5f}, {float(by_index.hi):.5f}] keeps {int(kept_mask.sum())}")
print(f"interpolated:  [{float(lo_i):.5f}, {float(hi_i):.5f}] keeps {int(((sn_arc >= lo_i) & (sn_arc <= hi_i)).sum())}")
assert float(by_index.q1) != float(q1_i)

# %% [markdown] slideshow={"slide_type": "subslide"}
# **`acos` at ±1.** The official ArcFace takes `acos` of the cosines in place, with no clamp. The derivative of
# $\arccos$ is infinite at 1: a sample that sits exactly on its proxy gets an infinite gradient (NaN as soon as
# it meets a zero), and one step spreads it to every weight.
# `margins.margin_logits` writes $\cos(\theta+m) = \cos\theta\cos m - \sin\theta\sin m$ with $\sin\theta$ clamped.

# %%
c = torch.tensor([[1.0, 0.2], [0.3, 0.1]], requires_grad=True)          # row 0: a perfect match
labels2 = torch.tensor([0, 0])
naive = c.scatter(1, labels2[:, None], torch.cos(torch.acos(c.gather(1, labels2[:, None])) + 0.5))
naive_grad = torch.autograd.grad(F.cross_entropy(30 * naive, labels2), c)[0]
safe_grad = torch.autograd.grad(margins.margin_softmax_loss(c, labels2, s=30.0, m=0.5), c)[0]
print("official-style gradient finite:", bool(torch.isfinite(naive_grad).all()),
      "| lossviz gradient finite:", bool(torch.isfinite(safe_grad).all()))
assert not torch.isfinite(naive_grad).all() and torch.isfinite(safe_grad).all()

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Normalisation.** $S$ must come from L2-normalised features; otherwise $sS$ is not on the scale of
# $s\cos\theta$ and the batch pairs swamp the softmax. lossviz refuses such an $S$:

# %%
try:
    unpg.unpg_loss(C0, (2 * f0) @ (2 * f0).T, y64, **KNOBS)     # features of norm 2, not 1
except ValueError as err:
    print("ValueError:", err)

# %% [markdown] slideshow={"slide_type": "subslide"}
# **More traps.**
# - *Memory of the literal form:* the official block has $B\cdot|S^{n\prime}|\approx B^3/2$ entries — about 1M at
#   $B = 128$, 8.4M at $B = 256$ and 67M at $B = 512$. lossviz's one column is $B$ entries.
# - *Loss values are not comparable* between ArcFace and ArcFace + UNPG: the denominators differ. Compare
#   verification metrics.
# - *Defaults differ:* head.zoo.yaml trains ArcFace and CosFace with $s = 64$, $m = 0.5$, but the `CosFace` class
#   defaults to $m = 0.35$; the MS1M model name uses $w = 1.5$, the K-FACE one $w = 1.0$. We use $s = 30$, $m = 0.3$
#   for a 16-d embedding (a large $s$ on few dimensions saturates the softmax).
# - *$\theta + m > \pi$:* ArcFace's $\cos(\theta+m)$ stops decreasing there; the official head has no fall-back.
#   `margins.margin_logits(..., easy_threshold=True)` offers insightface's fall-back (not part of UNPG's code).
#
# ## 8. Exercises
# 1. **The filter, on paired seeds.** Train UNPG without the filter on the same seeds,
#    `{seed: unpg.train_faces(w=math.inf, seed=seed, **KNOBS) for seed in SEEDS}`, and compare its TAR@1e-2 with
#    `runs[seed, True]` using `lv.metrics.paired_difference`. Is the filter ahead, behind, or a tie on clean labels?
#    Then try $w = 0$ in the training panel. *Hint:* "a tie" is an answer; at $w = 0$ exactly the inter-quartile half
#    of the pairs stays (`history["kept"]`).
# 2. **Noisy labels.** Give 10% of the training images a random wrong identity (copy `unpg.face_data()` and edit
#    `y_train`), and compare $w = 1.5$ with $w = \infty$ on paired seeds. Does the filter earn its keep now? *Hint:*
#    mislabelled pairs are "negatives" of very high similarity — where is the upper whisker?
# 3. **Does learning matter?** Train on the clean features, `unpg.train_faces(unpg=False, noise_dims=0, seed=seed)`,
#    and compare the end of training with the untrained network (`evals["tar@1e-2"][0]`) and with the raw cosine of
#    `unpg.face_data(0).x_test`. Then go back to 16 nuisance features and train longer (`iters=1000`): does ArcFace
#    alone catch up with the raw inputs? *Hint:* what can a network learn on 300 people that helps on 100 others?
# 4. **An anchor-tied variant.** Write a loss where row $i$ adds only *its own* negatives $S_{ij}$
#    ($y_j\neq y_i$) to its denominator, take its weights with `lv.pair_weights`, and compare the heat-map with
#    UNPG's. Which one is closer to MS? *Hint:* mask the other entries with `-inf` and use `torch.logsumexp` per row.
#
# ## 9. Summary
# - UNPG adds the batch's different-identity pairs, minus a box-and-whisker's outliers, to every row of an
#   ArcFace/CosFace softmax. Because the kept set is the same for every row, it is one extra logit,
#   $\operatorname{logsumexp}(sS^{n\prime})$.
# - Its pair weights are one exponential $e^{sS_{ab}}$ with a batch-wide factor: hardness-aware at temperature
#   $1/s$, not tied to an anchor, exactly zero on filtered and positive pairs.
# - A miniature must leave something to learn: with identity-independent nuisance features, training lifts
#   verification of unseen people far above the untrained network, so comparing losses means something.
# - There, on paired seeds, ArcFace + UNPG verifies unseen identities better than ArcFace, by a margin far
#   outside the seed noise; the mismatch (batch negatives harder than proxy negatives) shows in numbers, and
#   UNPG shrinks it. The filter's purpose is label noise, which this miniature does not have.
#
# **References.** Jung et al., *Unified Negative Pair Generation toward Well-discriminative Feature Space for Face
# Recognition*, arXiv:2203.11593. Deng et al., *ArcFace: Additive Angular Margin Loss for Deep Face Recognition*,
# CVPR 2019. Wang et al., *CosFace: Large Margin Cosine Loss for Deep Face Recognition*, CVPR 2018. Wang et al.,
# *Multi-Similarity Loss with General Pair Weighting for Deep Metric Learning*, CVPR 2019. Tukey, *Exploratory Data
# Analysis*, 1977 (the box plot).
