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
# # 07 — PairingNet: searching and matching torn fragments
#
# **Paper.** Rixin Zhou, Ding Xia, Yi Zhang, Honglin Pang, Xi Yang, Chuntao Li.
# *PairingNet: A Learning-based Pair-searching and -matching Network for Image Fragments.* ECCV 2024.
# [arXiv:2312.08704](https://arxiv.org/abs/2312.08704) ·
# official code: [zhourixin/PairingNet](https://github.com/zhourixin/PairingNet) (no licence file, so
# lossviz re-implements it from the paper and the code's behaviour).
#
# **The story.** Put a torn photograph — or a broken fresco — back together and you face two questions.
# **Search:** among hundreds of fragments, which ones fit this one? **Match:** along which stretch of
# their outlines do two fitting fragments meet, point for point? Classical methods hand-craft contour
# descriptors and compare every pair, slowly. PairingNet learns both with two contrastive losses on
# two similarity matrices:
#
# * a **fragment × fragment** matrix of embedding cosines, trained with a *multi-positive* InfoNCE
#   (a fragment may fit several others), and
# * a **contour point × contour point** matrix, turned into probabilities by a *dual softmax* and
#   trained with a *focal loss*, which should light up exactly along the shared cut.
#
# In this notebook we tear real photos into fragments, write both losses, look at their gradient
# weights, move their knobs, train both stages on a CPU in seconds, and check what survives at small scale.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Setup
#
# One cell: imports, seeds, one torch thread, and the `FAST` switch. `LOSSVIZ_FAST=1` changes nothing in this
# notebook: the claim is checked on runs of full length (300 steps, a few seconds each), because shorter search
# runs leave the baselines without a sign of learning on some seeds.

# %%
import inspect

import numpy as np
import torch
import torch.nn.functional as F
from IPython.display import Markdown
from tqdm.auto import tqdm

import lossviz as lv
from lossviz.papers import pairingnet as fr
from lossviz import plots
from lossviz import train as T

FAST = T.setup(seed=0)
ITERS = 300                                                   # not shortened by FAST (see above)
SEEDS = range(8)                                              # the paired seeds of every comparison
print("lossviz", lv.__version__, "| torch", torch.__version__, "| FAST =", FAST)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1. The idea and the math
#
# ### Matching: a dual softmax under a focal loss
# A network gives every contour point a feature vector: $F_s\in\mathbb R^{n\times d}$ for the $n$ points of a
# source fragment, $F_t\in\mathbb R^{m\times d}$ for a target fragment. Their dot products, divided by a
# temperature, form the **point similarity matrix** and a **dual softmax** turns it into match probabilities:
#
# $$S = \frac{F_s F_t^\top}{\tau_m},\qquad P_{ij} = \underbrace{\frac{e^{S_{ij}}}{\sum_{k} e^{S_{ik}}}}_{\text{row softmax}}\cdot
#   \underbrace{\frac{e^{S_{ij}}}{\sum_{k} e^{S_{kj}}}}_{\text{column softmax}}.$$
#
# $P_{ij}$ is large only if $j$ is $i$'s favourite partner *and* $i$ is $j$'s: a soft "mutual nearest
# neighbour". Both factors are at most 1 and sum to 1 along their row or column, so no row or column of $P$
# sums to more than 1, and $P_{ij} > 1/2$ forces both factors above $1/2$, i.e. $(i, j)$ is the maximum of its
# row *and* of its column of $S$. The ground truth $\mathcal P$ holds the point pairs that meet along the cut;
# every other entry is a negative ($\mathcal N$). The **focal loss** (Lin et al. 2017) is
#
# $$L_{\text{match}} = 400\cdot\operatorname*{mean}_{(i,j)\in\mathcal P\cup\mathcal N}\begin{cases}
#   -\alpha\,(1-P_{ij})^{\gamma}\,\log(P_{ij}+\epsilon) & (i,j)\in\mathcal P\\
#   -(1-\alpha)\,P_{ij}^{\gamma}\,\log(1-P_{ij}+\epsilon) & (i,j)\in\mathcal N\end{cases}$$
#
# with the official $\alpha = 0.55$, $\gamma = 8$, $\epsilon = 10^{-9}$ and $\tau_m = \sqrt d$. The factor
# $(1-P)^\gamma$ silences positives that are already found; $P^\gamma$ silences every negative that is not
# confidently wrong. Note the **single mean** over positives and negatives together: two contours of 40 points
# that share a cut of 12 have 12 positives and 1,588 negatives, so the negatives set the normaliser.
#
# ### Searching: InfoNCE with several positives
# Each fragment gets one L2-normalised embedding $\hat g$. For a batch of source fragments $s$ and target
# fragments $t$, $S^{st}_{ij} = \langle \hat g_{s_i}, \hat g_{t_j}\rangle$, and $M_{ij}=1$ when $s_i$ and
# $t_j$ fit. A fragment torn out of the middle of a sheet fits up to four others, so a row can hold several
# positives. PairingNet sums their probabilities inside the log:
#
# $$\ell(s,t) = \frac1A\sum_i -\log\sum_j M_{ij}\,\frac{e^{S^{st}_{ij}/\tau}}{\sum_k e^{S^{st}_{ik}/\tau}},\qquad
#   L_{\text{search}} = \ell(s,t) + \lambda\,\frac{\ell(s,s)+\ell(t,t)}{2},$$
#
# with $\tau = 0.12$ and $\lambda = 0.5$. In the two intra-set terms a fragment is positive only with itself,
# so they just push the other fragments of the same set away.
#
# ### The weights (General Pair Weighting, as in notebook 01)
# Differentiate $\ell$ with respect to the similarities. With $p_{ij}$ the softmax of row $i$ and
# $q_{ij} = M_{ij}p_{ij}/\sum_k M_{ik}p_{ik}$ the share of positive $j$ in the row's positive probability,
#
# $$\frac{\partial \ell}{\partial S_{ij}} = \frac{p_{ij} - M_{ij}\,q_{ij}}{\tau A}.$$
#
# Negatives are pushed with their softmax probability, as in every InfoNCE. Positives share the pull **in
# proportion to how likely each already is**: the easiest positive gets most of the credit, a hard positive
# little. SupCon (Khosla et al. 2020) averages $-\log p_{ij}$ over positives instead, which gives every
# positive the same $1/|M_i|$: it insists on *all* positives, PairingNet's form is happy with *one*. With a
# single positive per row both are plain cross-entropy (notebook 09 studies the temperature of this family).
# For matching, the gradient with respect to $S$ goes
# through both softmaxes, so `S.grad` mixes the focal factors with the coupling of each entry to its whole row
# and column; we look at it below rather than write it out.

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### The miniature: photos torn along random cuts
# PairingNet's data are 8,196 fragments generated from 390 images, plus real fragments, far out of reach here.
# We tear scikit-learn's two bundled photos instead (`china.jpg`, `flower.jpg`, 427 × 640, no download):
#
# * each photo is cut into non-overlapping 48 × 72 px tiles (64 per photo); the even tiles train, the odd ones
#   test, so no test pixel is ever seen in training;
# * each tile is torn into 2 × 3 fragments: the grid's inner corners move at random, every inner cut is a random
#   wavy line with frayed fibres, and each fragment's contour then gets its own small noise (0.1 px), because the
#   two sides of a real tear never fit exactly;
# * each contour is a closed ring of points about 2.5 px apart (31–47 per fragment), all walked clockwise, so two
#   fitting fragments walk their shared cut in opposite directions, and the ground truth matches point $i$ of one
#   to point $j$ of the other. Everything is deterministic given the seed.
#
# What a network sees at a contour point does not depend on where the fragment lies or how it is turned: the
# contour's turning angle (at two scales) and the colour just inside the fragment (0.5 and 2 px deep), over a
# window of 5 consecutive points.

