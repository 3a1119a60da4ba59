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
# # 05 — SymFace: a facial symmetry loss on top of ArcFace
#
# **Paper.** Pritesh Prakash, Koteswar Rao Jerripothula, Ashish Jacob Sam, Prinsh Kumar Singh, S Umamaheswaran.
# *SymFace: Additional Facial Symmetry Loss for Deep Face Recognition.* 2024.
# [arXiv:2409.11816](https://arxiv.org/abs/2409.11816) · official code: none found (searches for "SymFace",
# "3PSS" and the loss's wording turned up nothing).
#
# **The story.** Faces are roughly symmetric: cut a face down the middle, mirror the right half, and it looks
# like the left half of the same person. So a face-recognition network should give the two halves nearly the
# same embedding. SymFace adds exactly that requirement as an extra loss next to ArcFace, and applies it only to
# faces that look straight at the camera. The hope is that the network learns to ignore things that affect
# one side only, such as lighting from one side or a lopsided expression, and so separates people better.
#
# **A warning first.** Without the paper's code we could only confirm the outline of the loss. **The exact
# formula below is our reconstruction — verify it against the paper.** Every place where we had to guess is
# marked *(reconstructed)*.
#
# In this notebook you will build the loss, see its gradient weights, move its knobs, train it on small
# synthetic faces that *are* symmetric, and compare it with ArcFace alone on 8 paired seeds. You will also meet
# its failure mode: the loss has no negative pairs, so with too much weight (or with half-face inputs that do not
# look like faces) all half-face embeddings *collapse* together.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Setup
#
# One cell: imports, seeds, one torch thread, and the `FAST` switch (`LOSSVIZ_FAST=1` trains for fewer steps;
# the comparison keeps its 8 paired seeds).

# %%
import inspect

import numpy as np
import torch
import torch.nn.functional as F
from IPython.display import Markdown

import lossviz as lv
from lossviz import data, plots
from lossviz.papers import symface as sy
from lossviz import train as T

FAST = T.setup(seed=0)
SEEDS = tuple(range(8))                 # the paired seeds of the comparison (section 6)
ITERS = 150 if FAST else 200
print("lossviz", lv.__version__, "| torch", torch.__version__, "| FAST =", FAST, "| steps per run:", ITERS)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1. The idea and the math
#
# **The main loss.** ArcFace (notebook 02) classifies each training face $x_i$ of person $y_i$ with a cosine
# classifier: $\cos\theta_{ik}$ between the embedding $f(x_i)$ and the class weight of person $k$, an angular
# margin $m$ on the correct class, a scale $s$:
#
# $$L_f = -\frac1B\sum_i \log\frac{e^{s\cos(\theta_{iy_i}+m)}}{e^{s\cos(\theta_{iy_i}+m)}+\sum_{k\ne y_i}e^{s\cos\theta_{ik}}}.$$
#
# **Confirmed about SymFace.** The total loss is $L = L_f + L_\rho$, with $L_f$ ArcFace or AdaFace.
# $L_\rho$ penalises the disagreement between the embeddings of the two half-faces. A *frontness* score $\rho$,
# from the x-coordinates of both eyes and the nose (landmarks from a RetinaFace detector), selects near-frontal
# faces. The paper calls this the "3-point symmetric split" (3PSS).
#
# **The formula we use (reconstructed — verify against the paper).**
# - *Frontness.* With $e_l, e_r, n$ the x-coordinates of the left eye, the right eye and the nose,
#   $D = \dfrac{|(e_l+e_r)/2 - n|}{|e_r - e_l|}$ is how far the nose sits from the eyes' midpoint, relative to the
#   eye distance, and $\rho = \mathrm{clip}(1 - D/D_{max}, 0, 1)$. A face is **kept** when $\rho \ge \rho_{min}$.
#   (The paper writes this threshold τ; lossviz calls it `rho_min`, because everywhere else in lossviz τ is a
#   temperature.)
# - *Split.* Cut the aligned image at its centre column into a left half and a right half, and **mirror** the
#   right half, so that both halves show the left side of the face. Then complete each half into a full-size face
#   with its own mirror image: $x_L = [\,\text{left} \mid \text{mirror(left)}\,]$ and
#   $x_{R'} = [\,\text{mirror(right)} \mid \text{right}\,]$. Both are mirror-symmetric faces, and both go through
#   the same network $f$ as the full faces. (How the paper brings a half to the network's input size was not
#   confirmed. Completing it by its mirror keeps the input a face, so $L_\rho$ trains the same weights, over all
#   input columns, that full faces use. Zero-padding the other half,
#   this lesson's first reading, leaves the right-hand columns empty. The network then sees "a half", not a
#   face, and $L_\rho$ never trains the weights that read those columns. Section 6 shows what that costs.)
# - *Symmetry loss.* With $c_i = \cos\big(f(x_{L,i}), f(x_{R',i})\big)$ and $n$ the number of kept faces,
#
# $$L_\rho = \frac1n \sum_{i\ \text{kept}} \rho_i\,(1 - c_i), \qquad L = L_{ArcFace} + w_{sym}\,L_\rho .$$
#
#   (The paper may use an unweighted distance, or a squared error.)
#
# **The General Pair Weighting view (notebook 01).** $L_\rho$ is a function of the half-pair cosines alone, and
#
# $$\frac{\partial L_\rho}{\partial c_i} = -\frac{\rho_i}{n}\ \text{ for kept faces},\qquad 0 \text{ otherwise}.$$
#
# That is a **constant pull** on one positive pair per face, like the positive half of the contrastive loss —
# and **no push**: no pair of *different* people appears in $L_\rho$. Nothing in $L_\rho$ stops the network from
# sending every half-face to the same point, which makes $c_i = 1$ for every face and $L_\rho = 0$. Only the
# ArcFace term resists. The completed halves are faces, and ArcFace needs the faces of different people apart.
# How well it resists depends on the weight $w_{sym}$; we will measure it (section 6).

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 2. From formula to code
#
# ### The miniature: synthetic faces that really are symmetric
# Real face data (CASIA-WebFace, MS1M) and a landmark detector are out of reach, so we generate faces.
# - Each **person** is a random 12×6 pattern, smoothed and mirrored: a 12×12 face that is *exactly*
#   left-right symmetric.
# - Each **image** adds nuisances on a random side: an "expression" blob (3×3) in one half, light from one side
#   (a ramp that fades out at the centre), a pose (the whole face shifted by −1, 0 or +1 pixel), and pixel noise.
#   The nuisances are larger than the differences between people, as lighting often is in photographs.
# - The **landmarks** are what a detector would report on an eye-aligned crop: the eyes where alignment put
#   them, the nose on the face's axis, each with 0.1 px of detector jitter. So $\rho$ is close to 1 for a centred face
#   and 0 for a shifted one ($D_{max} = 1/6$: a nose one pixel off scores 0). About a third of the faces are kept.
#
# 300 people × 10 images; we train on 200 people and verify on the other 100, never seen in training.

