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
# # 12 — Arbitrary class pairs as positives: Hydra's gated feature filter
#
# **Paper.** Jiantao Wu, Sara Atito, Zhenhua Feng, Shentong Mo, Josef Kittler, Muhammad Awais.
# *Rethinking Positive Pairs in Contrastive Learning.* arXiv 2024.
# [arXiv:2410.18200](https://arxiv.org/abs/2410.18200) (version 2 renames the method SimLAP) ·
# official code: [erow/FastSSL](https://github.com/erow/FastSSL), `model/simlap.py` (no licence was seen, and a
# related README says CC BY-NC 4.0, so lossviz re-implements it from the equations).
#
# **The story.** Contrastive learning rests on one assumption: a positive pair is two things that *should* look
# alike, two views of one image or two images of one class. This paper asks what happens if *any* two samples may
# be a positive pair, even a garter snake and a table lamp. Pulling such a pair together in the whole feature space
# would wreck the features. But a snake and a lamp may still share *something* (a shape, a colour, a texture), so
# the paper lets them agree only in a **subspace**. For every class pair a small network, the **gate**, chooses which
# feature dimensions stay open; the contrastive loss is computed only in those dimensions. The authors report that
# this works (their model, "Hydra", learns from ImageNet's 500,500 class pairs), that it prevents *dimensional
# collapse* (features that use only a few directions), and that the gates reveal which classes share features.
#
# In this notebook you will write the loss and the gate, see which pairs get weight, look at the subspaces the gate
# opens for each pair of digits, move the paper's knobs, train small models with and without the gate, and check
# which part of the claim holds at small scale.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Setup
#
# One cell: imports, seeds, one torch thread, and the `FAST` switch (`LOSSVIZ_FAST=1` runs two seeds instead of
# three).

# %%
import inspect
import math

import numpy as np
import torch
from scipy.stats import spearmanr

import lossviz as lv
from lossviz import data, plots
from lossviz import contrastive as C
from lossviz.papers import hydra as H
from lossviz.similarity import masked_logsumexp
from lossviz import train as T

FAST = T.setup(seed=0)
SEEDS = (0, 1) if FAST else (0, 1, 2)
print("lossviz", lv.__version__, "| torch", torch.__version__, "| FAST =", FAST)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1. The idea and the math
#
# ### Positive pairs from a class pair
# A batch holds $B$ images with classes $y1_i$. Each image gets two random views; the network maps view 1 to the
# **anchor** $z1_i$ and view 2 to the **key** $z2_j$ (unit vectors of dimension $d$). Each anchor also gets a
# **partner class** $y2_i$, and *every key of class $y2_i$ is a positive* of anchor $i$. How $y2$ is drawn is the
# paper's pair mode:
#
# | mode | partner class | what it is |
# |---|---|---|
# | `identical` | $y2_i = y1_i$ | ordinary supervised contrast (SupCon-like) |
# | `arbitrary` (the paper's default) | $y2 = y1[\text{randperm}(B)]$ | another image's class: same class only by chance (1 in 10 here) |
# | `distinct` | $y2_i = (y1_i + U\{1..C-1\}) \bmod C$ | never the same class |
#
# ### The gate: a feature filter per class pair
# A learned class embedding $E$ (512 numbers per class) and a small MLP give, for the pair $(y1, y2)$,
#
# $$g(y1, y2) = \sigma\Big(\text{MLP}\big(\tfrac12(E[y1] + E[y2])\big)\Big) \in (0, 1)^d,
#   \qquad \text{MLP} = \text{ReLU} \to \text{BN} \to \text{Linear}(512, 1024) \to \text{ReLU} \to \text{BN} \to \text{Linear}(1024, d).$$
#
# $g_k \approx 1$ keeps feature dimension $k$, $g_k \approx 0$ drops it. Averaging the two embeddings makes the gate
# symmetric in the pair. (A Gumbel variant adds noise before the sigmoid; section 7.)
#
# ### The gated similarity
# We follow the official FastSSL code: the gate is applied twice to the anchor, and nothing is renormalised,
#
# $$S^g_{ij} = \big\langle z1_i \odot g_i \odot g_i,\; z2_j \big\rangle = \sum_k g_{ik}^2\, z1_{ik}\, z2_{jk},
#   \qquad g_i = g(y1_i, y2_i).$$
#
# A closed dimension simply drops out of the sum: **the pair is compared only in the subspace its gate opens**.
# (A second published version, built on the vitookit library, instead takes the cosine of the two gated vectors,
# which rescales the open subspace back to the unit sphere; `renormalize=True` in lossviz. The two behave
# differently, so we pick FastSSL's.)
#
# ### The loss
# With $\ell_{ij} = S^g_{ij}/\tau$ (FastSSL learns the scale $s = 1/\tau$, starting at $1/0.1 = 10$), the positives
# and the keys that are *never* negatives of anchor $i$ are
#
# $$P_i = \{j : y_j = y2_i\}, \qquad E_i = \{j : y_j \in \{y1_i, y2_i\}\},$$
#
# and the loss is a multi-positive InfoNCE in which every positive has its own denominator:
#
# $$L = \frac{1}{|A|} \sum_{i \in A} \frac{1}{|P_i|} \sum_{j \in P_i}
#       \Big[\log\Big(e^{\ell_{ij}} + \sum_{k \notin E_i} e^{\ell_{ik}}\Big) - \ell_{ij}\Big],$$
#
# with $A$ the anchors of the batch. As in the official code, each anchor's positives are averaged first, then the
# anchors: every anchor counts once, whether its partner class has one image in the batch or ten. (Averaging over
# all positive pairs at once instead would weight each anchor by the size of its partner class; section 2 measures
# how unequal that is on a batch of 128 digits.)
#
# Neither the anchor's own class nor its partner class is ever pushed away: the partner class holds the positives,
# and the own class holds the anchor's other view, which is neither pulled nor pushed unless it *is* the partner.
#
# ### Which pairs get weight (General Pair Weighting)
# This is NT-Xent's rule (notebook 09) with Hydra's masks. For the term of positive $(i, j)$ let $q$ be the softmax
# of $\ell_{i\cdot}$ over $\{j\}$ and the allowed negatives $k \notin E_i$. Then, up to the factor
# anchor $i$'s factor $1/(\tau\,|A|\,|P_i|)$,
#
# $$\Big|\frac{\partial L}{\partial S^g_{ij}}\Big| = 1 - q_j \ \text{(pull)}, \qquad
#   \Big|\frac{\partial L}{\partial S^g_{ik}}\Big| = \sum_{j \in P_i} q_k \ \text{(push)}, \qquad
#   \frac{\partial L}{\partial S^g_{ik}} = 0 \ \text{for } k \in E_i \setminus P_i .$$
#
# So each anchor's total pull equals its total push, hard negatives get most of the push, and the keys of the own
# class get nothing. **The gate does not change the weighting rule; it changes the similarity the rule reads.**

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 2. From formula to code
#
# `H.hydra_loss` builds the two masks and then computes NT-Xent the way `lv.nt_xent_loss` does: one masked
# `logsumexp` over each row's allowed negatives (`lossviz.similarity.masked_logsumexp`), one `logaddexp` per positive.

