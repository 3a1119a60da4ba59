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
# # 04 — Hyperspherical embedding for novel classes
#
# **Paper.** Rafael S. Pereira, Alexis Joly, Patrick Valduriez, Fabio Porto.
# *Hyperspherical embedding for novel class classification.* [arXiv:2102.03243](https://arxiv.org/abs/2102.03243),
# February 2021 (submitted to ICLR 2022; we found no accepted venue) · code, probably the authors':
# [R-S-P-MODELS/pyopenset](https://github.com/R-S-P-MODELS/pyopenset) (Keras; its README names the paper and
# the owner's initials match the first author's). It is GPL-3.0: lossviz re-implements it and copies nothing.
#
# **The story.** Suppose a classifier knows eight digits and you now want it to know a ninth and a tenth,
# from five examples each, without training again. Metric-learning losses (contrastive, triplet, notebook 01)
# learn embeddings in which new classes cluster, but they are trained on pairs or triplets, and the number of
# those grows with the square or the cube of the data. A plain softmax classifier is cheap to train, but its
# embedding was never meant to hold new classes. The paper asks: *what if a softmax puts both the features and
# the class weights on a sphere?* Then a new class's weight is simply the average direction of its few
# examples (**imprinting**): no pairs, no fine-tuning. Does such a normalised softmax recognise new classes,
# and does it beat metric learning?
#
# In this notebook you will see the normalised softmax as a pair loss between samples and class weights,
# find out what its one knob, the scale $s$, can and cannot do (a capacity bound), watch the classes settle
# on a circle, imprint new ones, and measure the paper's claim on digits and on a harder synthetic case.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Setup
#
# One cell: imports, seeds, one torch thread, and the `FAST` switch (`LOSSVIZ_FAST=1` runs a shorter
# sweep of scales).

# %%
import inspect

import numpy as np
import torch
import torch.nn.functional as F
from IPython.display import Markdown

import lossviz as lv
from lossviz import data, margins, plots
from lossviz.papers import hyperspherical as H
from lossviz import train as T

FAST = T.setup(seed=0)
S_SWEEP = (1.0, 10.0, 32.0) if FAST else (1.0, 3.0, 10.0, 32.0)
print("lossviz", lv.__version__, "| torch", torch.__version__, "| FAST =", FAST)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1. The idea and the math
#
# ### Normalised softmax
# A network maps an image $x$ to an embedding $e = f(x)$. There are $K$ class weights $w_1,\dots,w_K$ with
# $\lVert w_k\rVert = 1$ and no bias, and
#
# $$\cos\theta_k = \Big\langle \frac{e}{\lVert e\rVert}, w_k\Big\rangle, \qquad
#   L = -\log\frac{e^{s\cos\theta_y}}{\sum_{k=1}^K e^{s\cos\theta_k}},$$
#
# where $y$ is the true class and $s > 0$ is a **fixed scale** (not trained). The logits $s\cos\theta_k$ lie in
# $[-s, s]$: only the *direction* of the embedding counts. This is NormFace (Wang et al. 2017) and the
# normalised softmax of Zhai & Wu (2018), whose temperature 0.05 is $s = 20$; `lossviz.margins.normface_loss`
# computes it (with no margin it is the first member of the CosFace / ArcFace family).
#
# ### The General Pair Weighting view: samples against proxies
# Think of each class weight as a **proxy**, a stand-in point for its class. With $p_k$ the softmax
# probabilities,
#
# $$\frac{\partial L}{\partial \cos\theta_k} = s\,(p_k - \mathbb 1[k = y]).$$
#
# The sample is pulled towards its own proxy with weight $s(1-p_y)$ and pushed from every other proxy with
# weight $s\,p_k$, a softmax over the proxies at temperature $1/s$. These pushes add up exactly to the pull.
# Unlike the pair losses of notebook 01 there are **no sample–sample pairs at all**. A large $s$ puts nearly all
# the push on the closest wrong proxy, and once $p_y \approx 1$ the sample stops contributing.
#
# ### New classes by imprinting
# For a class never seen in training, take a few of its examples and set
#
# $$\mu = \frac1n\sum_{i=1}^n \frac{e_i}{\lVert e_i\rVert}, \qquad w_{\text{new}} = \frac{\mu}{\lVert\mu\rVert}:$$
#
# normalise each embedding, average, then normalise the mean. In the **joint** scenario the new rows are appended
# to the $K$ trained weights, giving a $(K+\text{new})$-way classifier over old and new classes. In the **disjoint**
# scenario the classifier holds only the new classes. A metric-learning embedding has no trained classifier, so
# every class is imprinted.
#
# ### What the scale can and cannot do: a capacity bound
# Average the loss within each class and then over the classes (the *class-balanced* loss). Two Jensen steps
# show that, for **any** unit features and **any** $K$ unit weights,
#
# $$L_{\text{balanced}} \;\ge\; \log\big(1 + (K-1)\,e^{-sK/(K-1)}\big),$$
#
# with equality only when the weights form a regular simplex (every pair at cosine $-1/(K-1)$) and each
# feature sits on its own weight, where $p_y = 1/(1 + (K-1)e^{-sK/(K-1)})$. *Sketch:* by convexity of $\exp$,
# $L_i \ge \log(1 + (K-1)\exp(\frac{s}{K-1}\sum_{k\neq y}(\cos\theta_k - \cos\theta_y)))$. That function is convex
# in the sum, so the class-balanced mean is at least its value at the mean of the sum, which is
# $\frac{s}{K(K-1)}\sum_c \langle m_c, \sum_k w_k - K w_c\rangle \ge -\frac{sK}{K-1}$ for class means
# $\lVert m_c\rVert \le 1$ (Cauchy–Schwarz). For $K = 8$ the best $p_y$ is 0.31 at $s = 1$, 0.82 at
# $s = 3$ and 0.977 at $s = 5$. **Too small an $s$ can never fit the training set**, however good the network.
# Wang et al. (2017) give the same bound.
#
# ### Projection after the step, or normalisation in the forward pass?
# The paper's Keras code keeps $\lVert w_k\rVert = 1$ with a kernel constraint, which Keras applies as a
# **projection after every optimiser update**: the logits use $W$ as it is, and then
# `W.data = F.normalize(W.data)`. Normalising inside the forward pass (`F.normalize(W)` in the logits) gives the
# same logits but another gradient. Autograd then differentiates through the normalisation, so only the part of
# the gradient tangent to the sphere survives, divided by $\lVert w\rVert$. lossviz offers both (`mode="project"`,
# the default, and `mode="forward"`) and the plain softmax (`mode="none"`: raw features and weights, no bias, no
# scale, with raw-mean imprinting).

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 2. From formula to code
#
# Imprinting is two normalisations around a mean over each class's rows (`index_add_`, no Python loop):

