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
# # 03 — Proto-Triplet and ICNN: distance losses for few-shot classification
#
# **Paper.** Mauricio Mendez-Ruiz, Jorge Gonzalez-Zapata, Ivan Reyes-Amezcua, Daniel Flores-Araiza,
# Francisco Lopez-Tiro, Andres Mendez-Vazquez, Gilberto Ochoa-Ruiz.
# *SuSana Distancia is all you need: Enforcing class separability in metric learning via two novel
# distance-based loss functions for few-shot image classification.* 2023.
# [arXiv:2305.09062](https://arxiv.org/abs/2305.09062) · code:
# [maumruiz/FSL-Loss](https://github.com/maumruiz/FSL-Loss) (MIT; the first author's repository, not
# linked from the paper, so "official" is our inference; the loss is in `algorithms/icnn_loss.py`).
# lossviz re-implements both losses from their formulas.
#
# **The story.** *Few-shot* classification asks a network to recognise classes it has never seen,
# from one or five labelled examples each. A **Prototypical Network** (ProtoNet, Snell et al. 2017)
# does this by embedding the few labelled examples (the *support set*), averaging each class into
# a **prototype**, and giving a new image (a *query*) the label of the nearest prototype. It is
# trained on *episodes* that imitate the test: pick N classes, a few supports and queries of each,
# and minimise a cross-entropy over negative distances.
#
# Cross-entropy only asks the own prototype to be *nearer* than the others; it never asks for a
# *gap*. The paper adds two distance-based terms that do: the **Proto-Triplet loss** (a triplet loss
# whose positive is the query's own prototype and whose negative is the nearest wrong prototype) and
# the **ICNN loss** ($-\log$ of a score in [0, 1] that rates how clean each point's nearest-neighbour
# neighbourhood is). *Do they make classes never seen in training easier to separate?*
#
# In this notebook you will write both losses down, look at their gradients as pictures, move their
# knobs, train real few-shot models on held-out classes, and check what of the claim survives at
# small scale.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Setup
#
# One cell: imports, seeds, one torch thread, and the `FAST` switch (`LOSSVIZ_FAST=1` shortens the
# training runs).

# %%
import inspect

import numpy as np
import torch
from IPython.display import Markdown
from tqdm.auto import tqdm

import lossviz as lv
from lossviz import data, plots
from lossviz.papers import proto_triplet_icnn as fs
from lossviz import train as T

FAST = T.setup(seed=0)
ITERS = 200 if FAST else 300
EVAL_EVERY = 100                 # test accuracy at iterations 0, 100, 200, 300
SEEDS = tuple(range(8))          # paired seeds: seed s gives every loss the same network and episodes
WAY = 10                         # classes per episode, in training and in test
print("lossviz", lv.__version__, "| torch", torch.__version__, "| FAST =", FAST)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1. The idea and the math
#
# ### An episode
# An episode has $N_w$ classes ("ways"); each has `shot` support samples $S_k$ and `query` query
# samples. $f$ is the embedding network and the **prototype** of class $k$ is the mean support embedding
#
# $$c_k = \frac{1}{|S_k|}\sum_{x\in S_k} f(x).$$
#
# All losses below are functions of the query–prototype distances. Following the paper's code, the
# distance has a small $\epsilon$ inside the square root (it keeps the gradient finite when a query sits
# on its prototype, which happens easily with one shot):
#
# $$D_{qk} = d(f(q), c_k) = \sqrt{\lVert f(q) - c_k\rVert^2 + 10^{-6}}.$$
#
# ### ProtoNet cross-entropy (the baseline)
# Logits are negative **squared** distances at temperature $T$ (official default $T=1$):
#
# $$\ell_{qk} = -D_{qk}^2/T,\qquad L_{CE} = \frac1Q\sum_q -\log\frac{e^{\ell_{q y_q}}}{\sum_k e^{\ell_{qk}}}.$$
#
# Its weights are soft and dense: $\partial L/\partial \ell_{qk} = (p_{qk} - [k=y_q])/Q$, where $p$ is the softmax.
# **Every** prototype gets some push, in proportion to how probable it is. Notebook 01 called this kind of
# weighting "N" (relative to the other negatives).
#
# ### Proto-Triplet (PT)
# A triplet loss with the query as anchor, its own prototype as positive and the **nearest wrong prototype**
# as negative, on plain (not squared) Euclidean distances, with margin $m$ (official default 0.5):
#
# $$L_{PT} = \frac1Q\sum_q\Big[D_{q,y_q} - \min_{k\ne y_q} D_{qk} + m\Big]_+ .$$
#
# Its weights on $D$ are notebook 01's *batch-hard* triplet weights with prototypes as partners: for each
# query whose hinge is active, $+1/Q$ on its own prototype (pull) and $-1/Q$ on the nearest wrong one
# (push); **zero everywhere else**, including every query that already clears the margin.
#
# ### ICNN score and loss
# ICNN rates the neighbourhood of every point of a set $P$ (for `fullicnn`, supports and queries of the
# episode together). For point $i$ take its nearest neighbours in $P$ (itself excluded), nearest first:
# $k$ of them (default 4) are scored, and $\text{ipc}$ of them ($=$ shot $+$ query in `fullicnn`) are
# searched for $\delta_i$, the distance to $i$'s nearest **different-class** neighbour. With $a_{ij}=1$ when
# neighbour $j$ has $i$'s label and $b_{ij}=1-a_{ij}$:
#
# $$n_{ij} = \frac{d_{ij}/\delta_i}{\max\big(1, \max_{j'\le k} d_{ij'}/\delta_i\big)}\quad(j\le k;\ n_{ij}=0 \text{ if } i \text{ has no different-class neighbour}),$$
#
# $$\lambda_{same} = 1 - \operatorname*{mean}_{i:\ \sum_j a_{ij}>0} \frac{\sum_{j\le k} a_{ij}n_{ij}}{\sum_{j\le k} a_{ij}},\qquad
#   \lambda_{diff} = \operatorname*{mean}_{i:\ \sum_j b_{ij}>0} \frac{\sum_{j\le k} b_{ij}d_{ij}/d_{max}}{\sum_{j\le k} b_{ij}}
#   \ \ (1 \text{ if no point has a different-class neighbour}),$$
#
# where $d_{max}$ is the largest different-class distance among all points' first $k$ neighbours, and
#
# $$\gamma = \frac1{|P|}\sum_i \frac{\sum_{j\le k} a_{ij}}{k},\qquad
#   \text{score} = \frac{(\lambda_{same}+\lambda_{diff})/2 + \gamma}{2}\in[0,1],\qquad L_{ICNN} = -\log(\text{score}).$$
#
# Read it as: same-class neighbours should be close *compared with the nearest other class*
# ($\lambda_{same}$), other-class neighbours should be far ($\lambda_{diff}$), and the $k$ nearest neighbours
# should be of the same class (**purity** $\gamma$). $\gamma$ counts, so it has **no gradient**: the loss can
# only move the network through $\lambda_{same}$ and $\lambda_{diff}$. Every part is a ratio of distances or a
# count, so the score does not change when the whole embedding is scaled.
#
# **Where the formula comes from.** The score above is the code's `modified_score`. The paper also describes
# a variance term $\omega$; it exists in an older function of the code and is commented out of the value that
# is returned, so we leave it out, as the code does.
#
# ### The combination
# The code's `--losses` option selects terms and **averages** them: `cross,prototriplet` trains on
# $(L_{CE}+L_{PT})/2$ and `cross,fullicnn` on $(L_{CE}+L_{ICNN})/2$. Section 5 trains Proto-Triplet alone and
# $(L_{CE}+L_{PT})/2$ against ProtoNet's $L_{CE}$; $(L_{CE}+L_{ICNN})/2$ is in the training panel and in the
# exercises.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 2. From formula to code
#
# Both triplet and cross-entropy are functions of `D`; the nearest wrong prototype is a masked `min`
# (an `inf` fill that never enters a product).

