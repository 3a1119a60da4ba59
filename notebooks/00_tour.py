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
# # 00 — A ten-minute tour of `lossviz`
#
# **Not a paper: the front door of the package.** The one idea used everywhere comes from
# X. Wang, X. Han, W. Huang, D. Dong and M. R. Scott, *Multi-Similarity Loss with General Pair
# Weighting for Deep Metric Learning*, CVPR 2019
# ([arXiv:1904.06627](https://arxiv.org/abs/1904.06627),
# official code: [MalongTech/research-ms-loss](https://github.com/MalongTech/research-ms-loss)).
# The contrastive loss we start from is R. Hadsell, S. Chopra and Y. LeCun, *Dimensionality
# Reduction by Learning an Invariant Mapping*, CVPR 2006.
#
# **The story.** In *metric learning* a network maps each image to a point (an *embedding*) so that
# images of the same class land close together and images of different classes land far apart.
# Then "find me images like this one" is just "find the nearest points". The network is trained
# with a loss computed on a batch of images — and almost every such loss looks only at one thing:
# the table of similarities between all pairs of images in the batch. So a loss is a function
# $L(S, \text{labels})$ of the similarity matrix $S$, and the gradient $\partial L / \partial S_{ij}$
# tells how hard training pulls (or pushes) on the pair $(i, j)$: **how much each pair matters**.
# Losses differ only in how they hand out these *pair weights*.
#
# In ten minutes you will: build $S$ for a small batch of handwritten digits, read off the pair
# weights of two losses by autograd, play with one widget, run one real training, and learn how
# the notebooks of this package are organised (this tour and 34 notebooks exist today; the
# summary lists them by part).

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Setup
#
# One cell. `T.setup` fixes the seeds, uses **one** torch thread (on a small shared CPU, two
# threads can be 30x slower for models this small) and sets a figure style that reads on a
# projector. It returns `FAST`, true when the environment sets `LOSSVIZ_FAST=1` (shorter runs in CI).
# Other notebooks shorten their training runs when it is set; the two runs of this tour take a few
# seconds and keep their full length, because the claim at the end is checked on them.

# %%
import inspect

import torch
import torch.nn.functional as F

import lossviz as lv
from lossviz import data, models, plots, widgets, train as T

FAST = T.setup(seed=0)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## The idea and the math
#
# **A batch.** Pair losses need pairs of the same class in every batch, so we draw a *P x K batch*:
# P = 4 classes, K = 4 images of each, B = 16 images in all.

# %%
digits = data.load("digits")                       # sklearn's bundled 8x8 digits, nothing downloaded
idx = data.PKSampler(digits.y_train.numpy(), p=4, k=4, seed=0).sample()
x, y = digits.x_train[idx], digits.y_train[idx]
print("labels of the batch:", y.tolist())

# %% [markdown] slideshow={"slide_type": "subslide"}
# **The similarity matrix.** A network $f$ maps each image $x_i$ to a vector; we L2-normalise it,
# $\hat f_i = f(x_i) / \lVert f(x_i) \rVert$, and take all dot products:
#
# $$ S = \hat F \hat F^\top, \qquad S_{ij} = \langle \hat f_i, \hat f_j \rangle = \cos\angle(f_i, f_j) \in [-1, 1], \qquad S_{ii} = 1. $$
#
# Row $i$ of $S$ is what *anchor* $i$ sees. Two boolean masks split the pairs:
# $P_i$, the **positives** of anchor $i$ (same label, $j \ne i$), and $N_i$, its **negatives**
# (different label). The diagonal (a sample with itself) is in neither.
#
# Here the network is an *untrained* MLP 64 → 128 → 16: training has not started yet.

# %%
net = models.mlp(64, 16)                           # random weights: the state before training
with torch.no_grad():
    S = lv.similarity(net(x))                      # 16 x 16 cosine similarities