# %%
print(inspect.getsource(H.imprint))

# %% [markdown] slideshow={"slide_type": "subslide"}
# We check the lossviz pieces against code written straight from the formulas, in float64: the loss
# (`margins.normface_loss` on `margins.cosine_logits`), its proxy weights
# $s(p_k - \mathbb 1[k=y])/B$ for a batch mean (`margins.proxy_weights`, by autograd), and imprinting as a loop
# over the classes.

# %%
g = torch.Generator().manual_seed(0)
emb, W = torch.randn(12, 6, generator=g, dtype=torch.float64), torch.randn(5, 6, generator=g, dtype=torch.float64)
y = torch.randint(0, 5, (12,), generator=g)
s = 10.0
cos = F.normalize(emb, dim=1) @ F.normalize(W, dim=1).T
scratch = -(s * cos).log_softmax(dim=1)[torch.arange(12), y].mean()
assert torch.allclose(margins.normface_loss(margins.cosine_logits(emb, W), y, s=s), scratch, atol=1e-12)
closed_form = s * ((s * cos).softmax(dim=1) - F.one_hot(y, 5)) / 12
assert torch.allclose(margins.proxy_weights(margins.normface_loss, cos, y, signed=True, s=s), closed_form, atol=1e-12)
w_loop = torch.stack([F.normalize(F.normalize(emb[y == c], dim=1).mean(0), dim=0) for c in y.unique()])
assert torch.allclose(H.imprint(emb, y)[0], w_loop, atol=1e-12)
average_first = F.normalize(H.imprint(emb, y, normalize=False)[0], dim=1)    # the wrong order
print(f"loss {float(scratch):.6f}; order matters: max |difference| of the imprinted weights "
      f"{float((average_first - w_loop).abs().max()):.3f}")

# %% [markdown] slideshow={"slide_type": "subslide"}
# The capacity bound is one line (`np.logaddexp` keeps it stable at any $s$). We check the numbers quoted above,
# and check that the bound is *reached* on a regular simplex: put the $K$ weights on a simplex in
# $\mathbb R^K$ and each feature on its own weight.

# %%
print(inspect.getsource(H.capacity_bound).split('"""')[-1])
for s_ in (1, 3, 5, 10):
    p_y, floor = H.capacity_bound(s_, 8)
    print(f"K = 8, s = {s_:2d}: best p_y = {p_y:.4f}, loss floor = {floor:.4f}")
K = 8
simplex = F.normalize(torch.eye(K, dtype=torch.float64) - 1 / K, dim=1)      # pairwise cosines -1/(K-1)
at_optimum = H.class_balanced_loss(simplex @ simplex.T, torch.arange(K), s=1.0)
assert abs(float(at_optimum) - H.capacity_bound(1.0, K)[1]) < 1e-12
assert abs(H.capacity_bound(1.0, K)[0] - 0.309) < 1e-3

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 3. Weights as pictures
#
# A batch of 16 training digits (two of each of the eight training classes, sorted by class) goes through an
# untrained MLP (64 pixels → 128 → 32). The eight class weights are random unit vectors. Each heat-map shows the signed weight
# $\partial L/\partial\cos\theta_{ik}$ of every sample–proxy pair. **Blue pulls** a sample towards its own class
# weight (outlined) and **vermillion pushes** it from a wrong one. Each map is scaled to its own largest weight
# (the colour bar is that of $s = 30$). As $s$ grows, the push concentrates on the few closest wrong proxies.

