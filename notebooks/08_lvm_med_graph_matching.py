# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 08 — LVM-Med: self-supervised learning by second-order graph matching
#
# **Paper.** Duy M. H. Nguyen, Hoang Nguyen, Nghiem T. Diep, Tan N. Pham, Tri Cao, Binh T. Nguyen, Paul Swoboda,
# Nhat Ho, Shadi Albarqouni, Pengtao Xie, Daniel Sonntag, Mathias Niepert.
# *LVM-Med: Learning Large-Scale Self-Supervised Vision Models for Medical Imaging via Second-order Graph Matching.*
# NeurIPS 2023. [arXiv:2306.11925](https://arxiv.org/abs/2306.11925) ·
# official code: [duyhominhnguyen/LVM-Med](https://github.com/duyhominhnguyen/LVM-Med) (non-commercial licence;
# it holds the fine-tuning code and the weights, **not** the graph-matching pre-training, which is not public).
# The backward pass builds on Vlastelica, Paulus, Musil, Martius, Rolínek, *Differentiation of Blackbox
# Combinatorial Solvers*, ICLR 2020.
#
# **The story.** Self-supervised learning trains an encoder without labels: show it two random augmentations
# ("views") of each image and ask it to recognise which views belong together. SimCLR's InfoNCE loss does this
# pair by pair: view 1 of image $n$ should be more similar to view 2 of image $n$ than to any other view.
# LVM-Med asks for more *structure*. It turns each batch of views into a **graph** (every image linked to its
# nearest neighbours) and requires that the correct correspondence — view 1 of image $n$ ↔ view 2 of image $n$ —
# be the **solution of a graph-matching problem** that scores both nodes (are two views alike?) and edges (are
# their neighbourhoods alike?). The loss counts how many images the *solver* matches wrongly. That raises a
# question every student should be able to answer after this notebook: **how do you back-propagate through a
# combinatorial solver whose output is a permutation?** And, in the language of notebook 01: **which pairs does
# such a loss weight, compared with InfoNCE?**
#
# **A warning before we start.** The pre-training code is not public and we reconstruct the loss from the
# paper's abstract, its Figure 2 and the black-box method it builds on. Every formula below is marked
# **(reconstructed - verify against the paper)**. This notebook is about the *mechanism* — a matching loss and
# its black-box gradient — in miniature, not a reproduction of LVM-Med.

# %% [markdown]
# ## Setup
#
# One cell: imports, seeds, one torch thread, and the `FAST` switch (`LOSSVIZ_FAST=1` shortens training).

# %%
import inspect
import itertools

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

import lossviz as lv
from lossviz.papers import lvm_med as gm
from lossviz import plots
from lossviz import train as T

FAST = T.setup(seed=0)
ITERS = 400 if FAST else 600
print("lossviz", lv.__version__, "| torch", torch.__version__, "| FAST =", FAST)