# %%
print(inspect.getsource(fs.proto_triplet_loss))

# %% [markdown] slideshow={"slide_type": "subslide"}
# A synthetic 2-D episode (5 classes on a circle, 1 support and 4 queries each), and the two losses written
# again as plain loops over queries, straight from the formulas above:

# %%
z_s, y_s, z_q, y_q = fs.toy_episode(way=5, shot=1, query=4, scale=1.0, seed=0)
D = fs.distances(z_q, fs.prototypes(z_s, y_s))
pt_loop = sum(max(D[q, y_q[q]] - min(D[q, k] for k in range(5) if k != y_q[q]) + 0.5, 0.0)
              for q in range(len(y_q))) / len(y_q)
ce_loop = sum(torch.logsumexp(-D[q] ** 2, 0) + D[q, y_q[q]] ** 2 for q in range(len(y_q))) / len(y_q)
print(f"PT:  lossviz {float(fs.proto_triplet_loss(D, y_q)):.6f}   loop {float(pt_loop):.6f}")
print(f"CE:  lossviz {float(fs.protonet_loss(D, y_q)):.6f}   loop {float(ce_loop):.6f}")
assert abs(float(fs.proto_triplet_loss(D, y_q)) - float(pt_loop)) < 1e-12
assert abs(float(fs.protonet_loss(D, y_q)) - float(ce_loop)) < 1e-12

# %% [markdown] slideshow={"slide_type": "subslide"}
# The ICNN score is computed from each point's neighbour distances (`fs.icnn_neighbours`, a `topk`), then
# `fs.icnn_terms`. Empty means are exactly 0: counts are integers, so dividing by `max(count, 1)` is exact
# and never gives a NaN. (The tests compare it, values and gradients, with a point-by-point loop.)

# %%
print(inspect.getsource(fs.icnn_terms).split('"""')[2])

# %% [markdown] slideshow={"slide_type": "subslide"}
# One part checked from scratch: the purity $\gamma$ is the mean fraction of same-class points among each
# point's 4 nearest neighbours.

# %%
P, y = torch.cat([z_s, z_q]), torch.cat([y_s, y_q])
order = torch.cdist(P, P).argsort(dim=1)[:, 1:5]                 # 4 nearest, self dropped
gamma_scratch = (y[order] == y[:, None]).double().mean()
nb = fs.icnn_neighbours(P, y, k=4, ipc=5)                         # fullicnn: ipc = shot + query
terms = fs.icnn_terms(nb.D, nb.same, k=nb.k)
print({key: round(float(v), 4) for key, v in terms.items()}, "| γ from scratch", round(float(gamma_scratch), 4))
assert torch.isclose(terms["gamma"], gamma_scratch)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 3. Weights as pictures
#
# ### Cross-entropy against Proto-Triplet, on the same episode
# Left: the episode. Stars are prototypes (here, with one shot, the support samples themselves); each query
# has a blue line to its own prototype and a vermillion line to its nearest wrong one. A **filled** query
# violates the margin (its hinge is active), a hollow one clears it.
#
# Middle and right: each loss's weight on every query–prototype distance, drawn as $-\partial L/\partial D_{qk}$
# so the colours mean what they meant for similarities in notebook 01: **blue pulls** a query towards a
# prototype, **vermillion pushes** it away. The own prototype of each query is outlined. Each map is scaled to
# its own largest weight, so the two compare by shape.

# %%
weights = {name: lv.pair_weights(fn, D, y_q, signed=True)
           for name, fn in (("CE", fs.protonet_loss), ("PT", fs.proto_triplet_loss))}