# %%
split = data.load("digits_8+2")
NOVEL = H.novel_classes(split)
idx = data.PKSampler(split.y_train.numpy(), p=8, k=2, seed=0).sample()
y_b, order = split.y_train[idx].sort(stable=True)
idx = idx[order]
torch.manual_seed(0)
cos_b = margins.CosineClassifier(32, 8)(lv.models.mlp(64, 32)(split.x_train[idx])).detach().double()
print(split)
fig, axes = plots.new_figure(3, width=3.7, height=3.6)
hardest_share = {}
for ax, s_ in zip(axes[0], (1.0, 10.0, 30.0)):
    Wp = margins.proxy_weights(margins.normface_loss, cos_b, y_b, signed=True, s=s_)
    H.proxy_heatmap(ax, Wp, y_b, title=f"s = {s_:g}", colorbar=ax is axes[0, 2])
    push = Wp.clamp(min=0)
    hardest_share[s_] = float((push.max(dim=1).values / push.sum(dim=1)).mean())
    assert torch.allclose(Wp.sum(dim=1), torch.zeros(16, dtype=torch.float64), atol=1e-12)  # push = pull
fig

# %% [markdown] slideshow={"slide_type": "subslide"}
# Every row sums to zero (asserted above): the pull towards the own proxy equals the total push. The share of
# the push that goes to the closest wrong proxy grows with $s$, just as the share of the hardest negative does
# for the MS loss's $\beta$ in notebook 01:

# %%
print({f"s = {k:g}": round(v, 3) for k, v in hardest_share.items()})
assert hardest_share[1.0] < hardest_share[10.0] < hardest_share[30.0]

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 4. Explore: the scale and the number of classes
# Pure maths, no training. **Left:** the best $p_y$ the bound allows. **Middle:** the proxy weights of one
# sample whose target cosine is 0.6, with one wrong class close behind at 0.5 and the others spread down to
# −0.3. **Right:** that sample's weight $s(1-p_y)$ as its target cosine moves. With a large $s$ the weight
# drops to zero as soon as the sample beats the closest wrong class by a few $1/s$. Try $s = 1$ with $K = 20$
# (no sample is ever "done"), then $s = 64$.

# %%
bound = H.bound_panel(s=10.0, K=8)
bound

# %% [markdown] slideshow={"slide_type": "subslide"}
# The panel is an ordinary object: setting a control redraws it.

# %%
bound.controls["s"].value = 1.0
assert abs(bound.state["p_y"] - H.capacity_bound(1.0, 8)[0]) < 1e-12
assert abs(float(bound.state["weights"].sum())) < 1e-12
bound.controls["K"].value = 20
print(bound.state["status"])
bound.controls["s"].value, bound.controls["K"].value = 10.0, 8

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 5. A real training run: eight digits known, two imprinted
# **Protocol.** scikit-learn's digits, the stratified 50/50 split of `data.digits("seen")`. We train only on the
# training images of digits 0–7 (the split `"digits_8+2"` printed in section 3); 8 and 9 are the **novel**
# classes. The network is an MLP 64 → 128 → 32, trained with the normalised softmax at $s = 10$ (the layer's default in the paper's code) for
# 300 Adam steps (lr 2e-3, random batches of 128), with seed 0. For testing, each of the ten digits gives 5
# random test images as *support* (the imprinting shots), and all the other test images are the queries.
# **Joint accuracy** is 10-way: the 8 trained weights plus the 2 imprinted ones. The same run in the forward-pass
# variant, and as a plain unnormalised softmax:

# %% tags=["nbval-ignore-output"]
RUNS = {mode: H.train_classifier("digits_8+2", s=10.0, dim=32, mode=mode, seed=0) for mode in H.MODES}
assert all(np.isfinite(r.history["loss"]).all() for r in RUNS.values())
assert all(r.history["loss"][-10:].mean() < r.history["loss"][:10].mean() / 10 for r in RUNS.values())

# %% tags=["nbval-ignore-output"]
joint = {}
for mode, run in RUNS.items():
    res = joint[mode] = run.novel(split, scenario="joint", shots=5)
    print(f"{H.MODE_LABELS[mode]:40s} joint {res['accuracy']:.3f} (base {res['base_accuracy']:.3f}, "
          f"novel {res['novel_accuracy']:.3f}); max ||w|-1| {run.history['norm_err'].max():.1e}")
assert RUNS["project"].history["norm_err"].max() < 1e-6 < 1e-3 < RUNS["forward"].history["norm_err"].max()
assert min(joint["project"]["accuracy"], joint["forward"]["accuracy"]) > joint["none"]["accuracy"] + 0.3

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Learning curves.** Left: the mini-batch loss (thin) and the class-balanced loss over the whole training split
# (dots), with the capacity bound at $s = 10$ dashed. Middle: test accuracy on the trained classes alone
# ("base", 8-way), and 10-way with the two imprinted classes ("joint"), measured every 25 steps. Right: the mean
# per-sample weight $s(1-p_y)$; for the unnormalised softmax this is $1-p_y$, since there is no $s$. The
# projected and forward-pass runs lie on top of each other.