# %%
train, test = fr.photo_split()
print(train, test, sep="\n")
fig, axes = plots.new_figure(3, width=4.4, height=3.3)
for ax, k in zip(axes[0], (8, 12, 20)):
    fr.draw_tear(ax, test.tears[k], title=f"test tile {k}, pulled apart")
fig

# %% [markdown] slideshow={"slide_type": "subslide"}
# The blue dots are the ground-truth matched points of every cut; a thin line joins every third
# correspondence across the gap. Each shared cut is sampled once, so its points are the same on both sides
# (up to the noise); the fraying makes every stretch of cut a little different from every other, which is
# what a matcher can learn to recognise.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 2. From formula to code
#
# The searching loss is two `logsumexp`s per row: $-\log\sum_j M_{ij}p_{ij} = \operatorname{LSE}_j(S_{ij}/\tau) -
# \operatorname{LSE}_{j:M_{ij}}(S_{ij}/\tau)$, which never takes the log of an underflowed 0.

# %%
print(inspect.getsource(fr.multi_positive_infonce))

# %% [markdown] slideshow={"slide_type": "subslide"}
# The matching side: padding is masked with a large finite value *before* both softmaxes (the official
# code's $-10^9$), and the focal loss takes one mean over positives and negatives. As `nt_xent_loss` takes
# cosines and $\tau$, `fr.matching_loss(S, gt, tau_m=...)` takes the raw dot products $F_sF_t^\top$ and divides
# by $\tau_m$ itself, so its pair weights are $\partial L/\partial (F_sF_t^\top)_{ij}$.

# %%
print(inspect.getsource(fr.dual_softmax))
print(inspect.getsource(fr.focal_matching_loss).split('"""')[-1])

# %% [markdown] slideshow={"slide_type": "subslide"}
# **From scratch.** The same two losses written as plain loops from the formulas above agree with `lossviz` on
# a random batch, and the searching loss with one positive per row is exactly cross-entropy.

# %%
g = torch.Generator().manual_seed(0)
S_demo = torch.rand(6, 8, generator=g, dtype=torch.float64) * 2 - 1
M_demo = torch.rand(6, 8, generator=g) < 0.3
M_demo[torch.arange(6), torch.arange(6)] = True
p = torch.softmax(S_demo / 0.12, dim=1)
loop = sum(-torch.log(sum(p[i, j] for j in range(8) if M_demo[i, j])) for i in range(6)) / 6
assert abs(float(loop - fr.multi_positive_infonce(S_demo, M_demo))) < 1e-12
one = F.one_hot(torch.arange(6), 8).bool()
ce = F.cross_entropy(S_demo / 0.12, torch.arange(6))
print(f"loop {float(loop):.6f} = lossviz; one positive per row: {float(fr.multi_positive_infonce(S_demo, one)):.6f} = CE {float(ce):.6f}")
assert abs(float(fr.multi_positive_infonce(S_demo, one) - ce)) < 1e-6

# %%
P_demo = fr.dual_softmax(S_demo * 5)
gt_demo = torch.eye(6, 8, dtype=torch.bool)
terms = [-0.55 * (1 - P_demo[i, j]) ** 8 * torch.log(P_demo[i, j] + 1e-9) if gt_demo[i, j]
         else -0.45 * P_demo[i, j] ** 8 * torch.log(1 - P_demo[i, j] + 1e-9) for i in range(6) for j in range(8)]
loop = 400 * sum(terms) / len(terms)
print(f"focal loss: loop {float(loop):.8f}, lossviz {float(fr.focal_matching_loss(P_demo, gt_demo)):.8f}")
assert abs(float(loop - fr.focal_matching_loss(P_demo, gt_demo))) < 1e-10

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Relation to SupCon.** `positives="mean_log"` computes SupCon's form instead. By Jensen's inequality
# $-\log\frac1{|M_i|}\sum_j p_{ij} \le \frac1{|M_i|}\sum_j -\log p_{ij}$, so PairingNet's loss is at most SupCon's
# minus $\log|M_i|$ row by row: it is the "$L_{in}$" variant of Khosla et al., which they found trains worse for
# classes and which suits fragments, where one good partner is enough.