# %%
print(inspect.getsource(H.hydra_loss))

# %% [markdown] slideshow={"slide_type": "subslide"}
# Three checks on a random batch of 16 anchors, 4 classes, arbitrary partners, in float64: the loss equals a slow
# loop written from the formula; it equals FastSSL's arithmetic (subtract the row mean, `exp`, mask, `log`),
# and with an open gate $S^g$ is the plain cosine.

# %%
g = torch.Generator().manual_seed(0)
y1 = torch.randint(0, 4, (16,), generator=g)
y2 = H.partner_labels(y1, "arbitrary", generator=g)
z1, z2 = torch.randn(16, 8, generator=g, dtype=torch.float64), torch.randn(16, 8, generator=g, dtype=torch.float64)
gate = torch.rand(16, 8, generator=g, dtype=torch.float64)
S = H.gated_similarity(z1, z2, gate)
tau = 0.1


def loop_loss(S, y1, y2, tau):                       # the formula, one positive at a time
    anchors = []
    for i in range(len(y1)):
        terms = [torch.log(torch.exp(S[i, j] / tau) + sum(torch.exp(S[i, k] / tau) for k in range(len(y1))
                                                        if y1[k] not in (y1[i], y2[i]))) - S[i, j] / tau
                 for j in range(len(y1)) if y1[j] == y2[i]]
        anchors.append(sum(terms) / len(terms))          # mean over the anchor's positives P_i ...
    return sum(anchors) / len(anchors)                   # ... then over the anchors

# %%
def fastssl_recipe(S, y1, y2, tau):                  # the official arithmetic: exp after a row-mean shift
    logits = S / tau
    logits = logits - logits.mean(1, keepdim=True).detach()
    score, pos = logits.exp(), y2[:, None] == y1[None, :]
    neg = (score * ~(pos | (y1[:, None] == y1[None, :]))).sum(1, keepdim=True)
    return ((pos * (torch.log(score + neg) - logits)).sum(1) / pos.sum(1)).mean()


ours = H.hydra_loss(S, y1, partner=y2, tau=tau)
print(f"lossviz {float(ours):.10f} | loop {float(loop_loss(S, y1, y2, tau)):.10f} | "
      f"FastSSL recipe {float(fastssl_recipe(S, y1, y2, tau)):.10f}")
assert abs(ours - loop_loss(S, y1, y2, tau)) < 1e-12 and abs(ours - fastssl_recipe(S, y1, y2, tau)) < 1e-12
cosine = torch.nn.functional.normalize(z1, dim=1) @ torch.nn.functional.normalize(z2, dim=1).T
assert torch.allclose(H.gated_similarity(z1, z2, torch.ones(8, dtype=torch.float64)), cosine, atol=1e-14)

# %% [markdown] slideshow={"slide_type": "subslide"}
# Why the order of the two averages matters: on a batch of 128 anchors from 10 classes with arbitrary partners,
# averaging over all positive pairs at once would give anchor $i$ the weight $|P_i| / \overline{|P|}$ instead of 1.