# %% tags=["nbval-ignore-output"]
fig, axes = plots.new_figure(3, width=4.3, height=3.5)
_ = H.curves(axes[0], {H.MODE_LABELS[m]: r for m, r in RUNS.items()})
h_p, h_f, h_n = (RUNS[m].evals for m in ("project", "forward", "none"))
assert np.abs(h_p["base_acc"] - h_f["base_acc"]).max() < 0.02          # projection ~ forward normalisation
assert abs(h_n["base_acc"][-1] - h_p["base_acc"][-1]) < 0.03          # unnormalised: base classes as well
fig

# %% [markdown] slideshow={"slide_type": "subslide"}
# Projection and in-forward normalisation train almost identically here. Under projection the weights stay
# on the sphere to float precision. In the forward variant the raw $W$ drifts off the sphere, which is harmless
# because only its direction is used.
#
# Two things stand out in the numbers above.
# - **The joint accuracy is mostly the old classes.** Of the test images of 8 and 9, the normalised softmax
#   recognises fewer than half. That is far above chance (1 in 10), but most of the others land on an old digit
#   that looks alike: the network only ever learned features that tell 0–7 apart.
# - **The unnormalised softmax** learns the eight trained classes just as well (its base accuracy in the curves
#   above, where the imprinted classes do not compete), but its joint accuracy collapses. The next figure shows
#   why: the imprinted raw means are much longer than the trained weights, so they swallow the test images of the
#   old classes (the dark columns of its confusion matrix). A raw mean *shorter* than the trained weights would
#   instead hardly ever be chosen.

# %% tags=["nbval-ignore-output"]
res_p, res_n = RUNS["project"].novel(split), RUNS["none"].novel(split)
norms_n = res_n["weights"].norm(dim=1)                  # 8 trained rows, then the 2 imprinted raw means
assert norms_n[8:].min() > norms_n[:8].max() and 0.1 < res_p["novel_accuracy"] < 0.5   # what the text says
is_new = np.isin(res_p["classes"], NOVEL)
conf_new = res_p["confusion"][is_new]                   # rows: test images of 8 and 9
assert conf_new[:, ~is_new].sum() / conf_new.sum() > (1 - res_p["novel_accuracy"]) / 2   # most errors: old digits
fig, axes = plots.new_figure(3, width=4.0, height=3.5)
_ = H.weight_norm_view(axes[0, 0], res_n, NOVEL, title="unnormalised: weight norms")
_ = H.confusion_view(axes[0, 1], res_p, NOVEL, title="normalised")
_ = H.confusion_view(axes[0, 2], res_n, NOVEL, title="unnormalised")
fig

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### On the circle
# With a 2-D embedding we can see everything. On the left is the normalised softmax: the test images lie on the
# unit circle (each digit at a slightly larger radius so that they do not overlap), the trained weights are solid
# arrows, and the imprinted weights of 8 and 9 are dashed, marked `*`. The outer ring colours each direction by
# the class it would be assigned to, so the class sectors are the arcs between bisectors of neighbouring weights.
# On the right is the unnormalised softmax in the plane. Its background is the predicted class, and its arrows are
# drawn to one common scale, because their norms matter.

# %% tags=["nbval-ignore-output"]
RUNS_2D = {mode: H.train_classifier("digits_8+2", s=10.0, dim=2, mode=mode, seed=0) for mode in ("project", "none")}
assert RUNS_2D["project"].embed(split.x_test).norm(dim=1).sub(1).abs().max() < 1e-5

# %% tags=["nbval-ignore-output"]
fig, axes = plots.new_figure(2, width=4.6, height=4.4)
dots, res2 = H.sphere_view(axes[0, 0], RUNS_2D["project"], split)
_, res2n = H.sphere_view(axes[0, 1], RUNS_2D["none"], split)
_ = plots.class_colorbar(fig, dots, axes[0, :], label="digit")
print(f"2-D joint accuracy: normalised {res2['accuracy']:.3f}, unnormalised {res2n['accuracy']:.3f}")
assert res2["accuracy"] < res_p["accuracy"]                # ten classes fit worse on a circle than in 32-d
fig

# %% [markdown] slideshow={"slide_type": "subslide"}
# Ten classes do not fit well on a circle. An imprinted weight lands wherever its few examples point, often on top
# of a trained class, and the two then split that sector. In 32 dimensions there is room: compare the confusion
# matrices above.
#
# ### The role of the scale, measured
# The same training at several scales. **Left:** the bound's loss floor for $K = 8$ (our 8 digits) and $K = 10$
# (all ten digits, trained on `data.digits("seen")`), with the measured class-balanced training loss after 300
# steps as markers. No marker can lie below its curve. **Middle:** the mean cosine between a training image and
# its own class weight. **Right:** joint 10-way accuracy with imprinting, and base accuracy (trained classes only).

# %% tags=["nbval-ignore-output"]
SWEEP = {s_: H.train_classifier("digits_8+2", s=s_, dim=32, seed=0) for s_ in S_SWEEP}
SWEEP_K10 = {s_: H.train_classifier("digits", s=s_, dim=32, seed=0) for s_ in S_SWEEP[:2]}
assert all(r.history["norm_err"].max() < 1e-6 for r in [*SWEEP.values(), *SWEEP_K10.values()])