# %% [markdown]
# ## 1. The idea and the math
#
# ### The baseline: SimCLR's InfoNCE
# A batch of $N$ images, two augmentations each, gives unit embeddings $z^s_i$ (view 1) and $z^t_i$ (view 2).
# Stack the $2N$ views; each view $a$ has one positive $p(a)$, the other view of its image. NT-Xent is
#
# $$L_{\text{InfoNCE}} = \frac{1}{2N}\sum_{a=1}^{2N} -\log\frac{e^{\langle z_a, z_{p(a)}\rangle/\tau}}{\sum_{m\neq a} e^{\langle z_a, z_m\rangle/\tau}} .$$
#
# Its pair weights (notebook 01's General Pair Weighting) are a softmax: *every* negative gets some push,
# the hard ones most, and no weight is ever exactly zero.
#
# ### LVM-Med: the correspondence as the solution of a matching problem — (reconstructed - verify against the paper)
#
# **Graphs.** Each view of the batch is a graph over the $N$ images. Node $i$ links to its $k$ nearest
# neighbours $\mathrm{kNN}(i)$, with softmax edge weights at temperature $\tau_g$ (reconstructed - verify against the paper):
#
# $$A_{ii'} = \frac{e^{\cos(z_i, z_{i'})/\tau_g}}{\sum_{i''\in \mathrm{kNN}(i)} e^{\cos(z_i, z_{i''})/\tau_g}}\quad (i'\in\mathrm{kNN}(i)),\qquad A_{ii'} = 0 \text{ otherwise.}$$
#
# **Affinities** (reconstructed - verify against the paper). First order, between nodes:
# $c^v_{ij} = \cos(z^s_i, z^t_j)$, the matrix $C_v = Z_s Z_t^\top$. Second order, between an edge $(i,i')$ of view 1
# and an edge $(j,j')$ of view 2: $c^e_{(ii'),(jj')} = A^s_{ii'}A^t_{jj'}$.
#
# **The matching problem** (reconstructed - verify against the paper). Over $N\times N$ permutation matrices $v$
# ($v_{ij}=1$: view-1 image $i$ is matched to view-2 image $j$), the Lawler quadratic assignment problem
#
# $$\hat v = \arg\max_{v}\ \sum_{ij} c^v_{ij} v_{ij} + \beta \sum_{ii'jj'} c^e_{(ii'),(jj')}\, v_{ij} v_{i'j'} .$$
#
# It is NP-hard; the paper uses a dedicated solver we do not have. We keep a **second-order proxy**: replace
# $v_{i'j'}$ in the quadratic term by the soft matching $c^v_{i'j'}$. What remains is linear in $v$,
#
# $$C = C_v + \beta\, A_s C_v A_t^\top = Z_sZ_t^\top + \beta\,(A_sZ_s)(A_tZ_t)^\top,\qquad \hat v(C) = \arg\max_v \langle C, v\rangle ,$$
#
# a linear assignment that the Hungarian algorithm solves exactly. Read $C_{ij}$ as "are views $i$ and $j$
# alike, *and are their neighbourhoods alike*": $A z$ is one round of message passing. **This is a proxy for the
# QAP, not the QAP.** With $\beta = 0$ (GM-1st) there is no graph at all.
#
# **The loss** (reconstructed - verify against the paper): the Hamming distance of the solver's matching to the
# identity,
#
# $$L(\hat v) = \sum_{ij} \hat v_{ij}(1-\delta_{ij}) + (1-\hat v_{ij})\,\delta_{ij} = 2 \times \#\{\text{wrongly matched images}\},
# \qquad \frac{\partial L}{\partial v} = \mathbf 1 - 2I .$$
#
# ### Back-propagating through the solver (Vlastelica et al. 2020) — (reconstructed - verify against the paper)
# $\hat v(C)$ is piecewise constant in $C$: a small change of $C$ changes nothing, so the true gradient is zero
# almost everywhere, and infinite where the solution jumps. The **black-box gradient** asks the solver a second
# question — *what would you answer if the costs were pushed towards a lower loss?* — and returns the difference
# (written for a maximising solver):
#
# $$\frac{\partial L}{\partial C} := \frac{1}{\lambda}\Big[\hat v(C) - \hat v\big(C - \lambda\,\tfrac{\partial L}{\partial v}\big)\Big]
#  = \frac{1}{\lambda}\Big[\hat v(C) - \hat v(C + 2\lambda I)\Big] .$$
#
# The constant part $-\lambda\mathbf 1$ of the push adds $-\lambda N$ to every permutation's score and drops out:
# the perturbed problem simply adds $2\lambda$ to every correct affinity $C_{ii}$. A descent step lowers the wrong
# entries the solver picked and raises the entries the perturbed solver picks instead.
#
# It is not an approximation of a gradient that does not exist: it is the **exact** gradient of a
# piecewise-*linear* interpolation of the loss, with $v_\lambda = \hat v(C + 2\lambda I)$,
#
# $$f_\lambda(C) = L(v_\lambda) + \tfrac{1}{\lambda}\langle C,\ \hat v(C) - v_\lambda\rangle
#   = N + \frac{M(C) - M\big(C - \lambda(\mathbf 1 - 2I)\big)}{\lambda},\qquad M(C) = \max_v\langle C, v\rangle ,$$
#
# the second form holding for any loss linear in $v$, like the Hamming loss. $L(v_\lambda) \le f_\lambda(C) \le L(\hat v(C))$ and
# $f_\lambda \to L$ as $\lambda\to 0$: $\lambda$ sets how far the interpolation looks ahead.
#
# ### The pair-weighting view
# $C$ plays the role of the similarity matrix $S$ of notebook 01, so `lv.pair_weights` reads $\partial L/\partial C_{ij}$
# for both losses. For the matching loss:
# - every entry is $-1/\lambda$, $0$ or $+1/\lambda$; each row and column sums to 0, with at most two non-zeros per row;
# - it is **exactly zero once $\hat v(C) = I$, whatever the margin** — unlike InfoNCE, it acts only on mistakes;
# - once $\lambda$ exceeds half the range of $C$, the perturbed solution is always $I$ (adding $2\lambda$ to the
#   diagonal beats any other gain), and the gradient is $(\hat v - I)/\lambda$: a **perceptron update** that pushes
#   down each wrong pick and pulls up the correct partner of each wrongly matched image.

# %% [markdown]
# ## 2. From formula to code
#
# The loss reads as the formula: `hamming_loss` is the Hamming distance of a matching to the target, and
# `gm_loss` is that distance for the matching that `gm.match(C)` returns.