# %%
g128 = torch.Generator().manual_seed(0)
y128 = torch.randint(0, 10, (128,), generator=g128)
size = (H.partner_labels(y128, "arbitrary", generator=g128)[:, None] == y128[None, :]).sum(1).double()
pair_avg = size / size.mean()                            # anchor weights under the all-pairs average
print(f"all-pairs average: anchor weights {float(pair_avg.min()):.2f}x to {float(pair_avg.max()):.2f}x | "
      f"per-anchor average (FastSSL, lossviz): 1.00x for every anchor")
assert pair_avg.max() - pair_avg.min() > 0.3

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 3. Weights as pictures
#
# To look at a gate that has learned something we train one Hydra model now (arbitrary pairs, with the gate, seed
# 0; section 5 describes the protocol and reuses this run from the cache).

# %% tags=["nbval-ignore-output"]
gated = H.train_hydra("arbitrary", gate=True, seed=0)
print(gated)
assert gated.gates.shape == (10, 10, 32)
assert gated.history["loss"][-20:].mean() < gated.history["loss"][:5].mean() - 1     # it learned
assert ((gated.gates < 0.1) | (gated.gates > 0.9)).mean() > 0.5                   # its gates have decided

# %% [markdown] slideshow={"slide_type": "subslide"}
# A fresh batch of 32 test digits, two views each, through the trained network, with arbitrary partners. Each row
# is an anchor, labelled *class → partner class*; each column a key, grouped by class. **Blue** cells are pulled
# (the keys of the partner class), **vermillion** cells pushed, **grey** cells are excluded (own class and partner
# class): they get exactly zero push. Left: the loss as trained, on the gated similarity. Right: the same batch
# with the gate forced open, $S^g$ = plain cosine.

# %% tags=["nbval-ignore-output"]
b = H.gated_batch(gated, n=32, seed=0)
W_gate = lv.pair_weights(H.hydra_loss, b["S"], b["y1"], signed=True, partner=b["y2"], tau=b["tau"])
W_open = lv.pair_weights(H.hydra_loss, b["S_open"], b["y1"], signed=True, partner=b["y2"], tau=b["tau"])
fig, axes = plots.new_figure(2, width=5.6, height=6.2)
_ = H.weight_map(axes[0, 0], W_gate, b["y1"], b["y2"], title=f"with the gate (τ = 1/s = {b['tau']:.3f})")
_ = H.weight_map(axes[0, 1], W_open, b["y1"], b["y2"], title="same batch, gate forced open")
loss_ = {k: float(H.hydra_loss(b[k], b["y1"], partner=b["y2"], tau=b["tau"])) for k in ("S", "S_open")}
top = {k: float((W.clamp(min=0).amax(1) / W.clamp(min=0).sum(1)).mean()) for k, W in (("S", W_gate), ("S_open", W_open))}
assert loss_["S_open"] > loss_["S"] + 1 and top["S_open"] > top["S"] + 0.1     # open: larger loss, concentrated push
fig

# %% [markdown] slideshow={"slide_type": "subslide"}
# With the gate, the pull is spread over each row's partner block and the push is faint and broad. With the gate
# open, the same network's plain cosines make a few negatives very hard (dark vermillion cells): in the full space,
# a digit's partner class is no closer than the other classes, so the loss is large and the push concentrates.
#
# **One anchor, with and without its gate.** The anchor's positives (blue, pulled) and its allowed negatives
# (vermillion, pushed) against their similarity. Weights are in units of anchor $i$'s factor $\tau\,|A|\,|P_i|$.

# %% tags=["nbval-ignore-output"]
i = int(torch.nonzero(b["y1"] != b["y2"])[0])
pos, allowed = H.hydra_masks(b["y1"], b["y2"])
fig, axes = plots.new_figure(2, width=5.0, height=3.7)
for ax, key, W, name in ((axes[0, 0], "S", W_gate, "gated"), (axes[0, 1], "S_open", W_open, "gate open")):
    unit = b["tau"] * len(b["y1"]) * int(pos[i].sum())
    _ = plots.anchor_weights_view(ax, b[key][i, pos[i]], b[key][i, allowed[i]], -W[i, pos[i]] * unit,
                                  W[i, allowed[i]] * unit, title=f"anchor {int(b['y1'][i])} → partner {int(b['y2'][i])}, {name}")
    ax.set(xlabel=f"similarity to the anchor ({'$S^g$' if key == 'S' else 'cosine'})", ylabel="signed weight (× τ |A| |P_i|)")
beats = {k: float((b[k][i, pos[i]][:, None] > b[k][i, allowed[i]][None, :]).double().mean()) for k in ("S", "S_open")}
assert beats["S"] > 0.9 and beats["S"] > beats["S_open"] + 0.1       # share of (positive, negative) pairs won
assert b["S"].abs().mean() < b["S_open"].abs().mean()                # gated similarities: smaller on the whole
fig