pos, neg = lv.pair_masks(y)
print(f"{int(pos.sum())} positive and {int(neg.sum())} negative (anchor, sample) pairs")
print(f"mean similarity: positives {S[pos].mean():.3f}, negatives {S[neg].mean():.3f}")

# %% [markdown] slideshow={"slide_type": "subslide"}
# The first claim of the package, checked on these numbers: $S$ is symmetric with a unit diagonal.

# %%
assert torch.allclose(S, S.T, atol=1e-6)
assert torch.allclose(S.diagonal(), torch.ones(len(y)), atol=1e-6)
print("max |S - S^T| =", round(float((S - S.T).abs().max()), 6),
      "| max |diag(S) - 1| =", round(float((S.diagonal() - 1).abs().max()), 6))

# %% [markdown] slideshow={"slide_type": "subslide"}
# In code, the formula is two lines (`lv.similarity_formula`). `lv.similarity`, which training uses,
# computes the same matrix with a hand-written backward pass that keeps less memory; the check
# below holds the two equal, value and gradient.

# %%
print(inspect.getsource(lv.similarity_formula))
x64 = net(x).detach().double().requires_grad_()
g_fast, g_formula = (torch.autograd.grad(fn(x64).sum(), x64)[0] for fn in (lv.similarity, lv.similarity_formula))
with torch.no_grad():
    gap = max(float((lv.similarity(x64) - lv.similarity_formula(x64)).abs().max()), float((g_fast - g_formula).abs().max()))
assert gap < 1e-12
print("similarity_formula = similarity, value and gradient to 1e-12:", gap < 1e-12)

# %% [markdown] slideshow={"slide_type": "subslide"}
# **A loss as $L(S, \text{labels})$.** The contrastive loss in its similarity form pulls every
# positive pair towards $S = 1$ and pushes a negative pair only while its similarity is above a
# threshold $\lambda$:
#
# $$ L = \frac{1}{B} \sum_{i=1}^{B} \Big[ \sum_{j \in P_i} (1 - S_{ij}) + \sum_{j \in N_i} [S_{ij} - \lambda]_+ \Big], \qquad [u]_+ = \max(u, 0). $$
#
# $B$ is the batch size (the loss is a mean over the $B$ anchors), $\lambda$ the threshold above
# which a negative pair counts as "too similar".
#
# **Pair weights (General Pair Weighting).** A training step moves the network's parameters
# $\theta$ along $\sum_{ij} \frac{\partial L}{\partial S_{ij}} \frac{\partial S_{ij}}{\partial \theta}$
# (the chain rule). So at this step the loss pushes the network exactly like the linear loss
# $\sum_{ij} g_{ij} S_{ij}$ would, with fixed numbers $g_{ij} = \partial L/\partial S_{ij}$: negative on
# positive pairs (minimising raises their similarity: a pull) and positive on negative pairs (a push).
# The **pair weight** $w_{ij} = |\partial L / \partial S_{ij}|$ is how hard pair $(i, j)$ is pulled or pushed.
# For the contrastive loss the derivative is easy:
#
# $$ w_{ij} = \frac{1}{B} \cdot \begin{cases} 1 & j \in P_i \\ \mathbb{1}[S_{ij} > \lambda] & j \in N_i \end{cases} $$
#
# Every positive gets the same weight, and a negative gets either full weight or none: the
# contrastive loss does not care *how* wrong a pair is. Every later notebook asks the same
# question of its own loss: **which pairs get weight, and why?**

# %% [markdown] slideshow={"slide_type": "slide"}
# ## From formula to code
#
# `lossviz` writes every pair loss as a function `loss(S, labels, **knobs)` that returns a scalar.
# Here is its contrastive loss:

# %%
print(inspect.getsource(lv.contrastive_loss))

# %% [markdown] slideshow={"slide_type": "subslide"}
# The same formula from scratch, in two lines, gives the same number on our batch:

# %%
lam = 0.5
from_scratch = ((1 - S) * pos).sum() / len(y) + ((S - lam).clamp(min=0) * neg).sum() / len(y)
L = lv.contrastive_loss(S, y, lam=lam)
assert torch.allclose(L, from_scratch)
print(f"contrastive loss: lossviz {L:.4f}, from scratch {from_scratch:.4f}")

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Pair weights by autograd.** Make $S$ a *leaf* tensor (one that autograd keeps the gradient
# of), call `backward()`, read `S.grad`. This is all that `lv.pair_weights` does, for any loss:

# %%
S_leaf = S.clone().requires_grad_(True)
lv.contrastive_loss(S_leaf, y, lam=lam).backward()
W_con = lv.pair_weights(lv.contrastive_loss, S, y, lam=lam)          # |dL/dS|, the same thing
assert torch.equal(W_con, S_leaf.grad.abs())

# %% [markdown] slideshow={"slide_type": "subslide"}
# And the autograd weights equal the closed form above: $1/B$ on positives, $\mathbb{1}[S_{ij} > \lambda]/B$
# on negatives.

# %%
closed_form = (pos.float() + (neg & (S > lam)).float()) / len(y)
assert torch.allclose(W_con, closed_form)
print("max |autograd - closed form| =", float((W_con - closed_form).abs().max()))
fp, fn = lv.active_fraction(W_con, y)
print(f"pairs with non-zero weight: {fp:.0%} of positives, {fn:.0%} of negatives (lambda = {lam})")

# %% [markdown] slideshow={"slide_type": "subslide"}
# Nearly all negatives are active: an untrained network maps all images to nearby directions
# (look at the mean similarities above), so almost every negative pair sits above $\lambda = 0.5$.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Weights as pictures
#
# Left: $S$, sorted by class, with the same-class blocks (the positive pairs) outlined in blue.
# Right: the similarities of the positive (blue) and negative (vermillion) pairs; the dashed line
# is $\lambda$. The same two colours mean positives and negatives in every notebook.

# %%
fig, ax = plots.new_figure(2, width=4.4, height=3.8)
plots.similarity_heatmap(ax[0, 0], S, y, title="S of an untrained MLP (16-d)")
_ = ax[0, 1].hist([S[pos].numpy(), S[neg].numpy()], bins=20, range=(-1, 1),
                  color=[plots.POS_COLOR, plots.NEG_COLOR], label=["positive pairs", "negative pairs"])
ax[0, 1].axvline(lam, color="k", ls="--", lw=1, label=f"λ = {lam}")
ax[0, 1].set(title="similarities of the pairs", xlabel="$S_{ij}$ (cosine)", ylabel="number of pairs")
ax[0, 1].legend(loc="upper left")
fig

# %% [markdown] slideshow={"slide_type": "subslide"}
# Now the pair weights. `signed=True` keeps the sign of $\partial L/\partial S_{ij}$: blue pulls
# (positives), vermillion pushes (negatives). Next to the contrastive loss we put the
# **Multi-Similarity (MS) loss** of Wang et al. with its official-code hyper-parameters — for now
# just its pictures; notebook 01 derives it:
#
# $$ L_{MS} = \frac1B \sum_i \Big\{ \frac1\alpha \log\Big[1 + \sum_{k\in P_i} e^{-\alpha(S_{ik}-\lambda)}\Big]
#   + \frac1\beta \log\Big[1 + \sum_{k\in N_i} e^{\beta(S_{ik}-\lambda)}\Big] \Big\} $$
#
# ($\alpha$ and $\beta$ are scales for positives and negatives; $P_i$ and $N_i$ here keep only the
# pairs that MS's *mining* step with margin $\varepsilon$ selects.)

# %%
ms = lv.MS_PRESETS["official_code"]
print("MS, official code:", ms)
Ws_con = lv.pair_weights(lv.contrastive_loss, S, y, signed=True, lam=lam)
Ws_ms = lv.pair_weights(lv.ms_loss, S, y, signed=True, **ms)
fig, ax = plots.new_figure(3, width=4.2, height=3.8)
plots.weight_heatmap(ax[0, 0], Ws_con, y, title="contrastive: all or nothing")
plots.weight_heatmap(ax[0, 1], Ws_ms, y, title="MS: smooth, hardness-aware")
for name, Ws in (("contrastive", Ws_con), ("ms", Ws_ms)):
    ax[0, 2].scatter(S[neg], Ws[neg], s=12, color=plots.LOSS_COLORS[name], label=name)
ax[0, 2].set(title="negative pairs: weight vs similarity", xlabel="$S_{ij}$ (cosine)",
             ylabel=r"weight $\partial L/\partial S_{ij}$")
ax[0, 2].legend(loc="upper left")
fig

# %% [markdown] slideshow={"slide_type": "subslide"}
# Contrastive gives the same weight to every active negative. MS gives **more weight to harder
# negatives** (the more similar, the heavier, exponentially in $\beta S_{ij}$), and no weight at all
# to the pairs its mining drops. Take the anchor with the most mined negatives: the order of its
# MS weights is the order of the similarities, and they span orders of magnitude.

# %%
Wn_ms = Ws_ms.masked_fill(~neg, 0.0)
row = int((Wn_ms > 0).sum(dim=1).argmax())                  # the anchor with the most mined negatives
kept = neg[row] & (Wn_ms[row] > 0)
order_w, order_s = Wn_ms[row, kept].argsort(), S[row, kept].argsort()
assert torch.equal(order_w, order_s)
print(f"anchor {row}: {int(kept.sum())} mined negatives, MS weights from {Wn_ms[row, kept].min():.1e} "
      f"to {Wn_ms[row, kept].max():.1e}; contrastive gives every active negative {1 / len(y):.1e}")

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Bring your own loss.** The losses people train with are often objects of pytorch-metric-learning
# (PML) that take embeddings. `lv.from_pml` hands such a loss this batch's $S$ instead (PML builds
# its matrix of cosines or distances from $S$), so `lv.pair_weights` works for it. Two checks: PML's
# Multi-Similarity loss with its own miner gives exactly the weights of `lv.ms_loss`; and the
# Circle loss (Sun et al., CVPR 2020), which lossviz does not implement, gets its picture at once.

# %%
from pytorch_metric_learning import losses as pml_losses, miners as pml_miners

pml_ms = lv.from_pml(pml_losses.MultiSimilarityLoss(alpha=ms["alpha"], beta=ms["beta"], base=ms["lam"]),
                     pml_miners.MultiSimilarityMiner(epsilon=ms["eps"]))
S64 = S.double()
gap = float((lv.pair_weights(pml_ms, S64, y, signed=True) - lv.pair_weights(lv.ms_loss, S64, y, signed=True, **ms))
            .abs().max())
assert gap < 1e-9
print("PML's MultiSimilarityLoss + miner = lv.ms_loss, every pair weight to 1e-9:", gap < 1e-9)
Ws_circle = lv.pair_weights(lv.from_pml(pml_losses.CircleLoss(m=0.25, gamma=80)), S, y, signed=True)
fig, ax = plots.new_figure(2, width=4.2, height=3.8)
plots.weight_heatmap(ax[0, 0], Ws_circle, y, title="Circle loss (PML), through lv.from_pml")
ax[0, 1].scatter(S[neg], Ws_circle[neg], s=12, color=plots.NEG_COLOR, label="negatives")
ax[0, 1].scatter(S[pos], -Ws_circle[pos], s=12, color=plots.POS_COLOR, label="positives (|weight|)")
ax[0, 1].set(title="Circle loss: weight vs similarity", xlabel="$S_{ij}$ (cosine)",
             ylabel=r"$|\partial L/\partial S_{ij}|$")
ax[0, 1].legend(loc="upper left")
fig

# %% [markdown] slideshow={"slide_type": "subslide"}
# Like MS, the Circle loss weighs each pair by how far it is from its target: negatives more the more
# similar they are, positives more the less similar. Which PML losses `from_pml` cannot serve, and why:
# `help(lv.from_pml)`.

# %% [markdown] slideshow={"slide_type": "subslide"}
# **The same idea for classifiers.** A classifier's loss is a function of the logits $z$, so
# autograd on the logits gives a **per-sample weight**. For cross-entropy,
# $|\partial L / \partial z_{y}| = 1 - p_y$: a sample the model already gets right ($p_y \to 1$)
# stops counting. Losses that hand out these per-sample weights differently from cross-entropy are
# the subject of Part IV, from notebook 21 on; `lv.sample_weights` computes them for any loss of the
# logits, as the last line of the next cell checks.

# %%
z = torch.randn(6, 10, requires_grad=True)                  # logits: 6 samples, 10 classes
t = torch.tensor([0, 1, 2, 3, 4, 5])                         # their labels
F.cross_entropy(z, t, reduction="sum").backward()
w = z.grad.gather(1, t[:, None]).abs().squeeze(1)            # per-sample weight |dL/dz_y|
assert torch.allclose(w, 1 - z.softmax(dim=1).gather(1, t[:, None]).squeeze(1))
assert torch.allclose(w, lv.sample_weights(lambda a, b: F.cross_entropy(a, b, reduction="none"), z.detach(), t))
print("per-sample weights 1 - p_y:", [round(v, 3) for v in w.tolist()])

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Explore
#
# The panel shows $S$ next to the pair weights of the loss you choose, and redraws at once.
# It shows only the knobs the chosen loss reads: $\lambda$ for contrastive, the margin for triplet,
# $\alpha, \beta, \lambda$ (and MS's $\varepsilon$ and mining / weighting switches) for binomial and MS.
# Try: raise $\lambda$ to 0.9 — which negatives keep their weight? Switch to MS and drag $\beta$.

# %%
panel = widgets.weights_panel(S, y, losses=("contrastive", "triplet", "binomial", "ms"), loss="contrastive")
shown = [name for name, c in panel.controls.items() if c.layout.display != "none"]
assert shown == ["loss", "lam"], shown
panel

# %% [markdown] slideshow={"slide_type": "subslide"}
# A panel can also be driven from code, which is how the tests check it without a browser:

# %%
before, redraws = panel.state["W"].clone(), panel.redraws
panel.controls["lam"].value = 0.9
assert panel.redraws == redraws + 1 and not torch.equal(panel.state["W"], before)
active_at_09 = panel.state["active"]
panel.controls["loss"].value = "ms"
shown = [name for name, c in panel.controls.items() if c.layout.display != "none"]
assert "beta" in shown and "margin" not in shown, shown
panel.controls["loss"].value, panel.controls["lam"].value = "contrastive", lam   # back to the start

# %%
print(f"contrastive, λ = 0.9: non-zero weight on {active_at_09[0]:.0%} of positives, "
      f"{active_at_09[1]:.0%} of negatives (at λ = 0.5: {fn:.0%})")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## A real training run
#
# Now train, for real. The data: all ten digit classes, a stratified 50/50 split of the 1797
# images (we test on images never seen in training). The network: an MLP 64 → 128 → **2**,
# L2-normalised, so every embedding is a point on the unit circle and we can look at all of them.
# Batches of 10 classes x 8 images, MS loss with the official-code defaults, Adam with learning
# rate $10^{-3}$, 300 iterations (a few seconds on one CPU thread).
#
# We measure **Recall@1** on the test images: the fraction of test images whose nearest other test
# image (by cosine) has the same label. The baseline needs no training: PCA of the raw pixels down
# to 2 dimensions. For comparison we also train the contrastive loss (λ = 0.5), everything else
# the same.
#
# A training run's numbers differ in their last digits from one CPU to another, so the tests never
# compare the cells that show them verbatim: such a cell carries the `nbval-ignore-output` tag and
# asserts what it shows instead.

# %% tags=["nbval-ignore-output"]
iters = 300                                                # not shortened by FAST: see Setup
run = T.train("ms", data="digits", dim=2, iters=iters, **ms)
assert run.evals["recall_at_1"][-1] > run.evals["recall_at_1"][0]
run

# %% tags=["nbval-ignore-output"]
run_con = T.train("contrastive", data="digits", dim=2, iters=iters, lam=lam)
assert run_con.evals["recall_at_1"][-1] > run_con.evals["recall_at_1"][0]
run_con

# %% [markdown] slideshow={"slide_type": "subslide"}
# The baselines need no training, so their numbers are the same on every machine:

# %%
base = T.baselines("digits", dims=(2,))                    # {name: (R@1, MAP@R)}, no training
print(f"no training: PCA-2 of the pixels {base['pca2'][0]:.3f}, raw 64-d pixels {base['raw'][0]:.3f}")

# %% tags=["nbval-ignore-output"]
print(f"test R@1 before training {run.evals['recall_at_1'][0]:.3f}; after {iters} iterations: "
      f"MS {run.recall_at_1:.3f}, contrastive {run_con.recall_at_1:.3f}")
gains = [r.recall_at_1 - r.evals["recall_at_1"][0] for r in (run, run_con)]
assert min(gains) > 0.2                                    # both runs learned, by a wide margin

# %% [markdown] slideshow={"slide_type": "subslide"}
# The test embeddings before and after training with MS, coloured by class (each class is drawn at
# a slightly different radius so that overlapping classes stay visible):

# %% tags=["nbval-ignore-output"]
fig, ax = plots.new_figure(2, width=4.0, height=4.0)
plots.circle(ax[0, 0], run.emb_before, run.y_test, title="test embeddings, before training")
dots = plots.circle(ax[0, 1], run.emb_after, run.y_test, title=f"after {iters} iterations of MS")
_ = plots.class_colorbar(fig, dots, ax[0, :], label="digit")
assert len(dots.get_offsets()) == len(run.y_test)           # every test image is on the picture
fig

# %% [markdown] slideshow={"slide_type": "subslide"}
# Learning curves: the training loss (the two losses are on different scales: compare shapes, not
# heights); the fraction of negative pairs in each batch that still get a non-zero weight; and test
# Recall@1 against PCA-2 (grey). As the classes separate, far fewer negatives are similar enough
# to matter: MS (through its mining) and contrastive (through $\lambda$) stop pushing most of them.

# %% tags=["nbval-ignore-output"]
fig, ax = plots.new_figure(3, width=3.8, height=3.3)
plots.learning_curves(ax[0], {"ms": run, "contrastive": run_con}, what=("loss", "active", "recall_at_1"))
ax[0, 2].axhline(base["pca2"][0], color=plots.MUTED, ls="--", label="PCA-2")
ax[0, 2].legend(loc="lower right")
for r in (run, run_con):                                   # active negatives: first step vs last 50
    assert len(r.history["loss"]) == iters
    assert r.history["active_neg"][-50:].mean() < 0.5 * r.history["active_neg"][0]
fig

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Try other settings.** This panel re-trains with the knobs you choose when you press *Train*.
# Runs are cached by their parameters: the setting it opens with (contrastive, λ = 0.5) is the
# run above, so the panel shows it trained at once, and pressing *Train* after a change of knobs
# trains only settings not seen before.

# %% tags=["nbval-ignore-output"]
trainer = widgets.training_panel(data="digits", dim=2, iters=iters, loss="contrastive", lam=lam)
assert trainer.state["run"] is run_con                     # the cached run of above, drawn, not a new one
trainer

# %%
again = trainer.train()                                    # what the Train button does
assert again is run_con and trainer.state["run"] is run_con  # still the cached run

# %% [markdown] slideshow={"slide_type": "slide"}
# ## The claim, checked
#
# The tour claims only what the package promises, and checks each promise on numbers computed
# above:
#
# 1. $S$ is symmetric with a unit diagonal, within $10^{-6}$ (checked in *The idea and the math*),
# 2. the contrastive pair weights found by autograd equal the closed form $\mathbb{1}/B$ on positives
#    and $\mathbb{1}[S_{ij} > \lambda]/B$ on negatives (checked in *From formula to code*),
# 3. training works: after training with MS, test Recall@1 of the 2-d embedding beats PCA-2 of
#    the raw pixels (the same check as notebook 01).
#
# A note on what this does *not* show: the raw 64-d pixels reach a far higher Recall@1 than either
# 2-d embedding (the second assert). Digits is an easy data set; we squeeze it into 2 dimensions
# only so that we can draw it.

# %% tags=["nbval-ignore-output"]
margin = run.recall_at_1 - base["pca2"][0]
print(f"MS (2-d) {run.recall_at_1:.3f} vs PCA-2 {base['pca2'][0]:.3f}: margin {margin:+.3f}")
assert margin > 0.02                                       # a margin that holds across seeds
assert base["raw"][0] - max(run.recall_at_1, run_con.recall_at_1) > 0.15

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Pitfalls and exercises
#
# **Pitfalls.**
# - **Threads.** Forgetting `torch.set_num_threads(1)` (done by `T.setup`) on a small shared CPU:
#   on a loaded 2-core machine, two threads made a 1 s run take 38 s.
# - **Downloads.** Nothing here downloads anything. `mnist1d.data.get_dataset` tries to; `lossviz.data`
#   uses `make_dataset(get_dataset_args())` instead. Every sklearn `fetch_*` fails offline.
# - **The leaf tensor.** Pair weights need $S$ as a leaf or `S.retain_grad()`. Inside a training
#   step $S$ is computed from the network, so autograd does not keep its gradient unless asked:
# - **Defaults differ between paper and code.** MS's $\lambda$ is 1 in the paper, 0.5 in the
#   official code; see `lv.MS_PRESETS` (printed below).
# - **Portable outputs** (for authors of notebooks): a training run's numbers differ in their last
#   bits from one CPU to another, and then the whole trajectory differs. So the tests (strict nbval)
#   never compare a training result verbatim: every cell that prints or draws one (like any cell
#   whose output changes from run to run: timings, training logs) carries the `nbval-ignore-output`
#   tag *and* a real `assert` on what it is for, with a margin that holds across seeds; only outputs
#   that are the same on every machine are compared. Prose never types a number that training
#   produced: print it, or state it qualitatively behind an assert. `make test` runs every notebook
#   twice, the second time with the math kernels switched (`make test-portable`), to show what
#   another CPU would see. A trailing `;` does not hide output under nbval.

# %%
S_net = lv.similarity(net(x))                              # computed from the network: not a leaf
S_net.retain_grad()                                        # without this, S_net.grad stays None
lv.contrastive_loss(S_net, y, lam=lam).backward()
assert not S_net.is_leaf and torch.allclose(S_net.grad.abs(), W_con)
for name, preset in lv.MS_PRESETS.items():
    print(f"{name:>13}: {preset}")

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Exercises.**
# 1. *Where does contrastive stop pushing?* In the panel, move $\lambda$ from 0.5 to 0.9 and to 0.
#    Predict the fraction of active negatives from the histogram before you look.
#    *Hint:* the weight of a negative is $\mathbb{1}[S_{ij} > \lambda]/B$.
# 2. *Hardness in MS.* Switch the panel to MS and move $\beta$ from 2 to 200. What happens to the
#    spread of the negative weights? *Hint:* within an anchor they are proportional to
#    $e^{\beta (S_{ij} - \lambda)}$; at large $\beta$ the hardest negative takes almost everything.
# 3. *A second training run.* With the training panel, train MS with $\varepsilon = 0$ and with
#    $\varepsilon = 0.3$. How does the "negative pairs with non-zero weight" curve change, and
#    Recall@1? *Hint:* $\varepsilon$ is the mining margin: a smaller one keeps fewer pairs.
# 4. *Classifier weights.* In the cross-entropy cell, make one logit of the right class large
#    (`z.data[0, 0] = 10`). What happens to that sample's weight? *Hint:* $1 - p_y$.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Summary, and how the notebooks are organised
#
# - A pair-based loss is a function $L(S, \text{labels})$ of the similarity matrix; `lossviz`
#   computes $S$ (`lv.similarity`), the masks (`lv.pair_masks`) and the losses (`lv.*_loss`).
# - Its gradient $w_{ij} = |\partial L / \partial S_{ij}|$ says how much each pair matters
#   (`lv.pair_weights`): the contrastive loss weighs pairs all-or-nothing, MS smoothly and by
#   hardness. For classifiers, autograd on the logits gives per-sample weights.
# - `lossviz.widgets` panels turn the knobs and redraw; `lossviz.train` runs a real, seeded,
#   cached training with a progress bar and the curves above.
#
# **Where the code lives.** The core (`lossviz/*.py`, flat and small) holds what several papers
# share: the similarity matrix, the losses, pair weights, metrics, data, the `Trainer` every run is
# built on. Each paper's own code is one module, `lossviz/papers/<slug>.py`, named after its
# notebook and read top to bottom: the maths (its loss and weights), then its experiment (the
# training run), then its pictures and panels. A paper module imports only the core, so a notebook
# can be read with its module and nothing else.
#
# **The reading list.** Every notebook is one paper; the notebook list in the project's
# `README.md` (section *What's inside*) is the reading list: each notebook with its paper's
# authors and venue; each notebook opens with the full citation and a link to the paper (and to
# its official code where there is one). The five parts:
# - **I** — pair weighting in deep metric learning and face recognition, notebooks 01–08;
# - **II** — contrastive learning, notebooks 09–16;
# - **III** — ranking, retrieval and preferences, notebooks 17–20;
# - **IV** — classification surrogate losses (the per-sample weights of the cross-entropy cell above,
#   for a whole family of losses), notebooks 21–27;
# - **V** — losses beyond classification, notebooks 28–34.
#
# **Three anchor notebooks** that later ones build on:
# - **01** General Pair Weighting, with the pair weights of the classic losses;
# - **09** the InfoNCE gradients and the role of the temperature;
# - **21** the per-sample weights of a classification loss (`lv.sample_weights`), which Part IV reuses.
#
# **The same ten sections in every notebook:** 1. story; 2. setup; 3. the math; 4. from formula to
# code; 5. weights as pictures; 6. explore; 7. a real training run; 8. the claim, checked;
# 9. pitfalls and exercises; 10. summary and references.
#
# **The honesty rule.** Where a paper's headline claim does not show at small scale, the notebook
# says so and checks the mechanism instead. A comparison of two methods runs both on the same seeds
# (at least 8 where runs take seconds) and calls a difference inside the seed-to-seed spread a tie.
# It never tunes seeds to pass.
#
# **References.**
# - X. Wang, X. Han, W. Huang, D. Dong, M. R. Scott. *Multi-Similarity Loss with General Pair
#   Weighting for Deep Metric Learning.* CVPR 2019. [arXiv:1904.06627](https://arxiv.org/abs/1904.06627),
#   code: [MalongTech/research-ms-loss](https://github.com/MalongTech/research-ms-loss).
# - R. Hadsell, S. Chopra, Y. LeCun. *Dimensionality Reduction by Learning an Invariant Mapping.*
#   CVPR 2006.
# - A. Hermans, L. Beyer, B. Leibe. *In Defense of the Triplet Loss for Person Re-Identification.*
#   arXiv:1703.07737, 2017 (P x K batches).
# - K. Musgrave, S. Belongie, S.-N. Lim. *A Metric Learning Reality Check.* ECCV 2020 (Recall@1, MAP@R).