fig, axes = plots.new_figure(3, width=4.2, height=4.0)
_ = fs.draw_episode(axes[0, 0], z_s, y_s, z_q, y_q, m=0.5)
fs.distance_weight_heatmap(axes[0, 1], weights["CE"], y_q, title="ProtoNet CE", colorbar=False)
fs.distance_weight_heatmap(axes[0, 2], weights["PT"], y_q, title="Proto-Triplet (m = 0.5)")
fig

# %% [markdown] slideshow={"slide_type": "subslide"}
# CE is **dense**: every query pulls its own prototype and pushes on all others, the most probable wrong
# prototypes hardest, and even a well-classified query keeps a little weight. PT is **sparse**: exactly two
# entries per active query, $+1/Q$ and $-1/Q$, and nothing for queries that clear the margin. Checked:

# %%
active = fs.active_queries(D, y_q, m=0.5)
nonzero = (weights["PT"] != 0).sum(dim=1)
print(f"active queries {int(active.sum())}/{len(y_q)}; non-zeros per row of PT: {nonzero.tolist()}")
assert torch.equal(nonzero, 2 * active.long())
assert torch.allclose(weights["PT"][weights["PT"] != 0].abs(), torch.tensor(1 / len(y_q), dtype=D.dtype))
assert bool((weights["CE"] != 0).all())

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### The ICNN neighbourhood and its weights
# Left: every point (supports and queries) joined to its $k=4$ nearest neighbours: blue edges stay within the
# class, vermillion edges cross to another class. The edge width is the size of the ICNN loss's weight
# $|\partial L_{ICNN}/\partial d_{ij}|$ on that distance. Middle: the score's parts. Right: the score as the
# classes are pulled apart (class centres scaled, spread fixed).

# %%
nb, grad, parts = fs.icnn_weights(P, y, k=4, ipc=5)
scales = np.geomspace(0.2, 5, 15)
curve = {key: [] for key in ("score", "lam_same", "lam_diff", "gamma")}
for s in scales:
    zs_, ys_, zq_, yq_ = fs.toy_episode(5, 1, 4, scale=float(s), seed=0)
    _, _, t = fs.icnn_weights(torch.cat([zs_, zq_]), torch.cat([ys_, yq_]), k=4, ipc=5)
    for key in curve:
        curve[key].append(t[key])
fig, axes = plots.new_figure(3, width=4.2, height=4.0)
fs.draw_neighbourhood(axes[0, 0], P, y, nb, grad, title="ICNN neighbourhood, width = weight")
fs.score_bars(axes[0, 1], parts)
fs.score_curve(axes[0, 2], scales, curve)
fig

# %% [markdown] slideshow={"slide_type": "subslide"}
# Weight can only sit on each point's first $k$ neighbours and on its nearest different-class neighbour
# (through $\delta_i$, even when that neighbour is beyond the first $k$); the single largest different-class
# distance $d_{max}$ gets extra weight through the normalisation of $\lambda_{diff}$ (the thick edge). The
# purity $\gamma$ adds nothing to the gradient. While the classes overlap (small scales) the score hovers
# near its chance level, about 0.2; once they start to separate all parts rise together and the score
# approaches 1.

# %%
allowed = torch.zeros_like(grad, dtype=torch.bool)
allowed[:, :nb.k] = True
first_diff = torch.where(~nb.same, torch.arange(nb.D.shape[1]), nb.D.shape[1]).min(dim=1).values
has_diff = first_diff < nb.D.shape[1]
allowed[has_diff, first_diff[has_diff]] = True
print(f"distances with non-zero ICNN weight: {int((grad != 0).sum())} of {grad.numel()}")
assert not bool((grad[~allowed] != 0).any())
sc = np.array(curve["score"])
assert sc[0] < sc[scales >= 1][0] < sc[-1] and sc[-1] > 0.95
assert (np.diff(sc[scales >= 0.75]) >= 0).all()                  # monotone once the classes separate

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 4. Explore
#
# The panels here are built on `lossviz.widgets`: moving a control redraws the figure in place,
# and a Train button runs a real training run, cached by its settings.
#
# The knobs of the paper on the synthetic episode: margin $m$, CE temperature $T$, the ICNN $k$, the weight
# of PT against CE (the code's average is weight 1), and how far apart the classes are. Try: $m=0$ (only
# misclassified queries get PT weight); a small $T$ (CE's weights concentrate on the nearest wrong prototype,
# close to PT's); pulling the classes apart (the ICNN score rises to 1, and PT switches off query by query).

# %%
knobs = fs.knobs_panel()
assert 0 < knobs.state["active"] < 1
knobs

# %% [markdown] slideshow={"slide_type": "subslide"}
# The panel is an ordinary object; setting a control redraws it:

# %%
knobs.controls["m"].value = 0.0
assert knobs.state["active"] == float((D.argmin(1) != y_q).double().mean())    # only misclassified queries
knobs.controls["scale"].value = 4.0
assert knobs.state["icnn"]["score"] > terms["score"]
knobs.controls["m"].value, knobs.controls["scale"].value = 0.5, 1.0


# %% [markdown] slideshow={"slide_type": "slide"}
# ## 5. A real training run: identities never seen in training
#
# **Why every episode must be a new task.** Episodic training imitates the test: each training episode is a small
# classification problem on classes drawn at random, so the network cannot memorise one problem; it has to learn
# an embedding in which *any* classes, including new ones, fall apart. The paper draws 20–30 classes per episode
# out of the 64 training classes of miniImageNet, so almost every episode is a problem it has not seen. (If the
# training set had only five classes, every five-way episode would be the same task, and episodic training would
# be ordinary classification in disguise.)
#
# **Data.** The package's synthetic *identities* (`lossviz.data.identities`, the many-class set of the
# face-recognition lessons): 400 identities of 20 samples each, 32 features per sample. We train on identities
# 0–299 and test on identities 300–399, which the network never sees in training. A 10-way training episode picks
# 10 of the 300 training identities, so two episodes almost never pose the same problem.
#
# **Nuisance features.** On these 32 features, nearest-prototype classification of new identities is already
# very good *without any network* (first line below): little would be left to learn. Real inputs
# are not like that: most pixels of a photo change for reasons that say nothing about who is in it. So we append
# 32 features of pure noise to every sample (`fs.noisy_identities`). Now the raw features are a poor metric, and a
# network can learn from the training identities *which features to ignore*, a skill that carries over to new
# identities.