# %%
l_sum = fr.multi_positive_infonce(S_demo, M_demo)
l_mean = fr.multi_positive_infonce(S_demo, M_demo, positives="mean_log")
bound = l_mean - torch.log(M_demo.sum(1).double()).mean()
print(f"PairingNet {float(l_sum):.4f} <= SupCon form - mean log|M_i| = {float(bound):.4f} <= SupCon form {float(l_mean):.4f}")
assert l_sum <= bound + 1e-12

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 3. Weights as pictures
#
# ### The focal modulation
# The focal factors as functions of $P$, weighted by $\alpha$ (positives, blue) and $1-\alpha$ (negatives,
# vermillion). At $\gamma = 8$ a positive stops counting once $P \gtrsim 0.4$ and a negative counts only above
# $P \approx 0.6$: almost every entry of the matrix is silenced.

# %%
fig, axes = plots.new_figure(1, width=6.0, height=3.6)
_ = fr.focal_curves(axes[0, 0], gammas=(0.0, 2.0, 8.0))
fig

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### The point matrix of one fragment pair
# To see weights on a realistic matrix we need a trained matcher, so we train one now with the official focal
# loss: 300 steps, about 5 s (section 5 describes the network and compares it with baselines). The example is
# the cut between fragments 0 and 3 (top left and bottom left) of test tile 20, the roof above.

# %% tags=["nbval-ignore-output"]
learned = fr.train_matching(train, test, iters=ITERS, **fr.FOCAL_PRESETS["official"])
EXAMPLE = 20 * 7 + 1                                        # tile 20, pair (0, 3)
S_ex, gt_ex = fr.pair_similarity(test, EXAMPLE, learned.model)
print(f"pair {EXAMPLE}: {gt_ex.shape[0]} x {gt_ex.shape[1]} contour points, {int(gt_ex.sum())} matched")
assert gt_ex.sum() > 5 and learned.params["tau_m"] == 4.0
assert learned.after["f1"] > learned.before["f1"] + 0.3                  # the matcher learned

# %% [markdown] slideshow={"slide_type": "subslide"}
# Left: $P$ with the ground truth outlined (the anti-diagonal band: the two contours walk the cut in opposite
# directions). Middle and right: the signed weights $\partial L/\partial S_{ij}$ of the official focal loss
# ($\gamma = 8$) and of plain cross-entropy ($\gamma = 0$, $\alpha = 0.5$) on the same matrix. Blue raises a
# similarity, vermillion lowers it; each map is scaled to its own largest weight.

# %% tags=["nbval-ignore-output"]
P_ex = fr.dual_softmax(S_ex, tau=4.0)
W_focal = lv.pair_weights(fr.matching_loss, S_ex, gt_ex, signed=True, tau_m=4.0)
W_bce = lv.pair_weights(fr.matching_loss, S_ex, gt_ex, signed=True, tau_m=4.0, **fr.FOCAL_PRESETS["bce"])
fig, axes = plots.new_figure(3, width=4.3, height=4.0)
kw = dict(xlabel="target point j", ylabel="source point i")
fr.matrix_heatmap(axes[0, 0], P_ex, gt_ex, title="P after training (truth outlined)", label="$P_{ij}$", vmax=1.0, **kw)
fr.matrix_heatmap(axes[0, 1], W_focal, gt_ex, signed=True, title="dL/dS, focal γ = 8", **kw)
_ = fr.matrix_heatmap(axes[0, 2], W_bce, gt_ex, signed=True, title="dL/dS, cross-entropy γ = 0", **kw)
assert float(P_ex[gt_ex].mean()) > 20 * float(P_ex[~gt_ex].mean())     # P lights up along the cut
fig

# %% [markdown] slideshow={"slide_type": "subslide"}
# Cross-entropy keeps training on every entry: it still pulls up the matches it has already found and pushes
# down the faint grey entries all over the matrix. The focal loss keeps weight only where it is still wrong:
# the positives that are missed and the few negatives that are confidently matched; elsewhere $(1-P)^8$ and
# $P^8$ are tiny. Because of the dual softmax, pulling up a positive also pushes *down* the other entries of its
# row and column: each point may have one partner only.
#
# **Numbers.** How much of the matrix carries weight, and the two structural facts of the dual softmax:

# %% tags=["nbval-ignore-output"]
share = {name: float((W.abs() > 0.01 * W.abs().max()).double().mean())
         for name, W in (("focal γ=8", W_focal), ("cross-entropy", W_bce))}
for name, v_ in share.items():
    print(f"{name:14s} entries with > 1% of the largest weight: {v_:.1%}")
big_P = P_ex > 0.5
print(f"P > 0.5 on {int(big_P.sum())} entries, all mutual nearest neighbours in S: "
      f"{bool(fr.mutual_nearest(S_ex)[big_P].all())}; largest row / column sum "
      f"{float(P_ex.sum(1).max()):.3f} / {float(P_ex.sum(0).max()):.3f}")
assert bool(fr.mutual_nearest(S_ex)[big_P].all()) and P_ex.sum(1).max() <= 1 and P_ex.sum(0).max() <= 1
assert share["focal γ=8"] < share["cross-entropy"]                     # the focal loss silences more entries

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### The fragment matrix of a search batch
# A search batch takes a few tiles and splits their fragments by checkerboard colour into sources and targets:
# every fit joins a source and a target, so the fits form the mask $M$ of $\ell(s,t)$. Here four test tiles
# (12 sources × 12 targets), with the cosines of a hand-crafted colour descriptor (mean and spread of the colours
# along each contour) as $S$. Left: $S$ with the fits outlined. Right: the weights of $\ell(s,t)$.