# %%
print(inspect.getsource(gm.hamming_loss))
print(inspect.getsource(gm.gm_loss))

# %% [markdown]
# The black-box rule lives in the solver. `gm.match` wraps it in a `torch.autograd.Function`: the forward pass
# calls the Hungarian algorithm (`scipy.optimize.linear_sum_assignment`) on a detached copy of $C$, and the
# backward pass calls it once more on the perturbed costs $C - \lambda\,\partial L/\partial v$ and returns
# $[\hat v(C) - \hat v_\lambda]/\lambda$, the formula of §1 line for line.

# %%
print(inspect.getsource(gm.BlackBoxMatching))

# %% [markdown]
# A batch to work with: 16 held-out MNIST-1D signals, two augmentations each, through an untrained encoder
# (MLP 40 → 256 → 64) and projector (64 → 32, L2-normalised). We build $C$ with the second-order proxy
# ($\beta = 0.5$, $k = 3$ neighbours), back-propagate `gm.gm_loss`, and check `C.grad` against the formula
# written from scratch with scipy.

# %%
def hungarian(C):                                        # the solver, straight from scipy
    v = np.zeros(C.shape)
    v[linear_sum_assignment(C, maximize=True)] = 1
    return v


z_s, z_t = gm.view_batch(16)
LAM, BETA, K = 5.0, 0.5, 3
C = gm.affinity(z_s, z_t, beta=BETA, k=K).detach().requires_grad_(True)
loss = gm.gm_loss(C, lam=LAM)
loss.backward()
Cn = C.detach().numpy()
by_hand = (hungarian(Cn) - hungarian(Cn + 2 * LAM * np.eye(16))) / LAM
print(f"loss = {float(loss.detach()):.0f}, i.e. {int(loss.detach()) // 2} of 16 images matched wrongly")
assert np.array_equal(C.grad.numpy(), by_hand)

# %% [markdown]
# The Hungarian algorithm is exact: on the first 7 images it finds the best of all $7! = 5040$ permutations.
# And the black-box gradient is the exact gradient of the interpolation $f_\lambda$: a central finite difference
# of `gm.interpolated_loss` along a random direction $D$ equals $\langle \partial L/\partial C, D\rangle$.

# %%
C7 = Cn[:7, :7]
best = max(itertools.permutations(range(7)), key=lambda p: C7[range(7), p].sum())
assert np.array_equal(hungarian(C7), np.eye(7)[list(best)])