# %% tags=["nbval-ignore-output"]
clean, ids = data.identities(400, 20), fs.load_fewshot("ids_noisy")
print(ids.description)
raw = {name: {shot: fs.fewshot_accuracy(split.x_test, split.y_test, way=WAY, shot=shot).mean() for shot in (1, 5)}
       for name, split in (("clean features", clean), ("with noise features", ids))}
for name, by_shot in raw.items():
    print(f"raw {name:20s} {WAY}-way accuracy on the unseen identities: 1-shot {by_shot[1]:.3f}, "
          f"5-shot {by_shot[5]:.3f} (chance {1 / WAY:.2f})")
assert ids.x_train.shape[1] == 64 and all(raw["with noise features"][s] < raw["clean features"][s] - 0.1 for s in (1, 5))

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Protocol.** An MLP 64 → 128 → 16 with *no* L2 normalisation (ProtoNet works with plain Euclidean embeddings).
# Training episodes: 10-way, 1 or 5 shots, 5 queries per class; Adam, lr $10^{-3}$, 300 episodes (the code halves
# the learning rate every 20 epochs of 100 episodes; our runs end before its first step). Test: 300 fixed 10-way
# episodes of the unseen identities, with the training shot and 10 queries per class, the *same* episodes for
# every run. Three losses with the official defaults ($T=1$, $m=0.5$): ProtoNet's CE, Proto-Triplet alone (PT), and
# the code's average (CE + PT)/2. Eight seeds: seed $s$ gives every loss the same initial network and the same
# training episodes, so the losses compare seed by seed (*paired* seeds).
#
# Two controls tell whether training did anything at all: the **raw features** (above), and the **untrained
# network** (the test accuracy of the same runs at iteration 0).

# %% tags=["nbval-ignore-output"]
COMBOS = ("CE", "PT", "CE+PT")
jobs = [(shot, name, seed) for shot in (1, 5) for name in COMBOS for seed in SEEDS]
runs = {}
for shot, name, seed in tqdm(jobs, desc=f"{len(jobs)} episodic runs"):
    run = fs.train_fewshot(fs.COMBOS[name], data="ids_noisy", way=WAY, shot=shot, seed=seed, iters=ITERS,
                           eval_every=EVAL_EVERY, test_way=WAY, progress=False)
    runs.setdefault((shot, name), []).append(run)
print(runs[1, "PT"][0])
acc = {key: np.array([r.acc for r in rr]) for key, rr in runs.items()}
untrained = {shot: np.array([r.evals["acc"][0] for r in runs[shot, "CE"]]) for shot in (1, 5)}  # same net per seed
print(f"\n{WAY}-way accuracy on the unseen identities, mean of {len(SEEDS)} seeds")
print(f"{'':8s}{'raw features':>13s}{'untrained':>11s}" + "".join(f"{n:>8s}" for n in COMBOS))
for shot in (1, 5):
    print(f"{shot}-shot  {raw['with noise features'][shot]:13.3f}{untrained[shot].mean():11.3f}"
          + "".join(f"{acc[shot, n].mean():8.3f}" for n in COMBOS))
assert all(np.isfinite(r.history["loss"]).all() and np.argmax(r.evals["acc"]) > 0    # every run learns: its
           for rr in runs.values() for r in rr)                                       # best is not iteration 0
assert all(lv.metrics.paired_difference(acc[shot, n], control).verdict == "ahead"     # and beats both controls
           for shot, n in acc for control in (raw["with noise features"][shot], untrained[shot]))

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Learning curves** (means over the eight seeds). Top: test accuracy on the unseen identities against training
# episodes; iteration 0 is the untrained network, the dotted line the raw features. Bottom: the fraction of
# *training* queries whose Proto-Triplet hinge is active ($D_{own} - D_{nearest\ wrong} + 0.5 > 0$), whether or not
# PT is in the loss.

# %% tags=["nbval-ignore-output"]
fig, axes = plots.new_figure(2, 2, width=4.8, height=3.3)
for col, shot in enumerate((1, 5)):
    fs.learning_curves(axes[:, col], {name: runs[shot, name] for name in COMBOS})
    axes[0, col].axhline(raw["with noise features"][shot], color=plots.MUTED, ls=":", label="raw features")
    axes[0, col].set_title(f"{shot}-shot: test accuracy, unseen identities")
    axes[0, col].legend(loc="lower right")
active_end = {key: np.array([r.history["active"][-50:].mean() for r in rr]) for key, rr in runs.items()}
print("training queries with an active hinge, last 50 episodes, mean of seeds: " + "; ".join(
    f"{shot}-shot " + ", ".join(f"{n} {active_end[shot, n].mean():.2f}" for n in COMBOS) for shot in (1, 5)))
more_active = {shot: lv.metrics.paired_difference(active_end[shot, "PT"], active_end[shot, "CE"]) for shot in (1, 5)}
print("PT - CE: " + "; ".join(f"{shot}-shot {d}" for shot, d in more_active.items()))
assert all(len(ax.lines) >= 3 for ax in axes.ravel())
assert all(d.verdict == "ahead" for d in more_active.values())
assert all(np.mean([r.evals["acc"][-1] - r.evals["acc"][-2] for r in rr]) > 0 for rr in runs.values())  # still rising
fig