# %%
s_idx, t_idx, M_st = fr.search_step_batch(test, torch.tensor([8, 12, 16, 20]))
G_hand = F.normalize(fr.handcrafted_descriptor(test).double(), dim=1)
S_st = G_hand[s_idx] @ G_hand[t_idx].T
W_st = lv.pair_weights(fr.multi_positive_infonce, S_st, M_st, signed=True, tau=0.12)
W_mean = lv.pair_weights(fr.multi_positive_infonce, S_st, M_st, signed=True, tau=0.12, positives="mean_log")
fig, axes = plots.new_figure(2, width=4.6, height=3.8)
kw_st = dict(xlabel="target fragment j", ylabel="source fragment i")
fr.matrix_heatmap(axes[0, 0], S_st, M_st, vmin=-1, vmax=1, title="S: cosines (fits outlined)", label="$S_{ij}$", **kw_st)
_ = fr.matrix_heatmap(axes[0, 1], W_st, M_st, signed=True, title="dℓ/dS, PairingNet (τ = 0.12)", **kw_st)
fig

# %% [markdown] slideshow={"slide_type": "subslide"}
# The colour descriptor makes the fragments of one tile similar (the dark 3 × 3 blocks), fits or not. Each source
# row pushes its negatives in proportion to their softmax probability (vermillion) and pulls its fits (blue).
# Below, one source row with three fits: its softmax probabilities (pale) and its weights (solid), under
# PairingNet's form and SupCon's.

# %%
ROW = int(torch.nonzero(M_st.sum(1) == 3)[0])                  # a source with three fitting targets
j = np.arange(S_st.shape[1])
colors = [plots.POS_COLOR if m else plots.NEG_COLOR for m in M_st[ROW].tolist()]
fig, axes = plots.new_figure(2, width=4.6, height=3.4)
for ax, W, name in ((axes[0, 0], W_st, "PairingNet: log of summed prob."), (axes[0, 1], W_mean, "SupCon: mean of log-prob.")):
    ax.bar(j - 0.2, torch.softmax(S_st[ROW] / 0.12, 0).numpy(), 0.4, color=colors, alpha=0.35, label="softmax p")
    ax.bar(j + 0.2, (-W[ROW] * 0.12 * len(S_st)).numpy(), 0.4, color=colors, label=r"pull $-\tau A\,\partial\ell/\partial S$")
    ax.axhline(0, color="k", lw=0.8)
    ax.set(title=f"source {ROW}, {name}", xlabel="target fragment j (blue: fits)", ylabel="probability / scaled weight")
axes[0, 0].legend(loc="upper right", fontsize=8)
fig

# %% [markdown] slideshow={"slide_type": "subslide"}
# In PairingNet's form the fitting targets split the pull by their current probability: the one the descriptor
# already ranks first gets nearly all of it, the others almost nothing. SupCon's form pulls every fitting target
# by $1/|M_i| - p_{ij}$, pushing the already-likely one *away* once it holds more than its share. The closed
# form of section 1 is what autograd computes:

# %%
p_st = torch.softmax(S_st / 0.12, dim=1)
q_st = torch.where(M_st, p_st, 0.0) / torch.where(M_st, p_st, 0.0).sum(1, keepdim=True)
err = float((W_st - (p_st - q_st) / (0.12 * len(S_st))).abs().max())
print(f"max |autograd - closed form| < 1e-12: {err < 1e-12}; largest positive's share of row {ROW}'s pull: "
      f"{float(q_st[ROW].max()):.0%}")
assert err < 1e-12

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 4. Explore
#
# The panels here are built on `lossviz.widgets`: moving a control redraws the figure in place, and the Train
# button of section 5 runs a real training run, cached by its settings.
#
# **Matching knobs.** The pair above (its learned dot products fixed), with $\tau_m$ (1–16), $\alpha$, $\gamma$ and the
# threshold that turns $P$ into predicted matches. Watch the weights shrink onto a few entries as $\gamma$ grows,
# and $P$ melt into a blur as $\tau_m$ grows: a row of $P$ sums to far less than 1 when no partner stands out.

# %% tags=["nbval-ignore-output"]
match_panel = fr.matching_panel(S_ex, gt_ex, tau_m=4.0)
assert torch.allclose(match_panel.state["P"], P_ex) and 0 < match_panel.state["scores"]["f1"] <= 1
match_panel

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Searching knobs.** The search batch above, with $\tau$ (0.05–1), the form of the positive term, and the
# source row shown as bars. A low $\tau$ concentrates the push on the hardest negatives and the pull on the
# likeliest positive; $\tau = 1$ spreads both.

# %%
search_panel = fr.search_panel(S_st, M_st, tau=0.12, row=ROW)
assert search_panel.state["prob"].sum() > 0.999
search_panel

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 5. A real training run
#
# **Stage 1, matching (as in the paper, trained first).** A point encoder: an MLP on each contour point's window
# of 5 points (40 numbers: turning angles and colours), 64 hidden units with LayerNorm, 16-d output, applied to
# the window *and* to its mirror image (reversed, angles negated) and summed, so that a point of a cut looks the
# same from both fragments. $\tau_m = \sqrt{16} = 4$ (the official rule $\tau_m=\sqrt d$). Each step takes 16
# random neighbouring pairs of the training tiles in random order; Adam with cosine annealing as in the official
# code, but lr $10^{-2}$ (the code: $10^{-3}$ over 128 epochs; our network is tiny and trains for 300 steps).
# Test metric: precision, recall and **F1 of $\{P > 0.2\}$** over all 448 test pairs. The focal run is the one
# of section 3; we add plain cross-entropy ($\gamma=0$, $\alpha=0.5$).
#
# **Baselines.** The untrained encoder, and a **hand-crafted** matcher: describe each contour point by the part
# of its window that the partner sees the same (turning angles minus their reversal, colours plus their
# reversal), set $S_{ij} = -\lVert h_i - h_j\rVert^2$ and apply the same dual softmax, its one knob, the
# temperature, chosen on the training tiles.

# %% tags=["nbval-ignore-output"]
match_runs = {"focal γ=8": learned, "cross-entropy": fr.train_matching(train, test, iters=ITERS, **fr.FOCAL_PRESETS["bce"])}
hand = fr.handcrafted_matching(train, test)
assert match_runs["focal γ=8"] is learned
assert all(r.after["f1"] > r.before["f1"] + 0.3 for r in match_runs.values()) and 0 < hand["f1"] < 1