# %% tags=["nbval-ignore-output"]
fig, axes = plots.new_figure(3, width=4.2, height=3.5)
final = lambda runs: (list(runs), [r.final("train_loss") for r in runs.values()])  # noqa: E731
_ = H.bound_view(axes[0, 0], (8, 10), measured={8: final(SWEEP), 10: final(SWEEP_K10)})
axes[0, 1].plot(list(SWEEP), [r.final("cos_y") for r in SWEEP.values()], "o-", color=plots.POS_COLOR,
                label=r"image vs own weight: mean $\cos\theta_y$")
axes[0, 1].plot(list(SWEEP), [r.centre_cosine(split) for r in SWEEP.values()], "s--", color="k",
                label="class mean direction vs own weight")
axes[0, 1].set(xscale="log", xlabel="scale s", ylabel="cosine", title="where the training images sit")
axes[0, 1].legend(loc="lower left", fontsize=8)
for key, ls in (("joint_acc", "-"), ("base_acc", ":")):
    axes[0, 2].plot(list(SWEEP), [r.final(key) for r in SWEEP.values()], "o", ls=ls, color="k", label=key[:-4])
axes[0, 2].set(xscale="log", ylim=(0, 1.02), xlabel="scale s", ylabel="test accuracy", title="accuracy after 300 steps")
_ = axes[0, 2].legend(loc="lower left")
assert all(r.final("train_loss") >= H.capacity_bound(s_, len(r.classes))[1]
           for sweep in (SWEEP, SWEEP_K10) for s_, r in sweep.items())          # no marker below its curve
fig

# %% tags=["nbval-ignore-output"]
lo, hi = SWEEP[1.0].evals, SWEEP[S_SWEEP[-1]].evals
print(f"s = 1: class-balanced training loss {lo['train_loss'][-1]:.4f} (floor {H.capacity_bound(1.0, 8)[1]:.4f})")
assert lo["train_loss"][-1] < H.capacity_bound(1.0, 8)[1] + 0.05          # stalls just above the floor
for key in ("cos_y", "centre"):                                           # both fall at large s
    v = {s_: r.final("cos_y") if key == "cos_y" else r.centre_cosine(split) for s_, r in SWEEP.items()}
    assert v[S_SWEEP[-1]] < v[10.0] < v[1.0], key
assert hi["base_acc"][-1] > 0.9 and hi["joint_acc"][-1] < SWEEP[10.0].final("joint_acc") - 0.2

# %% [markdown] slideshow={"slide_type": "subslide"}
# Both ends of the scale show (the cell above checks each of these statements). At $s = 1$ the training loss stalls
# just above its floor of 1.17: the network cannot fit the training set, whatever it does. As $s$ grows the floor
# vanishes, and the features need only beat the closest wrong class by a few $1/s$. They stop short of their own
# class weight: at large $s$ the mean $\cos\theta_y$ falls, and so does the cosine between a class's trained weight
# and the mean direction of its training images (dashed). The clusters stay tight, but their centres drift away
# from the trained weights. That matters for imprinting. An imprinted weight *is* the mean direction of its
# examples, so it sits right inside its cluster, while the trained weights of the old classes sit off-centre from
# theirs. At large $s$ the imprinted classes therefore steal the old classes' images. Base accuracy stays high, but
# joint accuracy collapses (see the pitfalls).
#
# **How fast samples stop contributing.** Histograms of the per-sample weight $s(1-p_y)$ over the training split
# at a few iterations, for three scales (the dotted line is the largest possible weight, $s$):

# %% tags=["nbval-ignore-output"]
shown = {f"s = {s_:g}": SWEEP[s_] for s_ in (1.0, 10.0, 32.0)}
fig, axes = plots.new_figure(3, width=4.0, height=3.3)
_ = H.weight_histograms(axes[0], shown, iterations=[0, 50, 300])
assert min(w.min() for w in SWEEP[1.0].snapshots.values()) > 0.5           # s = 1: no sample lets go
for s_ in (10.0, 32.0):
    snap = SWEEP[s_].snapshots
    assert snap[50].max() > 100 * snap[50].min() and (snap[300] < 0.01 * s_).mean() > 0.5
fig

# %% [markdown] slideshow={"slide_type": "subslide"}
# At $s = 1$ every sample keeps a weight close to the largest possible one, $s = 1$, for the whole run: training
# never lets go of anything. At $s = 10$ and more the weights spread over orders of magnitude within 50 steps, and
# by the end most samples hardly move the network any more: a handful of hard ones carry the training.
#
# ### Train it yourself
# The scale, the embedding dimension (2 draws the circle), the number of imprinting shots and the treatment of
# $W$ (projected after each step, normalised in the forward pass, or the plain unnormalised softmax). The panel is
# `lossviz.widgets.run_panel` around `H.train_classifier`. *Train*
# runs 300 steps in about half a second. A setting you have already trained comes back at once from the cache,
# and changing only the shots re-imprints without retraining.

# %% tags=["nbval-ignore-output"]
panel = H.training_panel("digits_8+2", s=10.0, dim=32, shots=5, mode="project")
assert panel.state["joint"]["accuracy"] == res_p["accuracy"]          # the run of section 5, from the cache
panel