# %% [markdown] slideshow={"slide_type": "subslide"}
# All three losses are still improving after 300 episodes: we compare them at the same budget, not at convergence
# (exercise 2 trains longer). One thing stands out already: PT alone leaves *more* training queries inside its
# margin than CE does, although PT is the loss that asks for the margin. The margin figure below explains why.
#
# **One test episode in pictures.** A 5-way 1-shot episode of the unseen identities (five classes rather than ten,
# so that the picture stays readable), embedded by the network before training and after training with CE and
# with PT (seed 0), flattened to 2-D by PCA. Lines and filled dots use the true 16-d distances.

# %% tags=["nbval-ignore-output"]
support, query = (t[0] for t in fs.episode_index(ids.y_test.numpy(), shot=1, query=5, episodes=1, seed=11))
views_runs = runs[1, "CE"][0], runs[1, "PT"][0]
views = {"before training": views_runs[0].z_test_before,
         "after CE": views_runs[0].z_test, "after PT": views_runs[1].z_test}
fig, axes = plots.new_figure(3, width=4.2, height=4.0)
ep_acc = {}
for ax, (title, z) in zip(axes[0], views.items()):
    p_s, ys, p_q, yq, D16 = fs.project_episode(z, support, query, shot=1)
    drawn = fs.draw_episode(ax, p_s, ys, p_q, yq, m=0.5, D=D16)
    ep_acc[title] = fs.episode_accuracy(D16, yq)
    ax.set_title(f"{title}: acc {ep_acc[title]:.2f}, {drawn['active'].mean():.0%} active")
assert all(ax.has_data() for ax in axes[0]) and len(ep_acc) == 3
assert all(r.acc > r.evals["acc"][0] + 0.1 for r in views_runs)      # over all test episodes, training helps
fig

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### How far from the margin are the queries of new identities?
#
# Give every test query its **lead**: how much nearer its own prototype is than the nearest wrong one,
# $\ell_q = \min_{k\ne y_q} D_{qk} - D_{q,y_q}$ (negative: the query is misclassified). Its Proto-Triplet hinge is
# $[m - \ell_q]_+$, and it is **active** when $\ell_q < m$: the own prototype is not at least $m$ nearer than every
# wrong one. Two numbers summarise the queries at a margin $m$ (100 test episodes, every seed of a loss):
#
# - **Active hinges** (left): the *fraction* of queries with $\ell_q < m$: *how many* queries are inside the margin.
#   At $m=0$ it is the error rate, and it can only grow with $m$ (it is the cumulative distribution of the leads).
# - **Mean hinge** (right): $\frac1Q\sum_q [m-\ell_q]_+$, the Proto-Triplet loss itself: *how deep* inside the margin
#   the queries are on average, a query that clears the margin counting 0. At $m=0$ it measures how badly the
#   misclassified queries are wrong.
#
# The two are tied together: when $m$ grows by a little $\Delta m$, each active hinge grows by $\Delta m$, so the mean
# hinge grows by (fraction active) × $\Delta m$. The **mean hinge at $m$ is its value at 0 plus the area under the
# left curve from 0 to $m$** (checked below; it holds for any embedding, a property of the definitions).

# %% tags=["nbval-ignore-output"]
ms = np.linspace(0, 1.2, 49)
curves = {key: [fs.margin_curve(r.z_test, r.y_test, ms, shot=key[0], way=WAY) for r in rr] for key, rr in runs.items()}
fig, axes = plots.new_figure(2, 2, width=4.8, height=3.3)
for row, shot in enumerate((1, 5)):
    for ax, part in zip(axes[row], ("active", "hinge")):
        for name in COMBOS:
            ax.plot(ms, np.mean([c[part] for c in curves[shot, name]], axis=0), color=fs.COMBO_COLORS[name], label=name)
        ax.axvline(0.5, color=plots.MUTED, lw=0.8, ls=":", label="training margin")
    axes[row, 0].set(title=f"{shot}-shot: queries with an active hinge", xlabel="margin m (distance units)",
                     ylabel="fraction of queries", ylim=(0, 1.02))
    axes[row, 1].set(title=f"{shot}-shot: mean hinge (the PT loss at m)", xlabel="margin m (distance units)",
                     ylabel="mean of [m - lead]+")
axes[0, 0].legend(loc="lower right")
assert all((np.diff(line.get_ydata()) >= 0).all() for ax in axes.ravel() for line in ax.lines[:3])  # grow with m
c = curves[1, "CE"][0]                            # the identity, on one run (a property, not a measurement)
area = np.concatenate([[0], np.cumsum((c["active"][1:] + c["active"][:-1]) / 2 * np.diff(ms))])
assert np.abs(c["hinge"] - c["hinge"][0] - area).max() < 0.01
fig

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Reading the figure.** Compare PT (orange) with CE (black). On the left, PT's curve starts lower (fewer errors at
# $m=0$) but climbs faster, so at the training margin $m = 0.5$ (dotted) *more* of PT's queries have an active
# hinge. On the right, PT's mean hinge starts lower, the two are close at $m = 0.5$ (the verdict is printed below
# the numbers), and for the largest margins PT's is the higher. More active hinges at the training margin, and yet
# a mean hinge that has not overtaken CE's: how?
#
# - **The margin is measured in distance units, and PT keeps the embedding small.** CE works on *squared*
#   distances: spreading all points further apart multiplies its logit gaps, so CE keeps lowering its loss by
#   inflating the embedding. PT has no such incentive: a query's loss is zero once it leads by 0.5, and then PT stops
#   pushing it. In PT's smaller embedding the leads are smaller in absolute units, so more of them fall short of a
#   fixed 0.5 (below: the mean distance to the nearest wrong prototype).
# - **PT's active hinges are shallow.** The mean hinge is (fraction active) × (mean depth of an active hinge).
#   PT gives every violating query the same push, $\pm 1/Q$ (section 3), and none to a query that clears the margin:
#   training ends with many queries just inside the margin and few far inside. CE's larger embedding leaves fewer
#   violations, but deeper ones. Many shallow hinges can add up to no more than a few deep ones.
# - **Why the order flips at large margins.** The right curve rises by the area under the left one. PT's left curve
#   is the higher beyond small $m$, so its mean hinge gains on CE's and eventually passes it: asked for a margin
#   larger than the one it trained for, PT's small embedding pays for it.
# - **(CE + PT)/2 is different.** With CE in the loss the embedding stays close to CE's size (its change is a small
#   fraction of PT alone's), and the PT term then does what its formula says: it lowers the mean hinge.
#
# The numbers behind these sentences, per seed, with the same paired rule as for accuracy (section 6): *ahead*
# (higher than CE) or *behind* (lower) when the mean difference exceeds twice its standard error over the seeds,
# otherwise *a tie*.