# %% [markdown] slideshow={"slide_type": "subslide"}
# Under the gate the positives are among the anchor's most similar keys: in the subspace the gate opens, the
# partner class *is* similar. The gated similarities are smaller than the cosines on the whole (only part of the
# dimensions are open, and $g^2 \le 1$). With the gate open the same positives sit among the negatives, and the
# hardest negatives take most of a larger push. Note that the pull on the positives is *not* the same in both
# views: each positive's pull $1 - q_j$ is small when it already beats the negatives.
#
# **Three exact facts, checked numerically.** (1) Per anchor, total pull = total push. (2) Excluded keys get
# exactly zero. (3) Each positive's term is the engine's one-anchor NT-Xent (`C.anchor_nt_xent_weights`): summing
# it over the anchor's positives gives the autograd row.

# %%
n_pos = int(pos.sum())
balance = ((W_gate * allowed).sum(1) + (W_gate * pos).sum(1)).abs().max()
excluded = W_gate[~pos & ~allowed].abs().max()
row = torch.zeros(allowed.shape[1], dtype=torch.float64)
for j in torch.nonzero(pos[i]).flatten():
    w_p, w_n = C.anchor_nt_xent_weights(float(b["S"][i, j]), b["S"][i, allowed[i]], tau=b["tau"])
    row[j] -= w_p
    row[allowed[i]] += w_n
gap = (row / (b["tau"] * len(b["y1"]) * int(pos[i].sum())) - W_gate[i]).abs().max()
print(f"|pull - push| {'< 1e-12' if balance < 1e-12 else float(balance)} | excluded keys exactly 0: {bool(excluded == 0)} "
      f"| |engine - autograd| {'< 1e-10' if gap < 1e-10 else float(gap)}")
assert balance < 1e-12 and excluded == 0 and gap < 1e-10

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 4. Explore
#
# The panels here are built on `lossviz.widgets`: moving a control redraws the figure in place,
# and a Train button runs a real training run, cached by its settings.
#
# **The gate as a subspace selector, in pure maths.** Six toy classes of 16 points on the unit sphere. The anchor's
# class *a* and its partner *b* share their mean on the first quarter of the dimensions (shaded) and differ on the
# rest; four other classes *c* are unrelated. The gate of (a, b) has logit $+\kappa$ on the shared dimensions and
# $-\kappa$ elsewhere, the gate a trained Hydra would want. Knobs:
# - **gate**: `open` (no gate), `sigmoid` (FastSSL's `BasicGate`), `gumbel` (a noisy sample, temperature $\tau_g$),
# - **κ**: how decided the gate is; at κ = 0 every $g_k = 1/2$;
# - **τ**: the loss temperature; **d**: the dimension (a small d makes the subspace budget visible),
# - **renormalise**: vitookit's cosine of the gated vectors instead of FastSSL's $g^2$-weighted dot product.
#
# Try: `open` versus `sigmoid` (the a-b and a-c histograms separate, the loss drops); κ = 0 with and without
# renormalise (FastSSL: a half-open gate just shrinks every similarity by $g^2 = 1/4$, i.e. it *raises the
# temperature* four-fold; vitookit: it changes nothing); `gumbel` with $\tau_g$ from 2 down to 0.3.

# %%
gate_panel = H.gate_panel(d=32, tau=0.1, kind="sigmoid", kappa=4.0)
assert gate_panel.state["open"] == 8                           # the 8 shared dimensions of 32
gate_panel

# %%
gated_loss = gate_panel.state["loss"]
gate_panel.controls["kind"].value = "open"
print(f"loss of the a-anchors: sigmoid gate {gated_loss:.3f}, open {gate_panel.state['loss']:.3f}")
assert gate_panel.state["loss"] > gated_loss and gate_panel.state["open"] == 32
gate_panel.controls["kind"].value = "sigmoid"

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 5. A real training run: digits, ten classes, 45 class pairs
#
# **Protocol** (the digits two-view kit of notebook 09). scikit-learn's digits, lossviz's stratified 50/50 split
# (898 train / 899 test images). Two random views per image (one-pixel shift, brightness ±20 %, 15 % of pixels
# dropped, noise 0.1). Network: encoder 64 → 128 → 128 (the representation $h$, after a ReLU) and projector
# 128 → 128 → $d = 32$, L2-normalised ($z$). The gate as in the paper (class embedding 512, MLP 1024). Loss from
# the first views (anchors) to the second views (keys), as FastSSL; learnable scale $s$ from $1/\tau = 10$. Adam
# (lr 1e-3, network, gate and scale together), batches of 128 images, 30 epochs (210 iterations). Class labels
# *are* used in training here: the method is pair-supervised.
#
# **Three runs per seed:** identical pairs without a gate (supervised contrast, the baseline), arbitrary pairs
# without a gate, arbitrary pairs with the gate; plus identical pairs *with* the gate on seed 0. We measure, on the
# test images, the **effective rank** of $h$,
#
# $$\mathrm{erank}(h) = \exp\Big(-\sum_k p_k\log p_k\Big), \qquad p_k = \frac{\sigma_k}{\sum_l\sigma_l}$$
#
# ($\sigma_k$ the singular values of the 899 × 128 matrix of test representations; 1 for a rank-1 matrix, 128 when
# every direction is used equally), the same for $z$ (at most 32), and the 5-NN accuracy in $z$.