# %%
faces = sy.faces()
print(faces)
print("every person's clean face equals its mirror image:", torch.equal(faces.templates, sy.mirror(faces.templates)))
assert torch.equal(faces.templates, faces.templates.flip(-1))

# %% [markdown] slideshow={"slide_type": "subslide"}
# Three images of one unseen person, then the two views the loss compares: $x_L$, the left half completed by its
# mirror image, and $x_{R'}$, the mirrored right half completed the same way. Both are symmetric faces. For a centred
# face they match up to the nuisances, because each view carries the nuisances of one side only. A shifted face
# splits off-axis. Without the mirror ($x_R$, the right half completed as it is) the views do not correspond at all.

# %%
te = faces.test
idx = [int(torch.nonzero((te.y == te.y[0]) & (te.shift == s))[0]) for s in (0, 1, -1)]
fig, axes = plots.new_figure(6, 3, width=1.9, height=2.05)
for row, i in enumerate(idx):
    xl, xr = sy.split_halves(te.x[i])
    _, xr_plain = sy.split_halves(te.x[i], mirror=False)
    sy.show_faces(axes[row], [faces.templates[te.y[i]], te.x[i], xl, xr, xr_plain, (xl - xr).abs()],
                  ["person", f"image, shift {int(te.shift[i]):+d}", "$x_L$ (left, completed)",
                   "$x_{R'}$ (right, mirrored)", "$x_R$ (no mirror)", "$|x_L - x_{R'}|$"])
    axes[row, 1].set_xlabel(f"ρ = {float(te.rho[i]):.2f}")
fig

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### The loss in lossviz
# `sy.half_pair_loss` is the loss written on the similarity matrix $S$ of the stacked half embeddings
# $[f(x_{L,1..n});\,f(x_{R',1..n})]$. Row $i$ and row $n+i$ are the two halves of face $i$, so
# $c_i = S_{i,n+i} = S_{n+i,i}$ (the code averages the two entries, so the pull is split evenly between them).
# Writing it on $S$ gives us its pair weights for free, as for every loss in lossviz.

# %%
print(inspect.getsource(sy.half_pair_loss))

# %% [markdown] slideshow={"slide_type": "subslide"}
# The same loss from scratch, on a batch of 24 training faces embedded by an untrained network (float64), and
# compared with `sy.symmetry_loss`:

# %%
torch.manual_seed(0)
net = sy.face_net("mlp").double()
x24, rho24 = faces.train.x[:24].double(), faces.train.rho[:24].double()
zl, zr = (net(h) for h in sy.split_halves(x24))
kept = rho24 >= 0.5
scratch = (rho24 * (1 - F.cosine_similarity(zl, zr, dim=1)))[kept].sum() / kept.sum()
ours = sy.symmetry_loss(zl, zr, rho24, rho_min=0.5)
gap = float((scratch - ours).abs().detach())
print(f"from scratch {float(scratch.detach()):.4f}   lossviz {float(ours.detach()):.4f}   "
      f"|difference| {'< 1e-12' if gap < 1e-12 else gap}   kept {int(kept.sum())} of 24")
assert gap < 1e-12

# %% [markdown] slideshow={"slide_type": "subslide"}
# **An exact check (check 1 of section 7).** For a face equal to its own mirror image, $x_L$ and $x_{R'}$ are the same
# array, so *any* network gives them the same embedding, and $L_\rho = 0$ (up to the rounding of $1-\cos(z,z)$).

# %%
clean = faces.templates[200:]                       # the 100 unseen people, without nuisances
cl, cr = sy.split_halves(clean)
exact = {}
for name, model in (("random MLP", sy.face_net("mlp")), ("random CNN", sy.face_net("cnn"))):
    with torch.no_grad():
        zl_c, zr_c = model(cl), model(cr)
    exact[name] = float(sy.symmetry_loss(zl_c, zr_c, torch.ones(len(clean))))
    assert torch.equal(zl_c, zr_c) and exact[name] < 1e-6