D = torch.randn(16, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
eps = 1e-6
fd = (gm.interpolated_loss(C.detach() + eps * D, lam=LAM) - gm.interpolated_loss(C.detach() - eps * D, lam=LAM)) / (2 * eps)
print(f"finite difference of f_λ: {float(fd):+.6f}   <dL/dC, D>: {float((C.grad * D).sum()):+.6f}")
assert abs(float(fd) - float((C.grad * D).sum())) < 1e-6

# %% [markdown]
# The baseline reuses `lv.nt_xent_loss`: `gm.nt_xent_views` assembles the $2N\times 2N$ similarity matrix from its
# blocks $[[Z_sZ_s^\top, C], [C^\top, Z_tZ_t^\top]]$ with labels $(0..N-1, 0..N-1)$. It agrees with
# pytorch-metric-learning's `NTXentLoss` on the same views (`tests/test_lvm_med.py` also compares gradients).

# %%
from pytorch_metric_learning.losses import NTXentLoss

ours = gm.nt_xent_views(z_s @ z_t.T, z_s @ z_s.T, z_t @ z_t.T, tau=0.2)
pml = NTXentLoss(temperature=0.2)(torch.cat([z_s, z_t]), torch.arange(16).repeat(2))
assert abs(float(ours) - float(pml)) < 1e-10                 # the same float64 views: agreement to round-off
print(f"lossviz {float(ours):.4f}   pytorch-metric-learning {float(pml):.4f}   "
      f"|difference| < 1e-10: {abs(float(ours) - float(pml)) < 1e-10}")

# %% [markdown]
# ## 3. Weights as pictures
#
# ### The two graphs and the solver's matching
# Both views of the batch, projected on the same two principal axes: view 1 (circles) on the left, view 2
# (squares) on the right, each with its $k$-NN edges in grey. A line joins each view-1 image to the view-2 image
# the solver matched it to: **blue** when it is its own other view (a positive pair), **vermillion** when it
# is another image (a negative pair). Left: first-order matching ($\beta = 0$); right: the second-order proxy at
# its strongest, $\beta = 1$.

# %%
A_s, A_t = gm.neighbourhood(z_s, k=K), gm.neighbourhood(z_t, k=K)
v_first, v_second = gm.solve_matching(gm.node_affinity(z_s, z_t)), gm.solve_matching(gm.affinity(z_s, z_t, beta=1.0, k=K))
fig, axes = plots.new_figure(2, width=6.2, height=5.2)
gm.draw_matching(axes[0, 0], z_s, z_t, v_first, A_s=A_s, A_t=A_t, title="first-order matching (β = 0)")
gm.draw_matching(axes[0, 1], z_s, z_t, v_second, A_s=A_s, A_t=A_t, title=f"second-order proxy (β = 1, k = {K})")
print(f"images matched differently by the two: {int((v_first != v_second).any(1).sum())} of 16")
fig

# %% [markdown]
# On this untrained network the neighbourhood term moves a few matches, and not for the better: the
# neighbourhoods of a random network are as noisy as its nodes. (At $\beta = 0.5$, the value we train with, it
# moves none on this batch; try it in the panel of §4.)

# %% [markdown]
# ### Which pairs get weight: matching loss vs InfoNCE
# The signed weights $\partial L/\partial C_{ij}$ on this batch (rows: view-1 images, columns: view-2 images,
# the correct pairs on the outlined diagonal). Blue pulls a pair together, vermillion pushes it apart.

# %%
y16 = torch.arange(16)                                   # row i should be matched to column i
W_gm = lv.pair_weights(gm.gm_loss, C, y16, signed=True, lam=LAM)
S_s, S_t = z_s @ z_s.T, z_t @ z_t.T
W_nce = lv.pair_weights(lambda C_, _y: gm.nt_xent_views(C_, S_s, S_t, tau=0.2), C, y16, signed=True)
fig, axes = plots.new_figure(2, width=5.0, height=4.3)
gm.grad_heatmap(axes[0, 0], W_gm, f"GM, black-box (λ = {LAM:g}): {int((W_gm != 0).sum())} non-zero")
gm.grad_heatmap(axes[0, 1], W_nce, f"InfoNCE (τ = 0.2): {int((W_nce != 0).sum())} non-zero")
fig

# %% [markdown]
# InfoNCE weights all $16^2$ pairs: a pull on every diagonal entry, a softmax push on every other one.
# The matching loss touches only the rows the solver got wrong: $+1/\lambda$ on the wrong pick, $-1/\lambda$ on
# the correct partner. At $\lambda = 5$, larger than half the range of $C$, it is exactly the perceptron update
# $(\hat v - I)/\lambda$:

# %%
v_hat = gm.solve_matching(C.detach())
print(f"range of C: {float(C.detach().max() - C.detach().min()):.3f}  (< 2λ = {2 * LAM:g})")
assert torch.equal(W_gm, (v_hat - torch.eye(16, dtype=torch.float64)) / LAM)
assert bool((W_nce.diagonal() < 0).all()) and bool((W_nce[~torch.eye(16, dtype=torch.bool)] > 0).all())

# %% [markdown]
# ### The gradient as λ varies
# Left: move along $C + tI$ (add $t$ to every correct affinity). The true loss (black) is a staircase: flat, with
# no gradient, then jumps. The interpolation $f_\lambda$ whose gradient the backward pass returns is continuous
# and piecewise linear, below the staircase; a larger λ looks further ahead. Right: the number of non-zero
# entries of $\partial L/\partial C$ on our batch. For tiny λ the perturbed solver gives the same answer and the
# gradient vanishes; from about half the range of $C$ on, it is the perceptron update, with $2\times$(wrong rows) entries.

# %%
lams = [0.05, 0.2, 1.0]
curves = gm.staircase(C, lams)
lam_grid = np.logspace(-2.5, 1.3, 40)
nnz = [int((lv.pair_weights(gm.gm_loss, C, y16, signed=True, lam=float(l)) != 0).sum()) for l in lam_grid]
fig, axes = plots.new_figure(2, width=5.0, height=3.8)
axes[0, 0].plot(curves["t"], curves["L"], color="black", lw=2, label="true loss L(v(C + tI))")
for lam, color in zip(lams, ["#56B4E9", "#009E73", "#5D3A9B"]):
    axes[0, 0].plot(curves["t"], curves[lam], color=color, label=f"f_λ, λ = {lam:g}")
axes[0, 0].set(xlabel="t, added to every correct affinity", ylabel="Hamming loss (entries)", title="the staircase and its interpolations")
axes[0, 0].legend()
axes[0, 1].semilogx(lam_grid, nnz, marker=".", color=gm.COLORS["gm_2nd"])
axes[0, 1].axhline(2 * (16 - int(v_hat.diagonal().sum())), color=plots.MUTED, ls="--", label="2 × wrong rows")
axes[0, 1].set(xlabel="λ", ylabel="non-zero entries of dL/dC", title="how much the black-box gradient sees")
axes[0, 1].legend()
fig

# %% [markdown]
# ### The structure, checked on 2000 random problems
# Random $C$ of sizes 3 to 8, random λ in $[0.05, 10]$, some with a boosted diagonal so that the solver is often
# right. We count violations of each property of §1 (all must be 0).

# %%
g = torch.Generator().manual_seed(0)
bad = dict(values=0, row_col_sums=0, over_2_per_row=0, nonzero_when_right=0, diagonal_lowered=0)
n_right = 0
for trial in range(2000):
    n, lam = 3 + trial % 6, float(torch.empty(1).uniform_(0.05, 10, generator=g))
    Cr = torch.rand(n, n, generator=g, dtype=torch.float64) * 2 - 1 + (trial % 3) * torch.eye(n, dtype=torch.float64)
    Wr = lv.pair_weights(gm.gm_loss, Cr, torch.arange(n), signed=True, lam=lam)
    bad["values"] += int(not set((Wr * lam).round(decimals=9).unique().tolist()) <= {-1.0, 0.0, 1.0})
    bad["row_col_sums"] += int(Wr.sum(0).abs().max() > 1e-9 or Wr.sum(1).abs().max() > 1e-9)
    bad["over_2_per_row"] += int((Wr != 0).sum(1).max() > 2)
    right = gm.matching_accuracy(Cr) == 1.0
    n_right += right
    bad["nonzero_when_right"] += int(right and bool(Wr.any()))
    bad["diagonal_lowered"] += int(float(Wr.diagonal().sum()) > 0)      # a descent step never lowers sum_i C_ii
print(f"{n_right} of 2000 problems already solved correctly; violations: {bad}")
assert sum(bad.values()) == 0 and 0 < n_right < 2000

# %% [markdown]
# ## 4. Explore
#
# The panels here are built on `lossviz.widgets`: moving a control redraws the figure in place,
# and a Train button runs a real training run, cached by its settings.
#
# **The pure maths, live.** λ (interpolation), β (weight of the second-order proxy), $k$ (neighbours per node) and
# InfoNCE's temperature τ, on the batch above. Top: the graphs with the solver's matching, and the matching loss's
# weights. Bottom: InfoNCE's weights, and the staircase with $f_\lambda$. Try λ from 0.05 to 1 (when does the
# gradient appear?), β = 1 with $k$ = 1 and 8 (does the neighbourhood fix or break matches?), and τ = 0.05 vs 1
# (InfoNCE's weights concentrate on the hardest negatives, but never vanish).

# %%
panel = gm.matching_panel(z_s, z_t, lam=LAM, beta=BETA, k=K, tau=0.2)
assert panel.state["nnz"] == int((W_gm != 0).sum())
panel

# %% [markdown]
# The panel is an ordinary object: setting a control redraws it.

# %%
panel.controls["lam"].value = 0.05
small = panel.state["nnz"]
panel.controls["lam"].value = LAM
print(f"non-zero gradient entries: {small} at λ = 0.05, {panel.state['nnz']} at λ = {LAM:g}")
assert small < panel.state["nnz"] and torch.equal(panel.state["W_gm"], W_gm)

# %% [markdown]
# ## 5. A real training run
# **Protocol.** MNIST-1D (4000 training signals of length 40, generated locally; labels never used in training).
# Encoder MLP 40 → 256 → 64, projector ReLU + Linear 64 → 32, L2-normalised. Each step draws 64 signals and two
# views each (`lossviz.augment`: circular shift up to ±4 samples, amplitude ×[0.8, 1.2], a random linear trend,
# Gaussian noise 0.1), then one Adam step (lr 1e-3); 600 steps, seeds 0 and 1. Three losses:
# - **InfoNCE** (NT-Xent, τ = 0.2) — the first-order contrastive baseline;
# - **GM-1st**: the matching loss on $C = C_v$, black-box gradient, λ = 5;
# - **GM-2nd proxy**: the matching loss on $C = C_v + 0.5\,A_sC_vA_t^\top$ ($k$ = 5, $\tau_g$ = 0.1), λ = 5.
#
# **Evaluation**, every 50 steps: *held-out view matching* — the Hungarian solver on first-order cosines of 64
# held-out images × 2 views, the fraction matched correctly, averaged over 10 fixed batches (chance: 1/64) — and
# *5-NN accuracy* of the frozen 64-d encoder features (1000 test signals, the 4000 training signals as the gallery).

# %% tags=["nbval-ignore-output"]
SEEDS = (0, 1)
runs = {(loss, seed): gm.train_graph_matching(loss, iters=ITERS, seed=seed) for loss in gm.LOSSES for seed in SEEDS}
print(f"{'':22s} {'view matching':>22s} {'5-NN accuracy':>22s}   ms/step")
for (loss, seed), r in runs.items():
    e = r.evals
    print(f"{gm.NAMES[loss] + f', seed {seed}':22s} {e['view_match'][0]:9.3f} -> {e['view_match'][-1]:.3f}"
          f" {e['knn'][0]:12.3f} -> {e['knn'][-1]:.3f}   {1000 * r.seconds / ITERS:5.1f}")
assert all(r.evals["view_match"][-1] > r.evals["view_match"][0] + 0.15 for r in runs.values())  # all learn

# %% [markdown]
# Left: held-out view matching. Middle: 5-NN accuracy of the encoder. Right: the number of non-zero entries of
# $\partial L/\partial C$ per step, out of $64^2 = 4096$ (log scale; solid: seed 0, dashed: seed 1).

# %% tags=["nbval-ignore-output"]
fig, axes = plots.new_figure(3, width=4.6, height=3.8)
gm.plot_runs(axes[0], {f"{gm.NAMES[loss]}, seed {seed}": r for (loss, seed), r in runs.items()})
nnz_gm = {(loss, s): runs[loss, s].history["nnz"] for loss in ("gm_1st", "gm_2nd") for s in SEEDS}
assert all(len(ax.lines) == len(runs) for ax in axes[0])
assert all(h[-50:].mean() < 0.75 * h[:50].mean() for h in nnz_gm.values())  # the gradient shrinks with the mistakes
fig

# %% [markdown]
# InfoNCE's gradient stays dense (all 4096 entries, every step). The matching losses' gradient lives on the
# mistakes only — $2\times$(wrong rows), far below 4096 — and shrinks as the matching improves (asserted). Which
# loss matches held-out views best, and how fast, is the left panel; §6 prints the paired verdict. The 5-NN
# accuracy of the encoder (middle) is another matter: with augmentations this strong, a self-supervised loss need
# not help the class; §6 prints each loss's change per seed.
#
# **The matching, before and after.** The 16 held-out images of §3, first-order matching, through the untrained
# network and through the networks trained with GM-1st and with InfoNCE (seed 0).

# %% tags=["nbval-ignore-output"]
fig, axes = plots.new_figure(3, width=5.0, height=4.6)
right = {}
for ax, (title, run) in zip(axes[0], [("untrained", None), ("after GM-1st", runs["gm_1st", 0]),
                                      ("after InfoNCE", runs["infonce", 0])]):
    zs_, zt_ = gm.view_batch(16, run=run)
    right[title] = round(16 * gm.matching_accuracy(gm.node_affinity(zs_, zt_)))
    gm.draw_matching(ax, zs_, zt_, gm.solve_matching(gm.node_affinity(zs_, zt_)), A_s=gm.neighbourhood(zs_, k=K),
                     A_t=gm.neighbourhood(zt_, k=K), title=f"{title}: {right[title]} of 16 right")
assert right["after GM-1st"] > right["untrained"] and right["after InfoNCE"] > right["untrained"]
fig

# %% [markdown]
# **Train it yourself.** Pick a loss, λ, β, τ, the seed, and the I-MLE noise (perturb-and-MAP, Niepert et al.
# 2021: both solver calls see the same Gumbel noise on $C$), and press *Train* (about 3 s for 600 steps; a setting
# already trained, such as the ones above, is shown at once from the cache).

# %% tags=["nbval-ignore-output"]
train_panel = gm.training_panel(iters=ITERS)
assert train_panel.state["result"] is runs["gm_1st", 0]          # the default setting: from the cache
train_panel

# %% [markdown]
# An example: GM-1st with I-MLE noise 0.05 at λ = 1.

# %% tags=["nbval-ignore-output"]
train_panel.controls["lam"].value = 1.0
train_panel.controls["noise"].value = 0.05
imle = train_panel.train()
print(imle)
print("held-out view matching after training: " + ", ".join(
    f"{name} {r.evals['view_match'][-1]:.3f}" for name, r in (("I-MLE run", imle), ("GM-1st (λ = 5, no noise)",
    runs["gm_1st", 0]), ("InfoNCE", runs["infonce", 0]))) + " (seed 0)")
assert imle.params["noise"] == 0.05 and train_panel.state["result"] is imle
assert imle.evals["view_match"][-1] > imle.evals["view_match"][0] + 0.15       # it learns through the solver

# %% [markdown]
# Compare with GM-1st without noise above (the line printed under the run). This run changed two knobs at once,
# the noise and λ; exercise 2 tells them apart. Why would the noise matter? With noise, an image that the solver
# matches correctly *by a small margin* is often matched wrongly in the forward pass and gets a gradient too: the
# noise acts like a margin, and the loss keeps pushing where the noiseless version has stopped (exercises 2
# and 4). Note what happens to the 5-NN accuracy as well.

# %% [markdown]
# ## 6. The claim, checked
# **The paper's claim.** Graph-matching pre-training on 1.3 million medical images beats supervised,
# self-supervised and foundation models on 15 downstream medical tasks (with a ResNet-50, 6–7 % over
# vision-language models on brain-tumour classification and diabetic-retinopathy grading), because the
# second-order term captures the structure between images that pair-wise contrastive losses miss.
#
# **What we can check here.** Not the headline: no medical data, no ResNet, no QAP solver, no downstream tasks.
# Nor "matching beats InfoNCE": at this scale we do not expect the paper's ranking, and we do not assert one
# either way. The cell below prints, seed by seed, whether InfoNCE or the (noiseless) matching losses match
# held-out views better, and whether the second-order proxy beats first-order matching. What we *can* check is
# the mechanism:
# 1. *The gradient's structure* (exact, no training): values $\pm1/\lambda$ or 0, rows and columns summing to 0,
#    at most two non-zeros per row, exactly 0 when the matching is right (§3, 2000 random problems).
# 2. *It trains through a combinatorial solver*: GM-1st's held-out view matching rises by at least 0.15 on
#    each seed.
# 3. *It acts on mistakes only*: in every training step its gradient has at most $2N = 128$ non-zero entries
#    (and, at λ = 5, exactly twice the number of wrongly matched images — the perceptron regime), while
#    InfoNCE's has all $N^2 = 4096$.
# 4. *A sanity check of the data pipeline*, not a claim of the paper: InfoNCE's view matching reaches 0.8.

# %% tags=["nbval-ignore-output"]
gain = {(loss, s): runs[loss, s].evals["view_match"][-1] - runs[loss, s].evals["view_match"][0] for loss, s in runs}
knn_change = {(loss, s): runs[loss, s].evals["knn"][-1] - runs[loss, s].evals["knn"][0] for loss, s in runs}
for loss in gm.LOSSES:
    print(f"{gm.NAMES[loss]:18s} view-matching gain {', '.join(f'{gain[loss, s]:+.3f}' for s in SEEDS)}"
          f"   5-NN change {', '.join(f'{knn_change[loss, s]:+.3f}' for s in SEEDS)}")
gm_steps = np.concatenate([runs[loss, s].history["nnz"] for loss in ("gm_1st", "gm_2nd") for s in SEEDS])
gm_loss_hist = np.concatenate([runs[loss, s].history["loss"] for loss in ("gm_1st", "gm_2nd") for s in SEEDS])
print(f"GM steps: at most {int(gm_steps.max())} non-zero entries; InfoNCE: at least "
      f"{min(int(runs['infonce', s].history['nnz'].min()) for s in SEEDS)}")
final = {loss: np.array([runs[loss, s].evals["view_match"][-1] for s in SEEDS]) for loss in gm.LOSSES}
wins = lambda a, b: f"{int((final[a] > final[b]).sum())} of {len(SEEDS)} seeds"   # noqa: E731
print(f"held-out view matching: InfoNCE beats GM-1st on {wins('infonce', 'gm_1st')}, GM-2nd proxy on "
      f"{wins('infonce', 'gm_2nd')}; GM-2nd proxy beats GM-1st on {wins('gm_2nd', 'gm_1st')}")
assert all(gain["gm_1st", s] >= 0.15 for s in SEEDS)                      # 2. GM-1st learns through the solver
assert gm_steps.max() <= 2 * 64 and np.array_equal(gm_steps, gm_loss_hist)  # 3. only mistakes, perceptron at λ = 5
assert all((runs["infonce", s].history["nnz"] == 64 * 64).all() for s in SEEDS)
assert all(runs["infonce", s].evals["view_match"][-1] >= 0.8 for s in SEEDS)  # 4. pipeline sanity

# %%
assert sum(bad.values()) == 0                                            # 1. gradient structure (no training)

# %% [markdown]
# ## 7. Pitfalls
#
# - **Reconstruction.** The graph construction, the edge affinity, the "global and local" fusion the paper
#   mentions, the QAP solver, the estimator (black-box or I-MLE) and λ are all unverified. The second-order
#   term here is a *proxy* that keeps the problem linear; a real QAP needs a dedicated solver.
# - **Sign conventions.** Vlastelica et al. write the method for a *minimising* solver; for `maximize=True` the sign
#   of the formula flips. Check numerically that a descent step raises the correct affinities (the
#   `diagonal_lowered` count above is 0).
# - **λ too small:** the perturbed solver answers the same and the gradient is zero almost everywhere (the right
#   panel of §3). **λ too large** (above half the range of $C$): every update is the blunt perceptron push
#   $(\hat v - I)/\lambda$ and λ only rescales the gradient — which Adam undoes. The paper's range of 1–10 on cosine
#   affinities is entirely in this regime.
# - **Ties.** After a collapse ($C$ constant), every permutation ties and the solver's choice is arbitrary (scipy's is
#   deterministic: the identity, which makes the loss 0 and hides the collapse). Watch the view matching on held-out
#   data, not the training loss alone.
# - **Evaluation.** k-NN accuracy of an SSL embedding needs augmentations that keep the class; MNIST-1D's shifts and
#   trends are strong, and both losses learn invariances that do not help the class here. Report the view
#   matching too.
# - **Augmentation.** We use `lossviz.augment`'s MNIST-1D views (shift, amplitude, linear trend, noise); a 10 %
#   sample dropout is a plausible alternative for the trend.
#
# ## 8. Exercises
# 1. **When does the interpolation matter?** In the panel of §4, find the smallest λ at which the gradient sees
#    every mistake. Relate it to the range of $C$. *Hint:* the perturbed solver answers $I$ once $2\lambda$ beats
#    the largest gain $C_{ij} - C_{ii}$ of any row.
# 2. **Noise or λ?** The I-MLE run of §5 changed two knobs. Train GM-1st at λ = 1 without noise, and with noise
#    0.05 at λ = 5 (panel of §5). Which knob made the difference? Then try noise 0.2. *Hint:* with noise the forward
#    matching itself is random; compare `run.history["train_match"]` (noisy, on the training batch) with the
#    held-out view matching (noiseless).
# 3. **The real QAP.** Write a small solver for the QAP of §1: start from $v = \hat v(C_v)$ and repeat
#    $v \leftarrow \hat v\big(C_v + \beta(A_s v A_t^\top + A_s^\top v A_t)\big)$ a few times (the linearisation
#    at the current $v$). Does it reach a higher `gm.qap_objective` than the proxy's matching? *Hint:* keep the
#    best $v$ seen; the iteration can oscillate.
# 4. **Margins.** InfoNCE keeps pushing even when every image is matched; the matching loss stops. Add a margin:
#    run the solver on $C - m I$ in the forward pass (the correct pair must win by $m$). What does that do to
#    the number of non-zero entries during training? *Hint:* `gm.gm_loss(C - m * torch.eye(N), lam=...)`.
#
# ## 9. Summary
# - LVM-Med (as reconstructed here) asks that the correct correspondence between two views be the **solution of a
#   graph-matching problem**, with first-order (node) and second-order (edge) affinities, and counts the solver's
#   mistakes (Hamming loss).
# - A combinatorial solver's output is piecewise constant; the **black-box gradient**
#   $[\hat v(C) - \hat v(C + 2\lambda I)]/\lambda$ is the exact gradient of a piecewise-linear interpolation of the
#   loss. Its weights are sparse ($\pm1/\lambda$, at most two per row), vanish once the matching is right, and for
#   λ above half the range of $C$ become a perceptron update.
# - At this small scale the matching loss trains through the solver (asserted), with a sparse gradient where InfoNCE's
#   dense softmax weights act on every pair at every step; §6 prints how the two, and the second-order proxy, compare
#   on held-out view matching. Perturbing the solver (I-MLE noise) acts like a margin: the matching loss keeps a
#   gradient on images matched right by a small margin, as InfoNCE does (compare the I-MLE run of §5 with GM-1st).
#   The 5-NN accuracy of the random encoder on MNIST-1D is a poor yardstick for these augmentations (§6).
#
# **References.** Nguyen et al., *LVM-Med: Learning Large-Scale Self-Supervised Vision Models for Medical Imaging via
# Second-order Graph Matching*, NeurIPS 2023. Vlastelica, Paulus, Musil, Martius, Rolínek, *Differentiation of
# Blackbox Combinatorial Solvers*, ICLR 2020. Niepert, Minervini, Franceschi, *Implicit MLE: Backpropagating Through
# Discrete Exponential Family Distributions*, NeurIPS 2021. Chen, Kornblith, Norouzi, Hinton, *A Simple Framework
# for Contrastive Learning of Visual Representations* (SimCLR), ICML 2020. Lawler, *The Quadratic Assignment
# Problem*, Management Science 1963. Kuhn, *The Hungarian Method for the Assignment Problem*, 1955. Leordeanu,
# Hebert, Sukthankar, *An Integer Projected Fixed Point Method for Graph Matching and MAP Inference*, NeurIPS 2009.
# Greydanus, *Scaling down Deep Learning* (MNIST-1D), 2020.