# %% tags=["nbval-ignore-output"]
CONFIGS = {"identical, no gate": ("identical", False), "arbitrary, no gate": ("arbitrary", False),
           "arbitrary, gate": ("arbitrary", True)}
runs = {s: {name: H.train_hydra(mode, gate=on, seed=s) for name, (mode, on) in CONFIGS.items()} for s in SEEDS}
runs[0]["identical, gate"] = H.train_hydra("identical", gate=True, seed=0)
assert runs[0]["arbitrary, gate"] is gated                     # the run of section 3, from the cache

# %% tags=["nbval-ignore-output"]
print(f"{'':22s}" + "".join(f"seed {s}: erank(h) erank(z) 5-NN(z)   " for s in SEEDS))
for name in runs[0]:
    print(f"{name:22s}" + "".join(f"        {r.erank_h:5.1f}   {r.scores['erank_z']:5.1f}   {r.scores['knn_z']:.3f}    "
                                 for r in (runs[s][name] for s in SEEDS if name in runs[s])))
assert all(np.isfinite(r.history["loss"]).all() for rs in runs.values() for r in rs.values())
assert [len(runs[s]) for s in SEEDS] == [4] + [3] * (len(SEEDS) - 1)     # the rows of the table, every seed

# %% [markdown] slideshow={"slide_type": "subslide"}
# **During training** (seed 0). Left: the loss. Arbitrary pairs without a gate stay high: an anchor's partner class
# changes every batch, and in the full space no digit can be close to all of them and far from all the others at
# once. With the gate the loss falls almost as low as with identical pairs. Middle: the fraction of gate values above
# 1/2 (1 without a gate). Right: the learned scale $s$ (an inverse temperature); with the gate it grows past its
# start of 10.

# %% tags=["nbval-ignore-output"]
fig, axes = plots.new_figure(3, width=4.4, height=3.5)
for name, run in runs[0].items():
    h_, c_ = run.history, H.RUN_COLORS[name]
    axes[0, 0].plot(h_["iter"], h_["loss"], color=c_, lw=1, label=name)
    axes[0, 1].plot(h_["iter"], h_["open"], color=c_, lw=1.5)
    axes[0, 2].plot(h_["iter"], h_["scale"], color=c_, lw=1.5)
axes[0, 0].set(xlabel="iteration", ylabel="Hydra loss", title="training loss")
axes[0, 1].set(xlabel="iteration", ylabel="fraction of $g_k > 1/2$", title="open gate values", ylim=(0, 1.05))
axes[0, 2].set(xlabel="iteration", ylabel="$s = e^{\\mathrm{scale\\ logit}}$", title="learned scale s (1/τ)")
axes[0, 0].legend(loc="upper right", fontsize=9)
end = {name: run.history["loss"][-20:].mean() for name, run in runs[0].items()}
assert end["arbitrary, no gate"] > runs[0]["arbitrary, no gate"].history["loss"][:5].mean() - 0.2   # stays high
assert end["arbitrary, gate"] < min(end["arbitrary, no gate"] - 1, end["identical, no gate"] + 0.5)
assert all((r.history["open"] == 1).all() != r.params["gate"] for r in runs[0].values())      # 1 without a gate
assert all(r.history["scale"][-1] > 10 for r in runs[0].values() if r.params["gate"])
fig

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### The subspaces the gate opens
# Left: the paper's "class relationship" map, the number of the 32 dimensions that the gate of each class pair
# opens. Middle: the 45 gates of the pairs $a < b$ as rows (black = open): each pair keeps its own subset of
# dimensions. Right: all gate values of all pairs $a \ne b$: almost every value is near 0 or near 1, the bimodal
# shape the paper reports. The gate *decides*.

# %% tags=["nbval-ignore-output"]
fig, axes = plots.new_figure(3, width=4.7, height=4.3)
_ = H.open_dims_heatmap(axes[0, 0], gated.gates)
_ = H.gate_matrix(axes[0, 1], gated.gates)
_ = H.gate_histogram(axes[0, 2], gated.gates)
off, open_dims = ~np.eye(10, dtype=bool), (gated.gates > 0.5).sum(2)
assert ((gated.gates[off] > 0.1) & (gated.gates[off] < 0.9)).mean() < 0.15    # bimodal: the gate decides
assert open_dims[~off].mean() > open_dims[off].mean() and open_dims[off].mean() < 32 / 2   # (next cell)
fig

# %% [markdown] slideshow={"slide_type": "subslide"}
# The diagonal (a class paired with itself, about 1 pair in 10 under arbitrary sampling) opens the most dimensions;
# different-class pairs open fewer, well under half of them. Which classes share more? We compare the off-diagonal counts with the
# cosine similarity of the classes' mean *pixel* images, a model-free measure of how alike two digits look
# (Spearman rank correlation over the 45 pairs, per seed, with its p-value).