print("L_ρ on the 100 clean unseen faces:", {k: "< 1e-6" if abs(v) < 1e-6 else v for k, v in exact.items()})

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 3. Weights as pictures
#
# **Who gets gradient.** Left: the frontness $\rho$ of 300 training faces against their pose shift, with the
# threshold $\rho_{min} = 0.5$. Only the filled faces receive any $L_\rho$ gradient. Right: the weight each kept face
# gets on its own half pair, $-\partial L_\rho / \partial c_i$, read by autograd (`sy.half_pair_weights` makes $S$
# a leaf and reads its gradient), against the reconstruction's closed form $\rho_i/n$.

# %%
b = faces.train.subset(slice(0, 300))
S300 = lv.similarity(torch.cat([net(h) for h in sy.split_halves(b.x.double())]).detach())
W300 = sy.half_pair_weights(S300, torch.cat([b.y, b.y]), rho=b.rho.double(), rho_min=0.5)
pull, keep300 = -(W300.diagonal(offset=300) + W300.diagonal(offset=-300)), b.rho >= 0.5
fig, axes = plots.new_figure(2, width=4.8, height=3.7)
sy.plot_frontness(axes[0, 0], b, rho_min=0.5)
axes[0, 1].scatter(b.rho[keep300], pull[keep300], color=plots.POS_COLOR, s=14, label="autograd")
axes[0, 1].plot([0.5, 1], [0.5 / keep300.sum(), 1 / keep300.sum()], "k--", lw=1, label="ρ / n")
axes[0, 1].set(xlabel="frontness ρ_i of a kept face", ylabel="pull weight  -∂L_ρ/∂c_i", title="per-face pull, n kept faces")
axes[0, 1].legend()
fig

# %%
off_pair = W300.clone()
off_pair.diagonal(offset=300).zero_()
off_pair.diagonal(offset=-300).zero_()
err = float((pull[keep300] - b.rho[keep300].double() / keep300.sum()).abs().max())
print(f"{int(keep300.sum())} of 300 faces kept; max |autograd - ρ/n| on kept faces "
      f"{'< 1e-15' if err < 1e-15 else err}; largest weight on any other pair = {float(off_pair.abs().max()):.1e}")
assert torch.allclose(pull, torch.where(keep300, b.rho.double() / keep300.sum(), 0.0), atol=1e-15)
assert float(off_pair.abs().max()) == 0.0           # no push: pairs of different people get no weight

# %% [markdown] slideshow={"slide_type": "subslide"}
# **The same batch as pair-weight maps.** Twelve faces (four people × three images), the 24 half embeddings
# sorted by person; the outlined blocks hold the halves of one person. Blue pulls a pair together, vermillion
# pushes it apart. Left: the reconstruction (only the kept faces' own half pairs, all blue). Right: an InfoNCE
# term between halves (an *exercise*, not the paper's loss): it also **pushes the halves of different people
# apart**, which is exactly what $L_\rho$ lacks.

# %%
b12 = faces.test.subset(torch.cat([torch.nonzero(faces.test.y == k)[:3, 0] for k in (200, 201, 202, 203)]))
S12 = lv.similarity(torch.cat([net(h) for h in sy.split_halves(b12.x.double())]).detach())
y12 = torch.cat([b12.y, b12.y])
fig, axes = plots.new_figure(2, width=4.3, height=4.0)
for ax, variant in zip(axes[0], ("cosine", "infonce")):
    Wv = sy.half_pair_weights(S12, y12, rho=b12.rho.double(), rho_min=0.0, variant=variant)
    plots.weight_heatmap(ax, Wv, y12, title=f"{variant}: ∂L/∂S (all faces kept)")
fig

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 4. Explore
#
# The panels here are built on `lossviz.widgets`: moving a control redraws the figure in place,
# and a Train button runs a real training run, cached by its settings.
#
# **The pure-maths panel.** A fixed batch of six unseen people × three images, embedded by an ArcFace network
# (trained as in section 6, seed 0). Move $w_{sym}$, the threshold $\rho_{min}$, the variant, the mirror and the nuisance
# strength; the panel redraws at once. Things to try:
# - $\rho_{min}$ from 0.5 up to 0.85: fewer faces are kept, and each kept face's pull $\rho_i/n$ **grows**, because $n$
#   shrinks (the mean over kept faces renormalises). At 0.95 no face is kept and $L_\rho = 0$.
# - *cosine, no ρ factor*: every kept face gets the same pull $1/n$.
# - *InfoNCE*: vermillion pushes appear between the halves of different people.
# - mirror off: the status line's half disparity jumps, since the halves no longer correspond.

# %% tags=["nbval-ignore-output"]
base0 = sy.train_symface(w_sym=0.0, seed=0, iters=ITERS, progress=False)
maths_panel = sy.symmetry_panel(base0.model, templates=faces.templates[200:206])
assert maths_panel.state["push"] == 0 and 0 < int(maths_panel.state["keep"].sum()) < 18
maths_panel

# %% [markdown] slideshow={"slide_type": "subslide"}
# The panel is an ordinary object: setting a control redraws it.

# %%
kept_before, pull_before = int(maths_panel.state["keep"].sum()), maths_panel.state["pull"].max()
maths_panel.controls["rho_min"].value = 0.85
kept_now, pull_now = int(maths_panel.state["keep"].sum()), maths_panel.state["pull"].max()
print(f"ρ_min = 0.5: {kept_before} faces kept, largest pull {float(pull_before):.3f};  "
      f"ρ_min = 0.85: {kept_now} kept, largest pull {float(pull_now):.3f}")