# %% tags=["nbval-ignore-output"]
print(f"{'':15s} precision  recall  F1")
print(f"{'hand-crafted':15s} {hand['precision']:.3f}      {hand['recall']:.3f}   {hand['f1']:.3f}   (temperature {hand['tau']:g})")
for name, run in match_runs.items():
    a_ = run.after
    print(f"{name:15s} {a_['precision']:.3f}      {a_['recall']:.3f}   {a_['f1']:.3f}   (untrained: F1 {run.before['f1']:.3f})")
gap = match_runs["focal γ=8"].after["f1"] - match_runs["cross-entropy"].after["f1"]
print(f"F1, focal γ=8 - cross-entropy: {gap:+.3f} (one seed each: no spread, so no ranking; exercise 1)")
assert all(r.after["f1"] > r.before["f1"] + 0.3 for r in match_runs.values())   # the table's last column: both learned

# %% tags=["nbval-ignore-output"]
COLORS = fr.method_colors()                                   # one colour per method, never the pair colours
fig, axes = plots.new_figure(2, width=4.6, height=3.4)
for name, run in match_runs.items():
    axes[0, 0].plot(run.history["iter"], run.history["loss"] / run.history["loss"][0], lw=1, color=COLORS[name], label=name)
    axes[0, 1].plot(*run.curve("f1"), marker=".", color=COLORS[name], label=name)
axes[0, 1].axhline(hand["f1"], color=COLORS["hand-crafted"], ls="--", label="hand-crafted")
axes[0, 0].set(title="training loss (relative to step 1)", xlabel="iteration", ylabel="loss / first loss", yscale="log")
axes[0, 1].set(title="test F1 of P > 0.2", xlabel="iteration", ylabel="F1", ylim=(0, 1))
axes[0, 1].legend(loc="lower right")
assert all(r.history["loss"][-20:].mean() < 0.5 * r.history["loss"][:20].mean() for r in match_runs.values())
assert all(r.curve("f1")[1].argmax() > 0 for r in match_runs.values())  # best checkpoint after iteration 0
assert {line.get_color() for line in axes[0, 1].lines}.isdisjoint({plots.POS_COLOR, plots.NEG_COLOR})
fig

# %% [markdown] slideshow={"slide_type": "subslide"}
# The example pair under the hand-crafted similarity and after training. The hand-crafted $P$ is all or nothing:
# it finds part of the cut, and confidently pairs points far from any cut (stretches of straight tile border
# look alike); the learned one finds more of the band and hesitates where it should (more entries between 0.05
# and 0.5). The counts are printed and asserted below the maps.

# %% tags=["nbval-ignore-output"]
S_hand, _ = fr.pair_similarity(test, EXAMPLE)               # encoder=None: hand-crafted
P_hand = fr.dual_softmax(S_hand, tau=hand["tau"])
fig, axes = plots.new_figure(2, width=4.4, height=4.0)
ex = {}
for ax, P, name in ((axes[0, 0], P_hand, "hand-crafted"), (axes[0, 1], P_ex, "learned, focal γ = 8")):
    ex[name] = fr.match_scores(P, gt_ex) | {"unsure": int(((P > 0.05) & (P < 0.5)).sum())}
    fr.matrix_heatmap(ax, P, gt_ex, vmax=1.0, label="$P_{ij}$", title=f"{name}: F1 {ex[name]['f1']:.2f}", **kw)
    print(f"{name:22s} recall {ex[name]['recall']:.2f}, F1 {ex[name]['f1']:.2f}, "
          f"entries with 0.05 < P < 0.5: {ex[name]['unsure']}")
hand_ex, learned_ex = ex.values()
assert learned_ex["recall"] > hand_ex["recall"] and learned_ex["unsure"] > hand_ex["unsure"]
fig

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Stage 2, searching.** As in the paper, search runs on top of the frozen matching network: a search head
# maps each contour point's 16 matching features plus its colour through one layer (64 units), mean- and
# max-pools over the contour, and projects to a 32-d L2-normalised embedding. Each step takes 16 random training
# tiles (96 fragments, split into sources and targets by checkerboard colour). Adam (lr $10^{-3}$), cosine
# annealing, 300 steps. Test: every one of the 384 test fragments queries the 383 others by cosine;
# **Recall@1** is the fraction whose nearest fragment fits them (chance: under 1%). The losses: PairingNet's
# InfoNCE at the official $\tau = 0.12$, and the official code's triplet baseline (squared distance, margin 1,
# one random positive and negative per row), with the same network, batches and budget.
#
# **Paired seeds.** A search head learns on the features of *one* matching network, and which losses come out
# ahead depends on that network as well as on the head's own seed. So seed $s$ trains the whole pipeline: the
# matching network (seed 0 is the one above) and then, on its features, one search head per loss, with the same
# batches for both losses. Eight seeds: 7 more matching runs and 16 search runs, under a minute on one core.

# %% tags=["nbval-ignore-output"]
SEARCH = {"InfoNCE τ=0.12": dict(loss="infonce", tau=0.12), "triplet": dict(loss="triplet")}
matchers = {0: learned} | {s: fr.train_matching(train, test, iters=ITERS, seed=s, eval_every=ITERS, progress=False,
                                                **fr.FOCAL_PRESETS["official"]) for s in tqdm(SEEDS[1:], desc="matching, seeds 1-7")}
search_runs = {(name, s): fr.train_search(train, test, matchers[s], iters=ITERS, seed=s, progress=False, **knobs)
               for name, knobs in SEARCH.items() for s in tqdm(SEEDS, desc=f"search, {name}")}
assert len(matchers) == 8 and len(search_runs) == 16
assert all(run.curve("recall_at_1")[1].argmax() > 0 for run in search_runs.values())  # every run: best after iteration 0