# %% tags=["nbval-ignore-output"]
x_tr, y_tr = data.load("digits").x_train, data.load("digits").y_train
means = torch.nn.functional.normalize(torch.stack([x_tr[y_tr == c].mean(0) for c in range(10)]), dim=1)
pixel_sim = (means @ means.T).numpy()
iu = np.triu_indices(10, k=1)
relation = {s: spearmanr((runs[s]["arbitrary, gate"].gates > 0.5).sum(2)[iu], pixel_sim[iu]) for s in SEEDS}
for s, r in relation.items():
    print(f"seed {s}: Spearman(open dimensions, pixel similarity) = {r.correlation:.2f} (p = {r.pvalue:.3f})")
assert all(r.correlation > 0 for r in relation.values())            # look-alike digits share more (section 6)

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Dimensional collapse.** The normalised singular values of $h$ (test), seed 0. Without the gate, arbitrary pairs
# squeeze the representation into fewer directions (the curve drops early); the gate brings it back to the
# identical-pair level. The gate does *not* raise the rank of identical-pair training: it undoes the collapse that
# arbitrary pairs cause.

# %% tags=["nbval-ignore-output"]
fig, axes = plots.new_figure(2, width=5.0, height=3.8)
_ = H.spectrum_plot(axes[0, 0], runs[0])
_ = H.spectrum_plot(axes[0, 1], runs[0], what="z_test", title="singular values of z (test)")
axes[0, 1].set_xlim(0, 33)
er = {name: run.erank_h for name, run in runs[0].items()}
collapse = er["identical, no gate"] - er["arbitrary, no gate"]
assert collapse > 3 and abs(er["arbitrary, gate"] - er["identical, no gate"]) < 0.25 * collapse   # undone
assert er["identical, gate"] < er["identical, no gate"] + 0.25 * collapse       # no rise for identical pairs
fig

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Train it yourself.** Pair mode, gate on or off, gate kind (sigmoid or Gumbel) and its temperature, the initial
# τ, the dimension $d$, epochs and seed; press *Train* (about 1 s without the gate, 3 s with it; a setting already
# trained comes back from the cache). In the spectrum, the thin lines are the seed-0 runs above and the dashed line
# is your run. Try `distinct`
# pairs with and without the gate, $d = 8$ (each pair now has only a few dimensions to spend), and a Gumbel gate at
# $\tau_g = 0.3$.

# %% tags=["nbval-ignore-output"]
train_panel = H.training_panel(reference_runs={n: runs[0][n] for n in CONFIGS})
assert train_panel.state["result"] is gated                     # the default setting comes from the cache
train_panel

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 6. The claim, checked
#
# **The paper's claim.** With gates, contrastive learning works with *arbitrary* pairs (ImageNet-1k's 500,500
# class pairs): it reaches superior accuracy, prevents dimensional collapse and discovers class relationships.
#
# **What we can check here**, on every seed:
# 1. *Dimensional collapse.* With arbitrary pairs, $\mathrm{erank}(h)$ with the gate is at least 3 above the run
#    without it.
# 2. *The subspace mechanism.* For a class pair (a, b), let $M_{abc}$ be the mean gated similarity between
#    class-a and class-c test images under the gate of (a, b) (`H.class_pair_alignment`). The gate should make the
#    partner the closest class: $M_{abb} > M_{abc}$ for every third class $c$. We count the share of the 90 ordered
#    pairs for which this holds, and ask for more than three quarters. Without a gate, $M_{abc}$ does not depend on
#    b, so exactly one partner per anchor class wins: a share of 1/9 by construction.
# 3. *Class relationships.* The number of dimensions a pair opens is positively rank-correlated with how alike the
#    two digits look, at the 5 % level (the table above).
#
# **What we do not claim.** *Superior accuracy*: see the 5-NN numbers below; at this scale arbitrary pairs with
# the gate end level with plain supervised contrast with identical pairs (within 0.02 on every seed): a tie.

# %% tags=["nbval-ignore-output"]
def subspace_share(run):
    margin = H.subspace_margin(H.class_pair_alignment(run.z_test, run.y_test, run.gates))
    return float((margin[~torch.eye(10, dtype=torch.bool)] > 0).float().mean())


claim = {s: dict(gap=runs[s]["arbitrary, gate"].erank_h - runs[s]["arbitrary, no gate"].erank_h,
                 share_gate=subspace_share(runs[s]["arbitrary, gate"]),
                 share_open=subspace_share(runs[s]["arbitrary, no gate"]),
                 knn=[runs[s][n].scores["knn_z"] for n in CONFIGS]) for s in SEEDS}
for s, c_ in claim.items():
    print(f"seed {s}: erank(h) gap {c_['gap']:+.1f} | partner is the closest class in {c_['share_gate']:.0%} of "
          f"pairs (no gate: {c_['share_open']:.0%}) | 5-NN(z) identical / arbitrary / arbitrary+gate "
          f"{' / '.join(f'{v:.3f}' for v in c_['knn'])}")