assert 0 < kept_now < kept_before and pull_now > pull_before
maths_panel.controls["rho_min"].value = 0.5

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 5. Which data have the symmetry the loss assumes?
#
# $L_\rho$ assumes that the mirrored right half shows *the same thing* as the left half. Our synthetic people
# are symmetric by construction. Are handwritten digits (lossviz's other small image set)?
#
# A simple test: compute each class's mean image, and ask whether a **mirrored** image is still nearest to
# its own class mean. For the faces we use each person's clean face as the class centre. Since that centre
# equals its mirror image, an image and its mirror image are *exactly* as far from it.

# %%
dg = data.digits("seen")
x_dig = torch.cat([dg.x_train, dg.x_test]).reshape(-1, 8, 8)
y_dig = torch.cat([dg.y_train, dg.y_test])
digit_rates = sy.mirror_test(x_dig, y_dig)
face_rates = sy.mirror_test(te.x, te.y, centres=faces.templates[te.y.unique()])
face_rate = np.mean([r for r, _ in face_rates.values()]), np.mean([rm for _, rm in face_rates.values()])
print("digit:          " + " ".join(f"{k:5d}" for k in digit_rates))
print("image kept:     " + " ".join(f"{r:5.2f}" for r, _ in digit_rates.values()))
print("mirror kept:    " + " ".join(f"{rm:5.2f}" for _, rm in digit_rates.values()))
print(f"faces (100 unseen people): image {face_rate[0]:.2f}, mirror image {face_rate[1]:.2f}")
assert face_rate[0] == face_rate[1]
assert min(rm for _, rm in digit_rates.values()) < 0.1

# %%
pick = [int(torch.nonzero(y_dig == k)[0]) for k in (2, 3, 5, 7, 0, 8)]
fig, axes = plots.new_figure(6, 2, width=1.3, height=1.5)
for col, i in enumerate(pick):
    for row, img in enumerate((x_dig[i], sy.mirror(x_dig[i]))):
        axes[row, col].imshow(img, cmap="gray_r")
        axes[row, col].set(xticks=[], yticks=[], title=("digit " if row == 0 else "mirrored ") + str(int(y_dig[i])))
        axes[row, col].grid(False)
fig

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Digits do not have the symmetry the loss assumes.** A mirrored 2, 3, 5, 6 or 7 is a different shape — a
# mirrored 3 is nearest to the mean "3" for almost none of the images — and even a 0 or an 8 is written with a
# slant. The left half of a "3" and its mirrored right half are not two views of the same thing, so $L_\rho$
# would pull together halves that *should* differ. That is why this notebook trains on synthetic faces, whose
# identity *is* symmetric and whose nuisances are not. (Real faces sit in between: nearly symmetric, with some
# real asymmetry.) The setting is favourable to the idea on purpose.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 6. A real training run
# **Protocol.** The synthetic faces above: 200 training people (2000 images), 100 unseen people (1000 images)
# for verification. An MLP 144 → 256 → 32 with L2-normalised output, ArcFace with $s = 16$, $m = 0.3$. (The paper's
# ArcFace settings were not checked; ArcFace's usual defaults, $s = 64$, $m = 0.5$, are meant for large networks
# and data sets; the Train panel lets you try them.) Adam, learning rate 2e-3, random batches of 128 images, and
# the number of steps printed by the setup cell. The kept faces ($\rho_{min} = 0.5$) also enter as their two
# mirror-completed halves. We train ArcFace alone ($w_{sym} = 0$) and ArcFace + $L_\rho$ ($w_{sym} = 1$) with the
# same ArcFace knobs, data and number of steps. On each of **8 seeds** both start from the same initialisation and
# see the same batches, so every seed gives one paired comparison.
#
# **Metric.** TAR@FAR = 1e-2 on the unseen people: over all pairs of their images, the threshold that accepts 1% of
# impostor pairs (about 5,000 of 495,000), and the share of the 4,500 genuine pairs above it. One run's TAR moves by
# about 0.01 with the seed alone, so methods are compared seed by seed (`lv.metrics.paired_difference`).

# %% tags=["nbval-ignore-output"]
RUNS = {"ArcFace": dict(w_sym=0.0), "+ symmetry (cosine)": dict(w_sym=1.0)}
runs = {name: [sy.train_symface(seed=s, iters=ITERS, **kw) for s in SEEDS] for name, kw in RUNS.items()}
assert runs["ArcFace"][0] is base0                  # the panel's network came from the cache
assert all(np.isfinite(r.history["loss"]).all() for rs in runs.values() for r in rs)
arc_term = lambda r: np.asarray(r.history["arcface"])                   # noqa: E731
assert all(arc_term(r)[-20:].mean() < arc_term(r)[:20].mean() / 5 for rs in runs.values() for r in rs)
assert all(r.tar > r.scores["tar_before"] + 0.2 for rs in runs.values() for r in rs)   # every run learns, baseline too

# %% tags=["nbval-ignore-output"]
print(f"{'':22s}{'seed':>5s} {'TAR before':>11s} {'TAR@1e-2':>9s} {'half 1-c':>9s} {'cross-person':>13s} {'light sens.':>12s}")
for name, rs in runs.items():
    for r in rs:
        m_ = r.scores
        print(f"{name:22s}{r.params['seed']:5d} {m_['tar_before']:11.3f} {m_['tar']:9.3f} {m_['half_disparity']:9.3f} "
              f"{m_['cross_half_cos']:13.3f} {m_['light_sensitivity']:12.3f}")