# %% tags=["nbval-ignore-output"]
i05 = int(np.argmin(np.abs(ms - 0.5)))
MEASURES = {"error rate (active at m = 0)": lambda c: c["active"][0],
            "active hinges at m = 0.5": lambda c: c["active"][i05],
            "mean depth of an active hinge, m = 0.5": lambda c: c["hinge"][i05] / c["active"][i05],
            "mean hinge at m = 0": lambda c: c["hinge"][0],
            "mean hinge at m = 0.5": lambda c: c["hinge"][i05],
            f"mean hinge at m = {ms[-1]:.1f}": lambda c: c["hinge"][-1],
            "distance to nearest wrong prototype": lambda c: c["d_wrong"]}
per_seed = {(key, what): np.array([f(c) for c in cc]) for key, cc in curves.items() for what, f in MEASURES.items()}
mech = {(shot, n, what): lv.metrics.paired_difference(per_seed[(shot, n), what], per_seed[(shot, "CE"), what])
        for shot in (1, 5) for n in COMBOS[1:] for what in MEASURES}
short = lambda d: f"{d.mean:+.3f} ± {d.se:.3f} {d.verdict:6s} ({d.wins}/{d.n})"  # noqa: E731
for shot in (1, 5):
    print(f"{f'{shot}-shot, 100 test episodes':41s} {'CE':5s}   {'PT - CE (seeds won)':29s}   CE+PT - CE (seeds won)")
    for what in MEASURES:
        print(f"  {what:39s} {per_seed[(shot, 'CE'), what].mean():5.3f}   "
              + "   ".join(short(mech[shot, n, what]) for n in COMBOS[1:]))
EXPECTED_PT = {"active hinges at m = 0.5": "ahead", "mean depth of an active hinge, m = 0.5": "behind",
               "error rate (active at m = 0)": "behind", "mean hinge at m = 0": "behind",
               "distance to nearest wrong prototype": "behind", f"mean hinge at m = {ms[-1]:.1f}": "ahead"}
SIZE = "distance to nearest wrong prototype"
for shot in (1, 5):       # PT: more active hinges, each shallower; fewer, shallower errors; a smaller embedding;
    assert all(mech[shot, "PT", what].verdict == v for what, v in EXPECTED_PT.items()), shot   # the flip at large m
    assert mech[shot, "CE+PT", "mean hinge at m = 0.5"].verdict == "behind"     # with CE: PT lowers its loss,
    assert abs(mech[shot, "CE+PT", SIZE].mean) < abs(mech[shot, "PT", SIZE].mean) / 5   # at close to CE's size

# %% tags=["nbval-ignore-output"]
HINGE = "mean hinge at m = 0.5"
READING = {"behind": "lower than CE's", "a tie": "level with CE's (inside the seed-to-seed spread)",
           "ahead": "higher than CE's: here the extra hinges outweigh their shallowness"}
Markdown("**PT's mean hinge at the training margin $m=0.5$:** " + "; ".join(
    f"at {shot} shot{'s' * (shot > 1)} {mech[shot, 'PT', HINGE].mean:+.3f} ± {mech[shot, 'PT', HINGE].se:.3f} "
    f"against CE, **{mech[shot, 'PT', HINGE].verdict}**: {READING[mech[shot, 'PT', HINGE].verdict]}" for shot in (1, 5))
    + ". In both cases PT has more active hinges than CE (asserted above).")
assert all(mech[shot, "PT", HINGE].verdict in READING and mech[shot, "PT", HINGE].n == len(SEEDS) for shot in (1, 5))

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Train it yourself.** Pick a loss combination ((CE + ICNN)/2 and all three terms are there too), the shot, the
# margin, the ICNN $k$ and the seed, and press *Train*: 300 episodes take about a second, and the panel trains the
# CE baseline of the same setting next to it. Settings already trained (all 48 runs above) come from the cache at
# once.

# %% tags=["nbval-ignore-output"]
train_panel = fs.training_panel(iters=ITERS, eval_every=EVAL_EVERY)
assert train_panel.state["result"]["run"] is runs[1, "CE+PT"][0]          # from the cache: no new training
train_panel

# %%
train_panel.controls["combo"].value = "PT"
assert train_panel.state["stale"]                                     # changed, not yet trained
again = train_panel.train()
assert again["run"] is runs[1, "PT"][0] and not train_panel.state["stale"]

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 6. The claim, checked
#
# **The paper's claim.** Adding the Proto-Triplet and ICNN losses to a ProtoNet makes classes never seen in
# training more separable, and improves few-shot accuracy on miniImageNet by about 2% over other metric-based
# methods, with competitive results on CUB, Stanford Dogs and Cars.
#
# **What we can check here.** Whether training with Proto-Triplet makes *new* identities easier to tell apart than
# ProtoNet's cross-entropy does: 10-way accuracy on the 100 unseen identities, PT alone and the code's
# (CE + PT)/2 against CE, at 1 and 5 shots, on eight paired seeds and the same 300 test episodes for every run.
#
# **The rule.** For each seed, take the difference in accuracy (method − CE); report its mean, its standard error
# over the seeds (se) and on how many seeds the method won (`lv.metrics.paired_difference`). A method is *ahead*
# when the mean difference exceeds twice its standard error, *behind* in the mirror case, and otherwise the two are
# *a tie*: the difference is inside the seed-to-seed spread. We assert only a difference that is ahead by this rule.