assert all(c_["share_gate"] > c_["share_open"] for c_ in claim.values())     # the gate's subspaces do something

# %%
for s in SEEDS:
    assert claim[s]["gap"] >= 3                                 # 1. the gate prevents the collapse
    assert claim[s]["share_gate"] > 0.75                        # 2. the partner is the closest class under g_ab
    assert abs(claim[s]["share_open"] - 1 / 9) < 1e-9           #    (1/9 without a gate, by construction)
    assert relation[s].correlation > 0 and relation[s].pvalue < 0.05    # 3. class relationships
    ident, no_gate, gate = (runs[s][n] for n in CONFIGS)                # what the next cell says:
    assert claim[s]["gap"] > 10 and no_gate.erank_h < 0.7 * ident.erank_h and claim[s]["share_gate"] > 0.9
    z = [r.scores["erank_z"] for r in (ident, no_gate, gate)]           # z collapses, the gate restores h and z
    assert z[1] < min(5, 0.25 * z[0]) and abs(z[2] - z[0]) < 0.25 * (z[0] - z[1])
    assert abs(gate.erank_h - ident.erank_h) < 0.25 * claim[s]["gap"]
    knn = [r.scores["knn_z"] for r in (ident, no_gate, gate)]          # accuracy recovered, a tie with identical
    assert knn[2] > knn[1] + 0.03 and abs(knn[2] - knn[0]) < 0.02

# %% [markdown] slideshow={"slide_type": "subslide"}
# **What holds, what does not.**
# - *Dimensional collapse* shows clearly: without the gate, arbitrary pairs lose a large part of the effective rank
#   of $h$ (more than 30 %) and almost all of $z$'s (the projection collapses to a handful of directions); the gate
#   restores both to the level of identical pairs. The gap is far larger than the threshold of 3 (over 10), on
#   every seed.
# - *The subspace mechanism* holds for almost every pair: under the gate of (a, b), class a is closer to b than to
#   any third class for nearly all of the 90 ordered pairs, against 1 in 9 without a gate.
# - *Class relationships* show as a moderate correlation: pairs of digits that look alike get more shared dimensions.
#   The map also varies between seeds, so read single cells of the heat-map with care.
# - *Accuracy*: arbitrary pairs with the gate recover the 5-NN accuracy that arbitrary pairs lose without it, to
#   within 0.02 of identical pairs (ordinary supervised contrast) on every seed: a tie at this scale.
#   Digits is too easy and too small to test "superior accuracy", which the paper measures on ImageNet with
#   linear probes.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 7. Pitfalls
#
# **Forgetting to exclude the partner class from the negatives.** Then each positive is also a negative in the
# *other* positives' denominators, and the loss fights itself: the net weight on the positives shrinks, and on the
# batch of section 3 some positives are even pushed away. Below, the same batch with only the own class excluded.

# %% tags=["nbval-ignore-output"]
pos_, allowed_ = H.hydra_masks(b["y1"], b["y2"])
wrong_allowed = b["y1"][:, None] != b["y1"][None, :]             # the partner class is left among the negatives
leaf = b["S"].clone().requires_grad_(True)
ell_ = leaf / b["tau"]                                           # hydra_loss's lines, with the wrong negatives
lse_ = masked_logsumexp(ell_, wrong_allowed, keepdim=True)
(torch.where(pos_, torch.logaddexp(ell_, lse_) - ell_, 0.0).sum(1) / pos_.sum(1)).mean().backward()
right_pull = -W_gate[pos_].sum() * b["tau"] * len(b["y1"])      # in units of tau |A|
wrong_net = -leaf.grad[pos_].sum() * b["tau"] * len(b["y1"])
print(f"net pull on the positives: right masks {float(right_pull):.2f}, partner not excluded {float(wrong_net):.2f}; "
      f"positives pushed away: {int((leaf.grad[pos_] > 0).sum())} of {n_pos}")
assert wrong_net < right_pull and (leaf.grad[pos_] > 0).any()          # smaller net pull; some positives pushed

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Overflow in the official arithmetic.** FastSSL computes `exp(logits)` after subtracting the row mean. With a
# learnable scale that grows (our gated runs end above their start of 10; nothing bounds it), a float32 logit above
# about 88 overflows. lossviz's log-sum-exp is safe at any scale:

# %% tags=["nbval-ignore-output"]
S32 = b["S"].float() / b["S"].abs().max()                        # similarities in [-1, 1]
for s_ in (10, 100, 300):
    print(f"s = {s_:3d}: FastSSL arithmetic {float(fastssl_recipe(S32, b['y1'], b['y2'], 1 / s_)):>8.3f} | "
          f"lossviz {float(H.hydra_loss(S32, b['y1'], partner=b['y2'], tau=1 / s_)):.3f}")
assert not math.isfinite(fastssl_recipe(S32, b["y1"], b["y2"], 1 / 300)) and math.isfinite(
    H.hydra_loss(S32, b["y1"], partner=b["y2"], tau=1 / 300))