assert all(len(rs) == len(SEEDS) for rs in runs.values())
assert all(s_.scores["half_disparity"] < a_.scores["half_disparity"] for a_, s_ in zip(*runs.values()))

# %% [markdown] slideshow={"slide_type": "subslide"}
# *TAR before*: the untrained network's TAR (every run climbs far above it). *half 1−c*: the half disparity on
# unseen, centred faces. *cross-person*: the mean cosine between the left-half views of two different unseen people.
# *light sens.*: $1-\cos$ between a clean face lit from the left and the same face lit from the right (smaller =
# less sensitive to one-sided light).
#
# ### Learning curves
# Thin lines are seeds. The ArcFace term trains with or without $L_\rho$ (either way it falls to a small fraction of
# its starting value). The half disparity (logged every 10th step, also when $w_{sym} = 0$, where it has no gradient) ends
# lower once $L_\rho$ is on, on the training batches and on unseen faces. The cosine between the halves of
# *different* people falls to near 0 with or without $L_\rho$: the two views of each face are pulled together, and
# the views of different people are not.

# %% tags=["nbval-ignore-output"]
fig, axes = plots.new_figure(4, width=3.6, height=3.3)
sy.plot_curves(axes[0], runs)
for a_, s_ in zip(runs["ArcFace"], runs["+ symmetry (cosine)"]):
    assert np.mean(s_.history["half_disparity"][-3:]) < 0.9 * np.mean(a_.history["half_disparity"][-3:])
    assert s_.evals["half_disparity"][-1] < 0.9 * a_.evals["half_disparity"][-1]
    assert s_.evals["cross_half_cos"][-1] < 0.2                                 # w_sym = 1: no collapse
fig

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Half disparity against frontness, before and after
# Each dot is an unseen face: its frontness $\rho_i$ and its half disparity $1 - c_i$. Before training, centred
# faces already have somewhat closer halves than turned ones. ArcFace alone drives the halves of turned faces
# further apart than those of centred faces. With $L_\rho$ the centred faces, the kind that received the pull,
# end with clearly closer halves than under ArcFace. The turned faces, whose halves are cut off-axis and never
# received $L_\rho$ gradient, keep their halves far apart. The network has not learned to map every half to one point.

# %% tags=["nbval-ignore-output"]
fig, axes = plots.new_figure(3, width=3.9, height=3.4, sharey=True)
r0, s0 = runs["ArcFace"][0], runs["+ symmetry (cosine)"][0]
for ax, (title, d, color) in zip(axes[0], (("before training", r0.half_cos_before, plots.MUTED),
                                           ("after ArcFace", r0.half_cos_after, sy.SYM_COLORS["ArcFace"]),
                                           ("after ArcFace + L_ρ", s0.half_cos_after, sy.SYM_COLORS["+ symmetry (cosine)"]))):
    ax.scatter(r0.rho, 1 - d, s=6, color=color, alpha=0.5)
    ax.set(title=title, xlabel="frontness ρ_i")
axes[0, 0].set_ylabel("half disparity 1 - c_i")
d0, d_arc, d_sym, front = 1 - r0.half_cos_before, 1 - r0.half_cos_after, 1 - s0.half_cos_after, r0.rho >= 0.5
assert d0[front].mean() < d0[~front].mean()                                   # before: centred faces closer
assert (d_arc - d0)[front].mean() < (d_arc - d0)[~front].mean()               # ArcFace: turned faces drift apart most
assert d_sym[front].mean() < d_arc[front].mean() - 0.05                       # L_ρ: centred faces' halves closer
assert d_sym[~front].mean() > d_sym[front].mean() + 0.2                       # ... turned faces' halves stay apart
fig

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### The weight $w_{sym}$, the half inputs, and the collapse
# $L_\rho$ has a pull and no push (section 1), so it can always be lowered by moving *all* half-faces together.
# Two settings let that happen. We show each on seed 0 as a **knob**: an illustration, not a claim.
# - **Too much weight.** At $w_{sym} = 5$ the pull outweighs ArcFace's need to keep people apart.
# - **Half inputs that do not look like faces.** With zero-padded halves (`fill="zero"`, this lesson's first
#   reading) every half input has an empty right side. The network can recognise "a half" and send all halves to
#   one region, at little cost to the full faces.
#
# The InfoNCE variant is an **exercise, not the paper's loss**: it adds a push between the halves of different people.

# %% tags=["nbval-ignore-output"]
knobs = {"+ symmetry, w_sym = 5": sy.train_symface(w_sym=5.0, seed=0, iters=ITERS),
         "+ symmetry, zero-padded halves": sy.train_symface(w_sym=1.0, fill="zero", seed=0, iters=ITERS)}
variants = {"+ InfoNCE halves": sy.train_symface(variant="infonce", seed=0, iters=ITERS)}
assert all(np.isfinite(v.history["loss"]).all() and v.tar > v.scores["tar_before"] for v in (knobs | variants).values())

# %% [markdown] slideshow={"slide_type": "subslide"}
# Left: cosines between the half views of two *different* unseen people (each run measured on the half views it
# trained with). ArcFace alone spreads them around 0, and so does $L_\rho$ at $w_{sym} = 1$ with mirror-completed
# halves. At $w_{sym} = 5$, and with zero-padded halves, they pile up towards 1: the half-faces of different people
# have become alike. Right: the spread of the **full-face** embeddings (what verification uses) and of the left-half
# views, as mean $1-\cos$ over same-person pairs (intra, blue) and different-person pairs (inter, vermillion), for
# each of the 8 seeds.