# %% tags=["nbval-ignore-output"]
vs_ce = {(shot, n): lv.metrics.paired_difference(acc[shot, n], acc[shot, "CE"]) for shot in (1, 5) for n in COMBOS[1:]}
for shot in (1, 5):
    print(f"{shot}-shot  CE accuracy per seed {np.round(acc[shot, 'CE'], 3)}")
    for n in COMBOS[1:]:
        print(f"        {n:5s} - CE per seed   {np.round(acc[shot, n] - acc[shot, 'CE'], 3)}\n"
              f"                               {vs_ce[shot, n]}")
assert all(len(acc[shot, n]) == len(SEEDS) == 8 for shot, n in acc)               # paired: one run per seed
assert all(d.mean - 2 * d.se > 0 for d in vs_ce.values()), {k: str(d) for k, d in vs_ce.items()}   # the claim

# %% tags=["nbval-ignore-output"]
Markdown("**Accuracy, from the runs above.** " + " ".join(
    f"At {shot} shot{'s' * (shot > 1)}, PT alone against CE: {vs_ce[shot, 'PT'].mean:+.3f} ± {vs_ce[shot, 'PT'].se:.3f} "
    f"(ahead on {vs_ce[shot, 'PT'].wins} of {vs_ce[shot, 'PT'].n} seeds): **{vs_ce[shot, 'PT'].verdict}**; "
    f"(CE + PT)/2 against CE: {vs_ce[shot, 'CE+PT'].mean:+.3f} ± {vs_ce[shot, 'CE+PT'].se:.3f} "
    f"(ahead on {vs_ce[shot, 'CE+PT'].wins} of {vs_ce[shot, 'CE+PT'].n}): **{vs_ce[shot, 'CE+PT'].verdict}**."
    for shot in (1, 5)))
assert all(d.verdict == "ahead" for d in vs_ce.values())          # the sentence above says it

# %% [markdown] slideshow={"slide_type": "subslide"}
# The assert (in the cell that prints the differences): Proto-Triplet, alone and averaged with CE, is ahead of CE
# at both shots, by a mean paired difference larger than twice its standard error over the eight seeds, the margin
# the measured spread supports. Two properties of the loss behind the margin picture, checked on a real test
# episode of a trained network (they hold for any network, so they are not measurements): PT puts exactly two
# non-zero weights on each query whose hinge is active and none on the others, and the purity $\gamma$ has no
# gradient.

# %%
*_, y_real, D_real = fs.project_episode(runs[1, "PT"][0].z_test, support, query, shot=1)
W_pt = lv.pair_weights(fs.proto_triplet_loss, D_real, y_real, signed=True)
assert torch.equal((W_pt != 0).sum(1), 2 * fs.active_queries(D_real, y_real).long())   # 2 weights per active query
leaf = nb.D.clone().requires_grad_(True)
assert not fs.icnn_terms(leaf, nb.same, k=nb.k)["gamma"].requires_grad      # purity has no gradient

# %% [markdown] slideshow={"slide_type": "subslide"}
# **What we do not claim.**
# - *The paper's numbers.* They come from ConvNet-4 and ResNet-12 backbones trained for 200 epochs × 100 episodes
#   of 20–30 ways on miniImageNet. Here: a small MLP, 300 episodes, synthetic identities.
# - *A gain at convergence.* Every run is still improving at 300 episodes, and part of a difference at a fixed
#   budget can be speed (exercise 2).
# - *A gain on any data.* The noise features make training worthwhile; on the clean identities the raw features are
#   already hard to beat (exercise 4).
# - *Anything about ICNN training.* The default run does not train ICNN; exercise 1 does, with the same paired
#   rule. Its properties (range, scale invariance, sparse weights, a purity without gradient) are checked in
#   section 3.
#
# ## 7. Pitfalls
#
# **A 1-shot support set has no same-class neighbours.** The code's `suppicnn` scores the support set alone.
# With one shot, no point has a same-class neighbour: $\lambda_{same}=1$ and $\gamma=0$ whatever the network does
# (and with few points $k$ is reduced and $\gamma$ is set to 1). `fullicnn`, with shot + query $\ge k+1$ points
# per class, avoids it.

# %%
one_shot = fs.icnn_neighbours(z_s, y_s, k=4)                     # 5 supports, one per class
t1 = fs.icnn_terms(one_shot.D, one_shot.same, k=one_shot.k, reduced=one_shot.reduced)
print(f"k reduced to {one_shot.k} (reduced: {one_shot.reduced}); λ_same {float(t1['lam_same']):.2f}, "
      f"γ {float(t1['gamma']):.2f}")
assert float(t1["lam_same"]) == 1.0 and one_shot.reduced and float(t1["gamma"]) == 1.0

# %% [markdown] slideshow={"slide_type": "subslide"}
# **The dropped first neighbour.** The code takes the $\text{ipc}+1$ nearest points of the target set and drops
# the first as "the point itself". For `queryicnn` (queries against supports or prototypes) the first is a real
# neighbour, and it is dropped all the same. lossviz reproduces this by default (`drop_first=True`),
# `drop_first=False` keeps it:

# %%
kept = fs.icnn_neighbours(z_q, y_q, z_s, y_s, k=2, drop_first=False)
dropped = fs.icnn_neighbours(z_q, y_q, z_s, y_s, k=2)
nearest = torch.cdist(z_q, z_s).argmin(dim=1)
print("queries whose nearest support is ignored:", int((dropped.index != nearest[:, None]).all(1).sum()), "of", len(y_q))
assert torch.equal(kept.index[:, 0], nearest) and torch.equal(dropped.index[:, 0], kept.index[:, 1])

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Squared or not.** CE uses $D^2$, PT uses $D$. A margin of 0.5 on $D$ is not a margin of 0.5 on $D^2$; mixing
# them up silently changes the effective margin. And on unnormalised embeddings the margin is in absolute units:
# a network can make it easy or hard just by changing the size of its embedding (section 5's margin figure).
#
# **Averaging the terms.** The code divides the sum of the selected terms by their number. Toggling a term then
# changes the scale of the loss. With Adam this hardly matters, since Adam's step does not depend on the scale
# of the gradient (up to its $\epsilon$); with SGD (the code's choice for ResNets) it changes the learning rate:

# %%
def one_adam_step(scale):
    torch.manual_seed(0)
    net = torch.nn.Linear(4, 2)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    (scale * net(torch.ones(3, 4)).pow(2).sum()).backward()
    opt.step()
    return net.weight.detach().clone()


adam_gap = float((one_adam_step(1.0) - one_adam_step(1 / 3)).abs().max())
print("max |step(L) - step(L/3)| under Adam:", "< 1e-8" if adam_gap < 1e-8 else adam_gap)
assert torch.allclose(one_adam_step(1.0), one_adam_step(1 / 3), atol=1e-8)

# %% [markdown] slideshow={"slide_type": "subslide"}
# **More traps.**
# - *The epsilon matters.* Without the $10^{-6}$ inside the square root, the gradient of $D$ is infinite when a
#   query sits exactly on its prototype (with one shot, a query can be a near-copy of the support).
# - *$\delta_i=\infty$.* A point with no different-class neighbour has $\delta_i=\infty$. Multiplying by it gives
#   `0 × inf = NaN`; lossviz masks instead (`torch.where`), the code divides by it (giving 0).
# - *One class in the target set.* If no point has a different-class neighbour, $\lambda_{diff}$ is set to 1:
#   the code writes it as $|0 + (-1)|$.
# - *Few training classes.* With five training classes every five-way episode is the same task; the paper samples
#   20–30 ways out of 64 classes, which is most of what makes episodic training useful. Check how many distinct
#   tasks your sampler can produce before trusting a few-shot comparison.
# - *A raw-feature baseline.* Always measure nearest-prototype accuracy on the raw inputs of the test classes. If
#   it is already high, a trained embedding has little to add, and a comparison of losses mostly measures how
#   much each one damages a good starting point.
#
# ## 8. Exercises
# 1. **ICNN on the identities.** Train (CE + ICNN)/2 on the eight seeds at 1 shot and compare it with CE using
#    `lv.metrics.paired_difference`: ahead, behind or a tie? Does it raise the ICNN score of the unseen identities
#    that it optimises on the training ones? *Hint:* `fs.train_fewshot(fs.COMBOS["CE+ICNN"], shot=1, seed=s,
#    iters=ITERS, eval_every=EVAL_EVERY, progress=False)`; `fs.episode_stats(run.z_test, run.y_test, shot=1,
#    way=WAY)["score"]`.
# 2. **Longer training.** All runs are still improving at 300 episodes. Train CE and PT for 1500 episodes on three
#    seeds. Does PT's lead hold, shrink or grow? *Hint:* `iters=1500, eval_every=300`, then read `run.evals["acc"]`.
# 3. **The margin's units.** Train (CE + PT)/2 and PT with $m = 0.1$ and $m = 2$ and compare the size of the test
#    embeddings (`run.z_test.norm(dim=1).mean()`) with CE's. Does PT alone grow its embedding to meet a large
#    margin? *Hint:* the margin figure shows where each run's hinges switch off.
# 4. **No nuisance features.** Train CE and PT on the clean identities (`data="ids"`: 12 samples per identity, so
#    use 1 shot) and compare them with the raw clean features printed in section 5. What did the noise features
#    change?
# 5. **Make γ count.** $\gamma$ has no gradient. Replace it by a soft purity (e.g. a softmax over neighbour
#    distances, the probability that the nearest neighbour is of the same class) and write it as a loss with
#    `fs.icnn_neighbours`. Which of its weights are non-zero?
#
# ## 9. Summary
# - Few-shot losses are functions of a small query–prototype distance matrix, so their gradients are pictures:
#   ProtoNet's cross-entropy pushes softly on every prototype; Proto-Triplet pulls the own prototype and pushes
#   the nearest wrong one, for violating queries only (batch-hard triplet with prototypes as partners).
# - The ICNN score rates neighbourhoods with three parts; two are ratios of distances, one (purity) is a count
#   with no gradient, and the score is unchanged when the embedding is scaled.
# - Episodic training needs many classes, so that every episode is a new task. On 300 synthetic training
#   identities with nuisance features, tested on 100 unseen ones, Proto-Triplet (alone, and averaged with CE) is
#   ahead of ProtoNet's cross-entropy on eight paired seeds at 1 and 5 shots (section 6 prints by how much).
# - The margin is in distance units: PT alone keeps its embedding small, so more test queries sit inside the
#   margin, but shallowly; the mean hinge is its value at $m=0$ plus the area under the active-hinge curve.
#
# **References.** Mendez-Ruiz et al., *SuSana Distancia is all you need*, arXiv:2305.09062, 2023.
# Snell, Swersky, Zemel, *Prototypical Networks for Few-shot Learning*, NeurIPS 2017.
# Schroff, Kalenichenko, Philbin, *FaceNet*, CVPR 2015. Hermans, Beyer, Leibe, *In Defense of the Triplet Loss
# for Person Re-Identification*, 2017. Vinyals et al., *Matching Networks for One Shot Learning*, NeurIPS 2016
# (episodic training). Wang et al., *Multi-Similarity Loss with General Pair Weighting*, CVPR 2019 (notebook 01).