# %% [markdown] slideshow={"slide_type": "subslide"}
# **More traps.**
# - *Detached or attached mean subtraction* (FastSSL detaches the row mean, vitookit does not) makes no difference
#   at all, to the value or to the gradient: the loss is invariant to adding a constant to a row, so the gradient
#   through the mean is exactly zero. The tests check it to 1e-10. It only matters for overflow (above).
# - *Two logit definitions.* FastSSL's $\langle z1 \odot g^2, z2\rangle$ shrinks similarities when few dimensions are
#   open, which acts like a higher temperature (the learned scale partly compensates); vitookit's renormalised cosine
#   does not. They train differently; we follow FastSSL. (`train_hydra(renormalize=True)` runs the other; it is
#   several times slower on CPU, because every anchor has its own gated copy of the keys.)
# - *The Gumbel gate* of the official code adds a single Gumbel noise $G$ (mean 0.577), not the logistic noise
#   $G_1 - G_2$ of a binary relaxation, so at logit 0 its gate is open about 60 % of the time, not 50 %:

# %%
sample = H.gate_values(torch.zeros(100_000), "gumbel", generator=torch.Generator().manual_seed(0))
print(f"mean Gumbel gate value at logit 0: {float(sample.mean()):.3f}")
assert 0.57 < float(sample.mean()) < 0.63

# %% [markdown] slideshow={"slide_type": "subslide"}
# - *BatchNorm inside the gate* needs batches that hold many class pairs: its statistics are taken over the
#   batch's pairs. Below about 16 images per batch the gate becomes noisy; at test time the running statistics are
#   used (`FeatureGate.table()` switches to eval mode).
# - *kNN on digits saturates* (raw pixels reach about 0.98): use the effective rank and the gate maps as evidence.
# - *Effective rank depends on centring*: a shared offset in $h$ (ReLU features are all positive) adds one strong
#   direction; `lv.metrics.effective_rank(h, center=True)` removes it. Compare runs with the same convention.
# - *Labels*: unlike SimCLR, Hydra needs class labels for every training image (it is pair-*supervised*); a batch in
#   which no key belongs to any partner class has nothing to pull and is refused:

# %%
try:
    H.hydra_loss(S, torch.zeros(16, dtype=torch.long), partner=torch.ones(16, dtype=torch.long))
except ValueError as err:
    print("ValueError:", err)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 8. Exercises
# 1. **Distinct pairs.** In the training panel choose `distinct` (the partner is never the same class). Is the
#    collapse without a gate worse or milder than with `arbitrary`? What does the diagonal of the map look like now?
#    *Hint:* a pair $(a, a)$ never occurs in training; compare `run.gates[a, a]` with the off-diagonal gates.
# 2. **The subspace budget.** Train with $d = 8$ and $d = 64$. How many dimensions does a typical pair open, as a
#    fraction of $d$? Does the subspace claim (section 6) still hold at $d = 8$? *Hint:* `subspace_share(run)`.
# 3. **Renormalise.** Run `H.train_hydra("arbitrary", gate=True, renormalize=True)` (vitookit's logits, about 10 s).
#    Compare the gate histogram and the effective rank with FastSSL's. *Hint:* `H.gate_histogram`.
# 4. **Which pairs share?** Find the pair with the most open dimensions (off the diagonal) and look at the two
#    mean digit images. Does the pair stay on top for another seed? *Hint:* `np.unravel_index` on the counts.
#
# ## 9. Summary
# - Hydra pairs each anchor with all samples of a random partner class and compares them only in the subspace a
#   learned, per-pair gate opens: $S^g = \langle z1 \odot g^2, z2\rangle$, then NT-Xent's rule with the partner
#   class as positives and neither the own nor the partner class as negatives.
# - The gate changes the similarity, not the weighting: per anchor the pull equals the push, hard negatives get the
#   most push, excluded classes get none.
# - On digits, arbitrary pairs without a gate collapse the representation (a much lower effective rank of $h$, a
#   $z$ of a handful of directions); the gate restores it, its values become bimodal, under each pair's gate the
#   partner becomes the closest class for almost every pair, and look-alike digits share more dimensions. Accuracy
#   matches plain supervised contrast at this scale, no better.
#
# **References.** Wu, Atito, Feng, Mo, Kittler, Awais, *Rethinking Positive Pairs in Contrastive Learning*,
# arXiv:2410.18200, 2024. Chen, Kornblith, Norouzi, Hinton, *A Simple Framework for Contrastive Learning of Visual
# Representations* (SimCLR), ICML 2020. Khosla et al., *Supervised Contrastive Learning*, NeurIPS 2020. Jing,
# Vincent, LeCun, Tian, *Understanding Dimensional Collapse in Contrastive Self-supervised Learning*, ICLR 2022.
# Roy, Vetterli, *The effective rank: a measure of effective dimensionality*, EUSIPCO 2007. Garrido, Balestriero,
# Najman, LeCun, *RankMe*, ICML 2023. Jang, Gu, Poole, *Categorical Reparameterization with Gumbel-Softmax*, ICLR
# 2017. Wang & Liu, *Understanding the Behaviour of Contrastive Loss*, CVPR 2021 (notebook 09).