# %% tags=["nbval-ignore-output"]
seed0 = {"ArcFace": r0, "+ symmetry (cosine)": s0, **knobs}
fig, axes = plots.new_figure(3, width=4.1, height=3.6)
sy.plot_collapse(axes[0, 0], seed0)
sy.plot_spread(axes[0, 1:], runs)
cc = {k: r.scores["cross_half_cos"] for k, r in seed0.items()}
print("cross-person half cosine, seed 0:", {k: round(v, 3) for k, v in cc.items()})
print("TAR@1e-2, seed 0:", {k: round(r.tar, 3) for k, r in seed0.items()})
assert max(abs(cc["ArcFace"]), abs(cc["+ symmetry (cosine)"])) < 0.2                  # w_sym = 1: no pile-up
assert cc["+ symmetry, w_sym = 5"] > cc["ArcFace"] + 0.4                             # too much weight: collapse
assert cc["+ symmetry, zero-padded halves"] > cc["ArcFace"] + 0.1                    # halves that are not faces
arc, sym = runs["ArcFace"], runs["+ symmetry (cosine)"]
spread_d = {k: lv.metrics.paired_difference([s_.scores[k] for s_ in sym], [a_.scores[k] for a_ in arc])
            for k in ("intra", "inter", "half_intra", "half_inter")}
for k, d in spread_d.items():
    print(f"{k:10s} spread, + L_ρ - ArcFace: {d}")
assert spread_d["intra"].verdict == "behind" and spread_d["half_intra"].verdict == "behind"   # same person: closer
assert abs(spread_d["inter"].mean) < 0.02 and abs(spread_d["half_inter"].mean) < 0.05   # different people: apart
fig

# %% [markdown] slideshow={"slide_type": "subslide"}
# **The spread.** With $L_\rho$ at $w_{sym} = 1$ the full faces of one person move closer together (the intra-class
# spread shrinks, on the 8 paired seeds), while different people stay as far apart as under ArcFace alone. That is
# what a verification threshold can use. The half views show the same pattern more strongly, and their
# different-person spread barely changes: no collapse.
#
# ### Lighting sensitivity
# The paper hopes that $L_\rho$ makes the network ignore one-sided light. We test that directly: take each
# unseen person's clean face, light it from the left and from the right, and measure $1-\cos$ between the two
# embeddings. Each bar is a run kind (dots: seeds).

# %% tags=["nbval-ignore-output"]
lit = [faces.templates[200] + sy.lighting_ramp(torch.tensor([side]), 1.0)[0] for side in (-1, 1)]
fig, axes = plots.new_figure(3, width=3.2, height=3.4, gridspec_kw={"width_ratios": [1, 1, 3]})
sy.show_faces(axes[0, :2], lit, ["lit from the left", "lit from the right"])
sens = {k: [r.scores["light_sensitivity"] for r in v]
        for k, v in (runs | {k: [v] for k, v in (knobs | variants).items()}).items()}
ax = axes[0, 2]
ax.bar(range(len(sens)), [np.mean(v) for v in sens.values()], color=[sy.SYM_COLORS[k] for k in sens])
for j, v in enumerate(sens.values()):
    ax.scatter([j] * len(v), v, color="k", s=10, zorder=3)
ax.set_xticks(range(len(sens)), [k.replace("+ ", "+").replace(", ", "\n").replace(" (", "\n(") for k in sens], fontsize=8)
ax.set(ylabel="1 - cos(left-lit, right-lit)", title="lighting sensitivity (lower = better)")
assert len(ax.patches) == len(sens) == 5 and all(0 < v_ < 2 for v in sens.values() for v_ in v)
fig

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Train it yourself.** Pick $w_{sym}$, $\rho_{min}$, the variant, the mirror, how halves enter the network
# (completed by their mirror image, zero-padded, or resized to full width), the nuisance strength, ArcFace's $s$ and
# $m$, the backbone (the CNN has two conv layers with 16 and 32 channels, then average pooling and a linear layer,
# and takes about 5× longer), and a seed, then press **Train**. Each press also trains the same setting with
# $w_{sym} = 0$ as the baseline. An MLP run takes a few seconds; a setting already trained comes back at once from
# the cache.

# %% tags=["nbval-ignore-output"]
train_panel = sy.training_panel(iters=ITERS)
assert train_panel.state["result"]["run"] is s0      # the default setting was trained above: from the cache
train_panel

# %% [markdown] slideshow={"slide_type": "subslide"}
# Driving the panel from code: the InfoNCE variant, seed 0, was trained above, so pressing Train returns at once.