# %%
panel.controls["dim"].value = 2
again = panel.train()
assert again is RUNS_2D["project"] and panel.state["joint"]["accuracy"] == res2["accuracy"]
panel.controls["dim"].value = 32

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 6. The claim, checked
# **The paper's claim.** A normalised softmax, trained without pairs, classifies classes unseen in training better
# than metric-learning methods (triplet, contrastive, prototypical and matching networks, constellation loss):
# "up to 81% more accurate", in both the joint and the disjoint scenario (MNIST, Fashion-MNIST, CIFAR-10/100).
#
# **What we can check here.** Every method gets the same images and the same budget: the same network and
# initialisation, 300 Adam steps at lr 2e-3, and about 128 images per step. **Eight seeds**, each of which sets
# the initialisation, the batches and the 5 support images per class, the same for every method. The methods
# then compare seed by seed (a *paired* comparison): each seed gives one difference between two methods, and the
# spread of those 8 differences says how far their mean can be trusted. The methods are:
# - **normalised softmax** + imprinting, the paper's method;
# - **unnormalised softmax** + raw-mean imprinting;
# - **triplet**, the metric-learning baseline, trained by `lossviz.train.train` on P×K batches. It is semi-hard,
#   with margin 0.1 on cosines (FaceNet's 0.2 on squared distances of unit vectors). It has no classifier, so every
#   class is imprinted;
# - **untrained network**, the control: the normalised softmax's own network at its initialisation, every class
#   imprinted. A method *learned* something useful for new classes only if it beats this;
# - **raw pixels** (raw input features), imprinted the same way, with no network at all.
#
# Two scenarios:
# - **joint**, on digits: train on 0–7, 10-way test, over all queries and over the queries of 8 and 9 only;
# - **disjoint**, on the synthetic identities of `lossviz.data.identities()`: 300 training identities with 12
#   samples each, and a 100-way test on 100 identities never seen in training (16-d embedding, P×K = 32 × 4 for
#   triplet). Digits has only ten classes; the paper's disjoint split of them (train on five, test on the other
#   five) is exercise 5.

# %% tags=["nbval-ignore-output"]
SEEDS = tuple(range(8))
TABLES = {"joint 10-way (digits)": H.novel_benchmark("digits_8+2", scenario="joint", seeds=SEEDS),
          "joint, images of 8 and 9": H.novel_benchmark("digits_8+2", scenario="joint", metric="novel_accuracy",
                                                        seeds=SEEDS),
          "disjoint 100-way (identities)": H.novel_benchmark("ids", scenario="disjoint", seeds=SEEDS, dim=16)}
print(f"{'mean (lowest-highest)':22s}" + "".join(f"{title:>31s}" for title in TABLES))
for name in TABLES["joint 10-way (digits)"]:
    cells = (f"{tab[name].mean():.3f} ({tab[name].min():.3f}-{tab[name].max():.3f})" for tab in TABLES.values())
    print(f"{name:22s}" + "".join(f"{c:>31s}" for c in cells))
CHANCE = {"joint 10-way (digits)": 0.1, "joint, images of 8 and 9": 0.1, "disjoint 100-way (identities)": 0.01}
assert all(len(v) == len(SEEDS) and v.mean() > CHANCE[title] + 0.1 for title, tab in TABLES.items() for v in tab.values())

# %% tags=["nbval-ignore-output"]
fig, axes = plots.new_figure(3, width=5.0, height=3.8)
_ = H.benchmark_view(axes[0], TABLES, chance=CHANCE)
assert all(len(ax.patches) == 5 for ax in axes[0])                     # one bar per method
fig

# %% [markdown] slideshow={"slide_type": "subslide"}
# Each dot is one seed (seed 0 on the left of each bar). The cell below compares the methods seed by seed. Each
# line gives the mean difference over the 8 seeds, its standard error, on how many seeds the first method is
# ahead, and a verdict: *ahead* or *behind* when the mean is more than two standard errors from 0, otherwise
# *a tie*: a difference that 8 seeds cannot tell from seed-to-seed noise. The asserts check only what holds
# with room to spare:
# 1. **Both methods learn.** In both scenarios, the normalised softmax and triplet are ahead of their untrained
#    network by more than two standard errors, so the comparison between them is between two methods that work.
# 2. **Normalise before you imprint.** In the joint scenario normalised imprinting beats raw-mean imprinting by at
#    least 0.3 on every seed, and on the identities it is ahead too. This is the robust heart of the method.
# 3. **The unnormalised softmax's long imprinted weights swallow images.** On the images of 8 and 9 alone it scores
#    higher than the normalised softmax on every seed, only because its imprinted weights win for images of
#    *every* class (its confusion matrix in section 5).
# 4. **Raw pixels beat both learned embeddings on the new classes**, on every seed, in both scenarios: what these
#    small networks learn describes the training classes; for new classes the inputs themselves are the better
#    features (the `digits` trap of notebook 01). The paper's "up to 81%" needs its data and networks.