# %% tags=["nbval-ignore-output"]
r1 = {name: np.array([search_runs[name, s].after["recall_at_1"] for s in SEEDS]) for name in SEARCH}
untrained = {name: np.array([search_runs[name, s].before["recall_at_1"] for s in SEEDS]) for name in SEARCH}
assert all(np.array_equal(untrained[name], untrained["triplet"]) for name in SEARCH)   # the same start, seed by seed
hand_search = fr.search_scores(fr.handcrafted_descriptor(test), test.adjacency)
pooled = fr.search_scores(fr.pooled_features(learned.model, test), test.adjacency)
print(f"{'test Recall@1, seed':31s}" + "".join(f"{s:6d}" for s in SEEDS) + "    mean")
for name, v in {**r1, "untrained search head": untrained["triplet"]}.items():
    print(f"{name:31s}" + "".join(f"{x:6.3f}" for x in v) + f"   {v.mean():.3f}")
print(f"{'hand-crafted colour descriptor':31s} {hand_search['recall_at_1']:.3f} (no training, no seed)")
print(f"{'matching features, mean-pooled':31s} {pooled['recall_at_1']:.3f} (seed 0's matching network)")
learns = {name: lv.metrics.paired_difference(r1[name], untrained[name]) for name in SEARCH}
for name, d in learns.items():
    print(f"{name}, after - before training: {d}")
assert all(d.mean - 2 * d.se > 0 for d in learns.values())      # every search loss learns, beyond the seed spread
assert all(v.min() > 0.1 for v in r1.values())                  # every searcher is far above chance (under 1%)

# %% [markdown] slideshow={"slide_type": "subslide"}
# The search batch of section 3 again (rows and columns sorted by tile: each 3 × 3 diagonal block is one tile),
# under the hand-crafted colour descriptor and under the trained searcher; and over the whole test pool, the mean
# cosine of three kinds of pair: fits, other fragments of the same tile, fragments of other tiles.

# %% tags=["nbval-ignore-output"]
searcher = search_runs["InfoNCE τ=0.12", 0].model
with torch.no_grad():
    G_test = F.normalize(searcher(test.x, test.valid).double(), dim=1)
kinds = {}
fig, axes = plots.new_figure(2, width=4.6, height=3.8)
for ax, G_, name in ((axes[0, 0], G_hand, "hand-crafted colour"), (axes[0, 1], G_test, "trained, InfoNCE τ = 0.12")):
    fr.matrix_heatmap(ax, G_[s_idx] @ G_[t_idx].T, M_st, vmin=-1, vmax=1, title=f"S, {name}", label="$S_{ij}$", **kw_st)
    kinds[name] = fr.cosine_by_kind(G_, test)
    print(f"{name:26s} mean cosine: " + ", ".join(f"{k} {v:+.2f}" for k, v in kinds[name].items()))
hand_k, trained_k = kinds.values()
assert trained_k["fits"] < hand_k["fits"]                                      # a smaller range of cosines...
assert trained_k["fits"] - trained_k["same tile"] > hand_k["fits"] - hand_k["same tile"]  # ...a wider gap
fig

# %% [markdown] slideshow={"slide_type": "subslide"}
# The colour descriptor puts all the fragments of a tile close together, touching or not; the trained searcher
# uses a smaller range of cosines but a wider gap between the fragments that touch and those that only share the
# tile, which is what Recall@1 rewards. What it cannot fix is two tiles of the same plain sky.

# %% tags=["nbval-ignore-output"]
fig, axes = plots.new_figure(2, width=4.6, height=3.6)
for ax, k in ((axes[0, 0], 1), (axes[0, 1], 5)):
    fr.seed_curves(ax, {name: [search_runs[name, s] for s in SEEDS] for name in SEARCH}, f"recall_at_{k}",
                   baseline=hand_search[f"recall_at_{k}"], baseline_label="hand-crafted colour")
    ax.set(title=f"test Recall@{k} ({len(SEEDS)} seeds; bold: their mean)", ylabel=f"Recall@{k}")
axes[0, 0].legend(loc="lower right", fontsize=8)
colours = {line.get_color() for ax in axes[0] for line in ax.lines}
assert all(len(ax.lines) == 2 * len(SEEDS) + 3 for ax in axes[0])   # 8 seeds and a mean per loss, one baseline
assert colours.isdisjoint({plots.POS_COLOR, plots.NEG_COLOR})        # pair colours mean pull / push only
fig

# %% [markdown] slideshow={"slide_type": "subslide"}
# **What the search returns.** Two fragments of test tile 8 (the first picture of this notebook; of the next
# tiles if tile 8 lacks one kind): the first whose nearest fragment fits it and the first whose nearest does
# not, each with its five nearest fragments in the whole test pool of 384, framed blue if they fit the query
# and vermillion if not. Mistakes are fragments of the same tile that do not touch the query, or fragments of a
# similar-looking tile.

# %% tags=["nbval-ignore-output"]
nearest = (G_test @ G_test.T).fill_diagonal_(-2).argmax(1)
hit = test.adjacency[torch.arange(len(test)), nearest]
order = torch.argsort((test.tear - 8) % len(test.tears), stable=True)      # tile 8 first, then 9, 10, ...
queries = (int(order[hit[order]][0]), int(order[~hit[order]][0]))
fig, axes = plots.new_figure(6, 2, width=1.6, height=1.5)
for row, query in enumerate(queries):
    _ = fr.draw_retrieval(axes[row], test, G_test, query)