# %%
train_panel.controls["variant"].value = "infonce"
assert train_panel.state["stale"]
result = train_panel.train()
assert result["run"] is variants["+ InfoNCE halves"] and not train_panel.state["stale"]
train_panel.controls["variant"].value = "cosine"

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 7. The claim, checked
#
# **The paper's claim.** Adding the symmetry loss lifts every tested backbone (MobileFaceNet, ShuffleFaceNet and
# others, 128-d embeddings) above its ArcFace or AdaFace baseline on LFW, CFP-FP, CP-LFW, AgeDB and CA-LFW. It also
# makes the network less sensitive to asymmetric expression and lighting.
#
# **What we check here,** on the 8 paired seeds of section 6 (ArcFace + $L_\rho$ at $w_{sym} = 1$ against ArcFace
# alone, same initialisation, batches and budget):
# - *Headline:* TAR@FAR = 1e-2 on unseen people. We assert that the paired gain, even at two standard errors below
#   its mean, exceeds a margin of about the seed-to-seed noise of one run's TAR (`MARGIN["tar"]` below).
# - *The paper's second hope:* lower lighting sensitivity. We assert a paired reduction that, at two standard errors
#   below its mean, exceeds a margin of a few thousandths (`MARGIN["light"]`), against a baseline sensitivity of a few
#   hundredths.
#
# And the mechanism:
# 1. *Exact, a property of the loss:* $L_\rho = 0$ for a face equal to its mirror image, for any network (section 2).
# 2. *Optimisation:* the held-out half disparity is lower with $L_\rho$ on every seed (section 6).
# 3. *No collapse at $w_{sym} = 1$:* the cosine between the halves of different people stays below 0.2 on every
#    seed (section 6). The collapse at $w_{sym} = 5$ or with zero-padded halves is a knob, shown on one seed.

# %% tags=["nbval-ignore-output"]
paired = lv.metrics.paired_difference
MARGIN = {"tar": 0.01, "light": 0.003}              # asserted below mean - 2 se; measured: see the lines printed
claims = {"TAR@1e-2, (+ L_ρ) - ArcFace": paired([r.tar for r in sym], [r.tar for r in arc]),
          "lighting sens., ArcFace - (+ L_ρ)": paired([r.scores["light_sensitivity"] for r in arc],
                                                      [r.scores["light_sensitivity"] for r in sym]),
          "half disparity, ArcFace - (+ L_ρ)": paired([r.scores["half_disparity"] for r in arc],
                                                      [r.scores["half_disparity"] for r in sym])}
for what, d in claims.items():
    print(f"{what:36s} {d}")
print(f"asserted: mean - 2 se above {MARGIN['tar']} (TAR) and {MARGIN['light']} (lighting sensitivity)")
tar_d, light_d = claims["TAR@1e-2, (+ L_ρ) - ArcFace"], claims["lighting sens., ArcFace - (+ L_ρ)"]
info_gain = variants["+ InfoNCE halves"].tar - arc[0].tar
print(f"InfoNCE halves (exercise, seed 0): TAR change {info_gain:+.3f}, "
      f"cross-person half cosine {variants['+ InfoNCE halves'].scores['cross_half_cos']:.3f}")
assert all(d.n == len(SEEDS) == 8 for d in claims.values())
assert tar_d.verdict == "ahead" and tar_d.mean - 2 * tar_d.se > MARGIN["tar"]         # the headline, 8 paired seeds
assert light_d.verdict == "ahead" and light_d.mean - 2 * light_d.se > MARGIN["light"]  # less sensitive to one-sided light

# %% tags=["nbval-ignore-output"]
light_base = np.mean(sens["ArcFace"])
assert tar_d.verdict == light_d.verdict == "ahead"    # what the last sentence but one states (asserted above)
Markdown(f"**From the runs above.** Over {tar_d.n} paired seeds, adding $L_\\rho$ changed TAR@FAR = 1e-2 by "
         f"{tar_d.mean:+.3f} ± {tar_d.se:.3f} (mean ± standard error; higher on {tar_d.wins} of {tar_d.n} seeds: "
         f"**{tar_d.verdict}**). It lowered the lighting sensitivity by {light_d.mean:.3f} ± {light_d.se:.3f}, "
         f"from {light_base:.3f} for ArcFace alone (lower on {light_d.wins} of {light_d.n} seeds: **{light_d.verdict}**). "
         f"At this scale, on faces that are symmetric by construction, the claimed lift shows. The InfoNCE exercise "
         f"(seed 0, not the paper's loss) changed TAR by {info_gain:+.3f}.")

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Reading the verdict.** Why does the term help here? Each completed half is a symmetric face that carries the
# one-sided nuisances of one side only: $x_L$ has the left side's light and expression on both sides, and $x_{R'}$
# the right side's. Pulling their embeddings together teaches the network the weights that ignore which side a
# nuisance sits on, and these are the weights full faces use. So the same person's images move closer (the
# intra-class spread, section 6), and a face lit from the left and from the right look more alike. The limits of this
# check:
# - The setting favours the idea on purpose: the identities are exactly symmetric and the nuisances one-sided
#   (section 5). Real faces are only nearly symmetric.
# - The loss is a reconstruction, and *how the halves enter the network matters.* With zero-padded halves the
#   same loss collapses the half embeddings instead (section 6, seed 0; exercise 2 measures what that does to
#   TAR). The paper's summary does not say how it brings a half to full size.
# - Too much weight brings the collapse back ($w_{sym} = 5$, section 6): $L_\rho$ still has no push.
# - We cannot tell at this scale whether the gain comes from symmetry itself or from the extra face-like views that
#   the halves add to training. Exercise 3 tries to separate the two.