# %% tags=["nbval-ignore-output"]
NS, UNN, TRIP, UNTRAINED, RAW = "normalised softmax", "unnormalised softmax", "triplet", "untrained network", "raw pixels"
PAIRS = ((NS, UNTRAINED), (TRIP, UNTRAINED), (NS, UNN), (NS, TRIP))
DIFF = {(title, a, b): lv.metrics.paired_difference(tab[a], tab[b]) for title, tab in TABLES.items() for a, b in PAIRS}
for (title, a, b), d in DIFF.items():
    print(f"{title:30s} {a + ' - ' + b:42s} {d}")
JOINT, NEW, IDS = TABLES.values()
for title in ("joint 10-way (digits)", "disjoint 100-way (identities)"):
    assert all(DIFF[title, m, UNTRAINED].mean - 2 * DIFF[title, m, UNTRAINED].se > 0 for m in (NS, TRIP))  # 1.
assert (JOINT[NS] - JOINT[UNN] >= 0.3).all()                                                     # 2.
assert DIFF["disjoint 100-way (identities)", NS, UNN].mean - 2 * DIFF["disjoint 100-way (identities)", NS, UNN].se > 0
assert (NEW[UNN] > NEW[NS]).all()                                                                # 3.
for tab in (NEW, IDS):                                                                           # 4.
    assert (tab[RAW] - np.maximum(tab[NS], tab[TRIP])).min() > 0

# %% tags=["nbval-ignore-output"]
WORDS = {"ahead": "is ahead of", "behind": "is behind", "a tie": "ties with"}
verdict = {title: DIFF[title, NS, TRIP].verdict for title in TABLES}
new_digits = {m: DIFF["joint, images of 8 and 9", m, UNTRAINED].verdict for m in (NS, TRIP)}
assert set(verdict.values()) | set(new_digits.values()) <= set(WORDS)
Markdown("**Verdict: normalised softmax against triplet, 8 paired seeds, the same budget.** "
         + "; ".join(f"{title}: it **{WORDS[v]}** triplet" for title, v in verdict.items()) + ". "
         + ("A tie means that these 8 seeds give no ranking of the two. " if "a tie" in verdict.values() else "")
         + ("On the images of 8 and 9 alone, both learned embeddings are behind their untrained network: what "
            "training on 0–7 adds to the joint accuracy comes from the old digits."
            if set(new_digits.values()) == {"behind"} else
            "On the images of 8 and 9 alone, against its untrained network, the normalised softmax "
            f"{WORDS[new_digits[NS]]} it and triplet {WORDS[new_digits[TRIP]]} it."))

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Properties of the method, not measurements.** After each projection $\lVert w_k\rVert = 1$ to $10^{-6}$, every
# logit lies in $[-s, s]$, and at $s = 1$ the class-balanced training loss never falls below
# $\log(1 + 7e^{-8/7}) \approx 1.173$. These hold for any network (section 1); we check them on every normalised
# run of this notebook as a test of the code.

# %% tags=["nbval-ignore-output"]
projected = [H.train_classifier("digits_8+2", seed=seed, eval_every=300, progress=False) for seed in SEEDS]  # cached above
projected += [*SWEEP.values(), *SWEEP_K10.values(), RUNS_2D["project"]]
assert all(r.history["norm_err"].max() < 1e-6 for r in projected)
assert all(r.history["max_logit"].max() <= r.params["s"] * (1 + 1e-6) for r in projected)
s1 = SWEEP[1.0].evals["train_loss"]
assert (s1 >= H.capacity_bound(1.0, 8)[1]).all(), "the class-balanced loss went below the capacity bound"
print(f"s = 1: lowest class-balanced training loss {s1.min():.4f} >= bound {H.capacity_bound(1.0, 8)[1]:.4f}")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 7. Pitfalls
#
# **Projection against in-forward normalisation.** Same logits, different gradients (section 1). lossviz's default
# is the paper's code, which projects after the step. A PyTorch port that normalises `W` in the forward pass is a
# close variant, not the same method.
#
# **A trainable bias** breaks the cosine reading of the logits: a class with a large bias wins on directions that
# are not its own. The paper's layer constrains the bias to 0, and lossviz has none.
#
# **Unnormalised imprinting fails through the norms, not the directions.** The bar chart in section 5 shows it.
# Normalising the raw-mean weights of the unnormalised run, that is, scoring by cosine, recovers much of the loss:

# %% tags=["nbval-ignore-output"]
emb_none = RUNS["none"].embed(split.x_test)
cosine_scored = H.novel_class_accuracy(emb_none, split.y_test, NOVEL, base_weights=RUNS["none"].weight)
print(f"unnormalised run: raw scores {res_n['accuracy']:.3f}, the same embedding scored by cosine "
      f"{cosine_scored['accuracy']:.3f}")
assert cosine_scored["accuracy"] > res_n["accuracy"]

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Too large a scale breaks the joint scenario.** At $s = 32$ the old classes' test images flow to the imprinted
# classes (section 5). Their trained weights stopped short of their clusters, while the imprinted weights sit in
# the middle of theirs:

# %% tags=["nbval-ignore-output"]
big_run = SWEEP[S_SWEEP[-1]]
big = big_run.novel(split)
print(f"s = {S_SWEEP[-1]:g}: joint {big['accuracy']:.3f}, base images {big['base_accuracy']:.3f}, "
      f"novel images {big['novel_accuracy']:.3f}")
print(f"cosine of trained weight and class mean direction: s = 10 {RUNS['project'].centre_cosine(split):.2f}, "
      f"s = {S_SWEEP[-1]:g} {big_run.centre_cosine(split):.2f}")
assert big["base_accuracy"] < RUNS["project"].novel(split)["base_accuracy"]
assert big_run.centre_cosine(split) < RUNS["project"].centre_cosine(split)

# %% [markdown] slideshow={"slide_type": "subslide"}
# **More traps.**
# - *Imprinting order.* Normalise each embedding, *then* average, then normalise. Averaging raw embeddings first
#   lets long embeddings pull the mean (section 2).
# - *A single mini-batch is not the class-balanced loss.* A batch that happens to hold mostly easy classes can dip
#   below the bound. The bound holds for the whole training split, averaged class by class.
# - *Digits is easy.* Raw pixels beat both learned embeddings on the new classes (section 6). Compare a learned
#   embedding with raw inputs and with its own untrained network before you read a novel-class accuracy as a
#   statement about learned features.
# - *Three seeds are not a comparison.* With three seeds, a method can be "ahead on every seed" by luck one time
#   in eight. Section 6 uses eight paired seeds and reports a tie unless the mean difference is more than two
#   standard errors from 0 (`lv.metrics.paired_difference`).
# - *Licence.* The code is GPL-3.0, so read it to understand it, but never paste it into an MIT-style package.
#
# ## 8. Exercises
# 1. **Re-imprint the old classes too.** At $s = 32$, classify with *every* class imprinted from its 5 shots
#    (`H.novel_class_accuracy(run.embed(split.x_test), split.y_test, NOVEL, base_weights=None)`). Does the joint
#    accuracy come back? *Hint:* `run.centre_cosine(split)` measures how far the trained weights sit from the
#    middle of their clusters.
# 2. **How many shots?** In the Train panel, move the shots from 1 to 20 (no retraining needed). Where does the
#    joint accuracy stop improving, and why does 1 shot work at all? *Hint:* `panel.state["joint"]["confusion"]`.
# 3. **Other baselines.** Add contrastive and MS to the comparison (8 seeds, under a minute):
#    `H.novel_benchmark("digits_8+2", pair_losses=H.PAIR_BASELINES | {"ms": lv.MS_PRESETS["official_code"]})`.
#    Does any pair loss beat the normalised softmax? *Hint:* `lv.metrics.paired_difference(tab["ms"], tab["normalised softmax"])`
#    before you answer, and check that each method beats the untrained network.
# 4. **Forward vs projection at large $s$.** Train both at $s = 32$. How far does the raw $W$ of the forward
#    variant drift from the sphere (`run.history["norm_err"]`), and does it change the learning rate that $W$
#    effectively feels? *Hint:* the gradient through `F.normalize` is divided by $\lVert w\rVert$.
# 5. **The paper's disjoint split, on digits.** Train on 0–4 and test 5-way on 5–9:
#    `H.novel_benchmark("digits_5+5", scenario="disjoint")`. Compare every method with the untrained network
#    (`lv.metrics.paired_difference`). What can five digits teach a network about the other five? *Hint:* the untrained
#    network imprints from random features of the pixels.
#
# ## 9. Summary
# - A normalised softmax is a pair loss between samples and class weights (proxies). Its weights are
#   $s(p_k - \mathbb 1[k=y])$, a softmax over the proxies at temperature $1/s$, with no sample–sample pairs.
# - The scale is a capacity knob. The class-balanced loss can never go below $\log(1 + (K-1)e^{-sK/(K-1)})$, so a
#   small $s$ cannot fit. A large $s$ stops weighting samples early and leaves features off their class weights,
#   which hurts imprinting in the joint scenario.
# - Imprinting (normalise, average, normalise) adds classes from a few examples. Normalisation is what makes it
#   work: on digits it beats raw-mean imprinting by a wide margin on every seed.
# - Against triplet at the same budget, eight paired seeds decide: section 6 prints the verdict per scenario, and
#   calls a difference inside two standard errors a tie. Both methods learn (each beats its untrained network),
#   yet raw pixels beat both on the new classes: at this scale neither learned embedding describes new classes
#   better than its inputs do.
#
# **References.** Pereira, Joly, Valduriez, Porto, *Hyperspherical embedding for novel class classification*,
# arXiv:2102.03243, 2021. Wang, Xiang, Cheng, Yuille, *NormFace: L2 Hypersphere Embedding for Face Verification*,
# ACM MM 2017. Zhai & Wu, *Classification is a Strong Baseline for Deep Metric Learning*, BMVC 2019 (arXiv 2018).
# Qi, Brown, Lowe, *Low-Shot Learning with Imprinted Weights*, CVPR 2018. Schroff, Kalenichenko, Philbin,
# *FaceNet*, CVPR 2015. Hadsell, Chopra, LeCun, *Dimensionality Reduction by Learning an Invariant Mapping*,
# CVPR 2006.