assert abs(float(hit.double().mean()) - r1["InfoNCE τ=0.12"][0]) < 2 / len(test)   # the table's searcher, seed 0
fig

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Train it yourself.** Press *Train* to run both stages with other knobs (about 5 s; settings already run come
# from the cache). The left curve is the matcher's test F1, the middle one the searcher's Recall@1 and @5, the
# right map $P$ of the example pair after training.

# %% tags=["nbval-ignore-output"]
train_panel = fr.training_panel(train, test, iters=ITERS, example=EXAMPLE)
assert train_panel.state["result"][0] is learned
train_panel

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 6. The claim, checked
#
# **The paper's claim.** PairingNet searches and matches fragments more accurately than rule-based methods
# (hand-crafted contour descriptors) and much faster, on thousands of generated and real fragments.
#
# **What we can check here, on 768 fragments of two photos, over the 8 seeds of section 5:**
# 1. *Learned matching beats hand-crafted matching:* the focal-trained point encoder's test F1 is above that
#    of the hand-crafted descriptor (whose temperature was tuned on the training tiles) on every seed, and far
#    above the untrained encoder's.
# 2. *The searching loss:* PairingNet's InfoNCE at $\tau = 0.12$ against the official code's triplet baseline,
#    seed by seed (the seed covers both stages), and learned search against the colour histogram. Both losses
#    learn (asserted in section 5); the cell prints each paired difference with its standard error and a verdict:
#    *ahead* or *behind* when the mean difference is more than two standard errors from 0, otherwise *a tie*.
#    A tie is a result, not a failure: it says that 8 seeds cannot tell the two apart at this scale.
# 3. *A property of the dual softmax, not a measurement:* every $P_{ij} > 0.5$ is a mutual nearest neighbour in
#    $S$, and no row or column of $P$ sums to more than 1. Section 1 shows that this holds for **any** network;
#    we check it on all 448 learned test matrices as a test of the code. What training adds is the number of
#    entries that pass 0.5.
#
# **What we cannot rank.** Whether the focal loss with $\gamma = 8$ beats plain cross-entropy: one matching run
# each (the line under the matching table) gives no seed spread (exercise 1). The official $\gamma$ was chosen
# for contours of thousands of points with far more negatives per positive. And our search head sees 16-d local
# features of 64 training tiles, where PairingNet has a graph network and a transformer trained on thousands of
# fragments.

# %% tags=["nbval-ignore-output"]
f1 = np.array([matchers[s].after["f1"] for s in SEEDS])
f1_before = np.array([matchers[s].before["f1"] for s in SEEDS])
S_all, P_all, gt_all, valid_all = fr.predict_matches(learned.model, test, tau_m=learned.params["tau_m"])
big = P_all > 0.5
mechanism = {"entries with P > 0.5 (seed 0)": int(big.sum()),
             "of them not mutual nearest in S": int((big & ~fr.mutual_nearest(S_all, valid_all)).sum()),
             "largest row sum of P": float(P_all.sum(2).max()), "largest column sum of P": float(P_all.sum(1).max())}
match_claims = {"F1 learned - hand-crafted": lv.metrics.paired_difference(f1, hand["f1"]),
                "F1 learned - untrained": lv.metrics.paired_difference(f1, f1_before)}
for k_, v_ in match_claims.items():
    print(f"{k_:34s} {v_}")
for k_, v_ in mechanism.items():
    print(f"{k_:34s} {v_:.6f}" if isinstance(v_, float) else f"{k_:34s} {v_}")
assert (f1 - hand["f1"]).min() > 0.05                      # learned beats hand-crafted on every seed
assert (f1 - f1_before).min() > 0.3                        # and every matcher learned
assert mechanism["entries with P > 0.5 (seed 0)"] > 1000 and mechanism["of them not mutual nearest in S"] == 0
assert mechanism["largest row sum of P"] <= 1 + 1e-6 and mechanism["largest column sum of P"] <= 1 + 1e-6

# %% tags=["nbval-ignore-output"]
search_claims = {"InfoNCE τ=0.12 - triplet": lv.metrics.paired_difference(r1["InfoNCE τ=0.12"], r1["triplet"]),
                 "InfoNCE τ=0.12 - hand-crafted colour": lv.metrics.paired_difference(r1["InfoNCE τ=0.12"], hand_search["recall_at_1"]),
                 "triplet - hand-crafted colour": lv.metrics.paired_difference(r1["triplet"], hand_search["recall_at_1"])}
for k_, v_ in search_claims.items():
    print(f"Recall@1, {k_:36s} {v_}")
assert all(d.n == len(SEEDS) and d.verdict in ("ahead", "a tie", "behind") for d in search_claims.values())
vs_triplet, vs_hand, _ = search_claims.values()
WORDS = {"ahead": "is ahead of", "behind": "is behind", "a tie": "ties with"}
Markdown(f"**Verdict at this scale.** Over {vs_triplet.n} paired seeds, PairingNet's InfoNCE (τ = 0.12) "
         f"**{WORDS[vs_triplet.verdict]}** the official triplet baseline, and learned search **{WORDS[vs_hand.verdict]}** "
         f"a plain colour histogram (the lines above give the numbers). "
         + ("A tie means the difference is inside the seed-to-seed spread: these 8 seeds cannot rank the two. "
            if "a tie" in (vs_triplet.verdict, vs_hand.verdict) else "")
         + "Matching is where learning clearly pays here (every seed beats the hand-crafted matcher, asserted above)"
         + ("; search, trained on 64 tiles, is ahead of colour as well." if vs_hand.verdict == "ahead" else
            "; search, trained on 64 tiles, shows no gain over colour."))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 7. Pitfalls
#
# **Two temperatures, two orders of magnitude apart.** $\tau = 0.12$ divides *cosines* (in $[-1, 1]$), while
# $\tau_m = \sqrt d$ divides *raw dot products* of unnormalised features, whose size the network sets. Sharing one
# slider between them, or normalising the point features and keeping $\tau_m = 8$, makes $P$ a uniform blur: with
# unit features the largest possible logit gap is $2/\tau_m = 0.25$.

# %%
Fs, Ft = torch.randn(40, 64, generator=g, dtype=torch.float64), torch.randn(40, 64, generator=g, dtype=torch.float64)
unit = fr.dual_softmax(F.normalize(Fs, dim=1) @ F.normalize(Ft, dim=1).T, tau=8.0)
print(f"unit features, tau_m = 8: largest P {float(unit.max()):.5f} (a uniform P would be {1 / 40**2:.5f})")
assert unit.max() < 2 / 40**2

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Pad with a large number, not $-\infty$.** A contour shorter than the batch's longest is padded. Masking the
# padding with $-\infty$ turns a fully padded row into $0/0$:

# %%
valid = torch.ones(4, 4, dtype=torch.bool)
valid[3] = False                                   # a padded row
z = S_demo[:4, :4].masked_fill(~valid, -np.inf)
print("with -inf:", torch.isnan(torch.softmax(z, -1) * torch.softmax(z, -2)).any().item(),
      "| lossviz (-1e9):", torch.isfinite(fr.dual_softmax(S_demo[:4, :4], valid)).all().item())

# %% [markdown] slideshow={"slide_type": "subslide"}
# **The focal normaliser.** One mean over positives and negatives: a pair of 40-point contours sharing 12 points
# has 12 positives among 1,600 entries; at 400 points and 120 shared, 120 among 160,000. The positives' share
# of the normaliser falls tenfold, and with it, silently, the size of their gradient (Adam hides part of it,
# plain SGD does not).

# %%
for n, shared in ((40, 12), (400, 120)):
    Sx = torch.zeros(n, n, dtype=torch.float64)
    gtx = torch.zeros(n, n, dtype=torch.bool)
    gtx[torch.arange(shared), torch.arange(shared).flip(0)] = True
    Wx = lv.pair_weights(fr.matching_loss, Sx, gtx, tau_m=4.0)
    print(f"{n:3d} points, {shared:3d} shared: positives are {shared / n**2:.2%} of the mean; "
          f"total weight on positives {float(Wx[gtx].sum()):.4f}")

# %% [markdown] slideshow={"slide_type": "subslide"}
# **More traps.**
# - *Sum of probabilities or mean of logs?* The official code sums (section 1); many re-implementations write
#   SupCon's mean of log-probabilities, which weights the positives differently (section 3).
# - *The official focal loss only runs on a GPU:* it builds its $\epsilon$ with a hard-coded `.cuda()`. lossviz
#   adds a plain number.
# - *Intra-set positives.* The official code marks a fragment positive only with itself in $\ell(s,s)$ and
#   $\ell(t,t)$; if two fragments of the same set fitted each other, those terms would push them apart. Our
#   batches avoid the conflict by construction: sources and targets are the two checkerboard colours, and fits
#   always join two colours.
# - *The official triplet baseline* works on unnormalised features; ours on normalised ones, so that both search
#   losses see the same cosine geometry (its margin of 1 is then a quarter of the largest squared distance).
# - *Numbers that look too good.* Overlapping crops of one photo share pixels; a random crop split leaks them
#   from training to test. We cut non-overlapping tiles.
#
# ## 8. Exercises
# 1. **γ and the shared cut.** In the training panel, compare γ = 0, 2, 8 at α = 0.55. Which gives the best F1
#    here? Then rank γ = 8 against cross-entropy properly: train both on the 8 seeds of section 5
#    (`fr.train_matching(train, test, seed=s, **fr.FOCAL_PRESETS["bce"])`) and compare the F1s with
#    `lv.metrics.paired_difference`. *Hint:* count the negatives per positive of one pair (`gt_ex.numel() / gt_ex.sum()`)
#    and look at the focal curves: which entries does γ = 8 silence that cross-entropy still trains on?
# 2. **One partner is enough.** For every row of `S_st`, compare the pull on the fitting targets under
#    `positives="sum_prob"` and `"mean_log"` (`lv.pair_weights`, as in section 3). Which positives lose their
#    pull under PairingNet's form, and when does SupCon's form push a positive away? *Hint:* `q_st` above.
# 3. **Temperature of the search.** Move τ in the training panel from 0.05 to 1. How do Recall@1 and Recall@5
#    move? One run per τ cannot rank them: train τ = 1 on the 8 paired seeds of section 5 (on `matchers[s]`)
#    and print `lv.metrics.paired_difference(r1["InfoNCE τ=0.12"], ...)`. Does every τ = 1 run learn (its best
#    checkpoint after iteration 0)? *Hint:* a low τ trains on the hardest negatives, which here are the other
#    fragments of the same tile; τ = 1 on cosines leaves logits in [−1, 1].
# 4. **A harder tear.** Tear with `rough=0` (no fraying) via `fr.photo_split(rough=0.0)` and retrain the matcher.
#    What is left for it to match on? *Hint:* look at the hand-crafted F1 too.
#
# ## 9. Summary
# - PairingNet learns two similarity matrices: fragments × fragments for search (multi-positive InfoNCE,
#   τ = 0.12, plus intra-set terms) and contour points × contour points for matching (dual softmax, focal loss
#   with α = 0.55, γ = 8, one mean over all entries).
# - Summing the positives' probabilities lets the likeliest fitting fragment take the credit; SupCon's mean of
#   logs insists on all of them. The dual softmax makes every confident match a mutual nearest neighbour and
#   caps every row and column at 1; the focal factors silence almost every entry.
# - On photos torn along random frayed cuts, a point encoder trained in seconds matches contours better than a
#   hand-crafted descriptor, on each of 8 seeds.
# - Search losses are compared on paired seeds that cover both stages (matching network and search head): a
#   search head's result depends on the matching network it was trained on. Section 6 prints the verdict for
#   PairingNet's InfoNCE against the official triplet baseline and against a colour histogram, and calls a
#   difference inside two standard errors a tie. One seed each cannot rank γ = 8 against cross-entropy.
#
# **References.** Zhou et al., *PairingNet: A Learning-based Pair-searching and -matching Network for Image
# Fragments*, ECCV 2024. Lin et al., *Focal Loss for Dense Object Detection*, ICCV 2017. Rocco et al.,
# *Neighbourhood Consensus Networks*, NeurIPS 2018, and Sun et al., *LoFTR*, CVPR 2021 (the dual softmax).
# van den Oord et al., *Representation Learning with Contrastive Predictive Coding*, 2018 (InfoNCE). Khosla et
# al., *Supervised Contrastive Learning*, NeurIPS 2020. Wang et al., *Multi-Similarity Loss with General Pair
# Weighting*, CVPR 2019.