# %%
assert exact["random MLP"] < 1e-6 and exact["random CNN"] < 1e-6           # 1. exact (2. and 3.: section 6)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 8. Pitfalls
#
# - **The loss is a reconstruction.** The frontness formula, $D_{max}$, the $\rho$ weighting, the cosine distance,
#   the mean over kept faces and the way halves enter the network are our guesses. Do not quote them as SymFace's
#   formula. The value of $\rho_{min}$ in the paper was not found.
# - **How halves enter the network matters.** Completing a half by its mirror image gives a face, read by the same
#   weights as every face. Zero-padding makes a half input trivially recognisable ("the right half is empty"), so the
#   network can give all halves one embedding (section 6), and the weights that read the right-hand columns never get
#   an $L_\rho$ gradient. Resizing a half to full width is a third choice (`fill="resize"` in the Train panel). A
#   separate half-face input size would need a second stem.
# - **Too much weight.** $L_\rho$ has no push. Past some $w_{sym}$ the pull wins over ArcFace and the half
#   embeddings collapse (section 6, $w_{sym} = 5$). Tune $w_{sym}$ and watch the cross-person half cosine.
# - **Without the mirror,** $x_L$ and $x_R$ are not corresponding views, and the term pulls together unrelated halves.
#   Try *mirror* off in the Train panel and watch TAR.
# - **$\rho_{min}$ and the mean over kept faces.** With the mean over kept faces, raising $\rho_{min}$ keeps fewer faces but pulls
#   each of them harder (section 4). With a mean over the whole batch, it would pull them all more weakly. The two
#   readings differ by the share of kept faces. Here that share is about a third.
# - **ρ needs landmarks.** The miniature knows its landmarks by construction. Real data needs a landmark detector,
#   and its errors move faces across $\rho_{min}$. A training set with few frontal faces gives $L_\rho$ little to work on,
#   a limitation the paper itself mentions.
# - **Asymmetric data.** Digits, text, most objects: a mirrored half is a different thing (section 5). There,
#   $L_\rho$ pulls together what should differ.
# - **Reading TAR at FAR = 1e-2** on 100 people × 10 images rests on about 5,000 impostor pairs in the tail, and one
#   run's TAR moves by about 0.01 with the seed. Compare methods on paired seeds, never one run against one run.
#
# ## 9. Exercises
# 1. **Where does the collapse start?** Train $w_{sym}$ = 0.3, 2, 3 and 5 with the Train panel. At which weight does
#    the cross-person half cosine leave 0, and what happens to the TAR gain there? *Hint:* collapse is seed-dependent
#    near its onset. Compare on several seeds with `lv.metrics.paired_difference`, as section 7 does. Then give
#    both methods a longer budget (`iters=500`): does the gain at $w_{sym} = 1$ grow or shrink?
# 2. **How halves enter.** Set *half input* to `zero` and train seeds 0-7 (`sy.train_symface(fill="zero", seed=s,
#    iters=ITERS)` in a loop). Is there still a TAR gain over the ArcFace runs of section 6? Then try `resize`, and the
#    CNN backbone, whose convolutions see the same local patterns in a half and in a full face. *Hint:*
#    `run.scores["cross_half_cos"]` tells you whether the halves collapsed.
# 3. **Symmetry, or just more views?** The completed halves are extra face-like training images. The *arcface*
#    variant classifies each half by person, as extra training images, with no direct pull between the two halves
#    of a face. The *infonce* variant pulls the halves of one person together and pushes other people's apart. Train both on a few seeds. Which part of the gain needs
#    the symmetry pull? *Hint:* pair every run with the ArcFace run of the same seed.
# 4. **Turned faces.** Set $\rho_{min} = 0$, so that shifted faces, whose halves are cut off-axis, are pulled together too.
#    What happens to the half disparity of the *centred* faces, and to TAR? *Hint:* in the pure-maths panel, look at
#    which faces get a pull at $\rho_{min} = 0$.
#
# ## 10. Summary
# - SymFace adds $w_{sym} L_\rho$ to ArcFace: the embeddings of the left half and the mirrored right half of a
#   near-frontal face should agree. Frontal faces are picked by a landmark score $\rho \ge \tau$ (our `rho_min`). Our formula is a
#   reconstruction.
# - In the GPW view $L_\rho$ is a constant pull $\rho_i/n$ on one positive pair per kept face, with no push. So
#   sending every half to one point minimises it; only ArcFace on the full faces resists.
# - How a half enters the network matters. Completed by its mirror image, each half is a symmetric face, and
#   $L_\rho$ trains the weights that full faces use. On synthetic faces that really are symmetric, ArcFace + $L_\rho$
#   then beat ArcFace alone on 8 paired seeds, in TAR on unseen people and in lighting sensitivity (section 7 prints
#   and asserts the paired differences). The same person's faces move closer, while different people stay apart.
# - Too much weight ($w_{sym} = 5$) or zero-padded halves bring the collapse back: the half-faces of different
#   people become alike.
# - The loss assumes symmetric identity. Digits do not have it; faces mostly do.
#
# **References.** Prakash et al., *SymFace: Additional Facial Symmetry Loss for Deep Face Recognition*, arXiv:2409.11816,
# 2024. Deng et al., *ArcFace: Additive Angular Margin Loss for Deep Face Recognition*, CVPR 2019. Kim et al.,
# *AdaFace: Quality Adaptive Margin for Face Recognition*, CVPR 2022. Deng et al., *RetinaFace: Single-shot
# Multi-level Face Localisation in the Wild*, CVPR 2020. Wang et al., *Multi-Similarity Loss with General Pair
# Weighting*, CVPR 2019. Chen et al., *A Simple Framework for Contrastive Learning of Visual Representations*
# (SimCLR, NT-Xent), ICML 2020. Hadsell, Chopra, LeCun, *Dimensionality Reduction by Learning an Invariant Mapping*,
# CVPR 2006.
