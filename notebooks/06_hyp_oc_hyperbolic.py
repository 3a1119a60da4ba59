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
# # 06 — Hyp-OC: one-class classification in the Poincaré ball
#
# **Paper.** Kartik Narayan, Vishal M. Patel. *Hyp-OC: Hyperbolic One Class Classification for Face
# Anti-Spoofing.* arXiv:2404.14406, 2024. [arXiv:2404.14406](https://arxiv.org/abs/2404.14406) ·
# official code: [Kartik-3004/hyp-oc](https://github.com/Kartik-3004/hyp-oc) (MIT; its `hyptorch`
# folder holds the Poincaré-ball maths of Khrulkov et al. 2020). lossviz re-implements it.
#
# **The story.** A face-unlock system must reject a printed photo, a video replayed on a screen, or a
# mask. New kinds of attack keep appearing, so a detector trained on *known* attacks fails on the next
# one. Hyp-OC trains on **real faces only** (one-class classification). With only one class there is
# nothing to push against, so the method invents negatives: it draws **pseudo-negatives** from a
# Gaussian placed at the running mean of the real features. It then learns a boundary between real
# and pseudo-negative features **in hyperbolic space** (the Poincaré ball), and adds a pairwise term
# that pulls the real embeddings together. The question: *does hyperbolic geometry give a better
# one-class boundary than the same head in ordinary, Euclidean space?*
#
# **What stands in for faces here.** The face datasets (OULU-NPU, CASIA-MFSD, Replay-Attack, MSU-MFSD,
# Rose-Youtu) are licence-restricted, and the VGG-Face weights are a separate download, so neither is
# used. scikit-learn's 8×8 **digits** play the live faces. A small MLP, trained as a digit
# classifier and then frozen, stands in for the identity-trained face network. Three image
# transformations stand in for the attacks, and training never sees them: **print** (blur and washed-out
# contrast), **replay** (a moiré pattern), **mask** (a gamma change and an occluded bottom). The protocol
# is honest one-class: only live digits are used in training, and the attacks appear only at test time.
# The geometry (the ball, the clipping, the gyroplane, the bounded pair term) is exactly that of the
# paper, and it can be drawn in 2-D.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Setup
#
# One cell: imports, seeds, one torch thread, and the `FAST` switch (`LOSSVIZ_FAST=1` uses two seeds
# instead of three in the comparison runs).

# %%
import inspect
import math

import numpy as np
import torch

from lossviz.papers import hyp_oc as H
from lossviz import plots
from lossviz import train as T
from lossviz import widgets

FAST = T.setup(seed=0)
SEEDS = (0, 1) if FAST else (0, 1, 2)
C, CLIP_R = H.DEFAULTS["c"], H.DEFAULTS["clip_r"]          # official: c = 0.1, clip radius r = 2
print("torch", torch.__version__, "| FAST =", FAST, "| seeds", SEEDS)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1. The idea and the math
#
# ### One class, and negatives made up
# A batch holds $B$ real (live) feature vectors $f_1,\dots,f_B$ from the backbone. Hyp-OC draws $B$
# pseudo-negatives around a running mean:
#
# $$\mu_{\text{new}} = \alpha\,\mu_{\text{old}} + (1-\alpha)\,\tfrac1B\textstyle\sum_i f_i, \qquad
#   \tilde f_j \sim \mathcal N(\mu_{\text{new}},\ \sigma^2 I),\quad j = 1..B,$$
#
# with $\alpha = 0.8$. The real features get label 0, the pseudo-negatives label 1 ("spoof"). At test
# time the score of an image is $P(\text{spoof})$, and we measure **ROC-AUC**: the probability that a
# random attack scores higher than a random live image (0.5 is chance, 1 is perfect).
#
# ### The Poincaré ball
# The head maps each feature to a point $z$ of the ball $\mathbb B_c = \{z : c\|z\|^2 < 1\}$, with
# radius $R = 1/\sqrt c$ (here $c$ is the curvature, and the space has curvature $-c$). Distances are
# magnified by the factor $\lambda_z = 2/(1-c\|z\|^2)$. Near the centre the ball looks like flat space;
# near the rim every step counts for more and more. This is why a ball has "room" for trees and
# hierarchies. Four operations do all the work:
#
# | operation | formula |
# |---|---|
# | Möbius addition (the ball's translation) | $x\oplus_c y = \dfrac{(1+2c\langle x,y\rangle + c\|y\|^2)\,x + (1-c\|x\|^2)\,y}{1+2c\langle x,y\rangle + c^2\|x\|^2\|y\|^2}$ |
# | exponential map at 0 (flat space → ball) | $\exp_0^c(u) = \tanh(\sqrt c\,\|u\|)\,\dfrac{u}{\sqrt c\,\|u\|}$ |
# | geodesic distance | $d_c(x,y) = \dfrac{2}{\sqrt c}\operatorname{artanh}\big(\sqrt c\,\|(-x)\oplus_c y\|\big)$ |
# | feature clipping (before $\exp_0$) | $u \leftarrow u\cdot\min\big(1,\ r/\|u\|\big)$, so that $\|z\| \le \tanh(\sqrt c\, r)/\sqrt c$ |
#
# As $c\to 0$ these become $x+y$, the identity, and $2\|x-y\|$: Euclidean space is the flat limit.
# The official code also learns a base point $x_p$ for the exponential map (it starts at 0), projects
# every point to $\|z\|\le(1-10^{-3})R$, and rescales the gradient by $(1-c\|z\|^2)^2/4$ (the
# "Riemannian gradient").
#
# ### Hyperbolic multinomial logistic regression (Ganea et al. 2018)
# Each class $k$ has a point $p_k$ in the ball and a normal vector $a_k$. Together they define a
# **gyroplane** $\{z: \langle(-p_k)\oplus_c z,\ a_k\rangle = 0\}$, a geodesic. In 2-D it is an arc of a circle
# that meets the rim at right angles. The class logit is $\|a_k\|$ times the signed hyperbolic distance to
# that gyroplane:
#
# $$\zeta_k(z) = \frac{\lambda_{p_k}\|a_k\|}{\sqrt c}\,\operatorname{asinh}\!\Big(\frac{2\sqrt c\,\langle(-p_k)\oplus_c z,\ a_k\rangle}{(1-c\|(-p_k)\oplus_c z\|^2)\,\|a_k\|}\Big).$$
#
# As $c\to 0$, $\zeta_k(z)\to 4\langle z-p_k, a_k\rangle$: an ordinary linear layer.
#
# ### The loss
# $$L = \underbrace{\mathrm{CE}\big(\mathrm{softmax}(\zeta(z)),\ y\big)}_{\text{Hyp-CE}} \;+\; w_{pc}\,
#   \underbrace{\frac1B\sum_{i\le B/2}\frac{2}{\sqrt c}\arctan\big(\sqrt c\,\|(-a_i)\oplus_c b_i\|\big)}_{\text{Hyp-PC}}$$
#
# Hyp-PC splits the real embeddings of the batch into halves $a$ and $b$ and pulls each pair together.
# Note the **arctan**: the geodesic distance would use artanh. The official code uses arctan, and we
# follow it. The paper adds the two terms with weight 1. In our miniature that weight makes the real
# embeddings collapse (see Pitfalls), so we use $w_{pc}=0.1$.
#
# ### The General Pair Weighting view (notebooks 01 and 21)
# Write the pair term as a function of $u = \|(-a)\oplus_c b\|$. Its weight $\partial L/\partial u$ says
# how hard a pair is pulled:
#
# $$\text{arctan: } \frac{\partial L}{\partial u} = \frac{2/B}{1+cu^2}\ \ (\le 2/B,\ \text{smaller for far pairs}),\qquad
#   \text{artanh: } \frac{\partial L}{\partial u} = \frac{2/B}{1-cu^2}\ \ (\to\infty \text{ at the rim}).$$
#
# So the arctan form is a *bounded, robust pull* **at the ball point**. That is the gradient with respect
# to $z$ in the ball; the official code then rescales it by the Riemannian factor $(1-c\|z\|^2)^2/4$
# (`H.riemannian_grad`) before it reaches the network, and that factor goes to 0 at the rim. After the
# rescale *both* weights fall toward the rim: artanh's becomes $\frac{2/B}{4}(1-cu^2)$, arctan's
# $\frac{2/B}{4}\frac{(1-cu^2)^2}{1+cu^2}$. The difference between the two forms is real at the ball point;
# what the network feels near the rim is small for both. Compare the contrastive loss of notebook 01, which
# pulls every positive pair with weight 1: here a pair that is already far apart (perhaps an outlier)
# is pulled *less*. The Hyp-CE part has the per-sample weights of any cross-entropy (notebook 21):
# $\partial L/\partial\zeta = (\mathrm{softmax}(\zeta) - \mathrm{onehot}(y))/2B$. A real sample is pushed
# with weight $P(\text{spoof})$, a pseudo-negative with $1-P(\text{spoof})$.
#
# ### The Euclidean baseline
# The same head with the ball map removed: an MLP, then `Linear(d, 2)` as the classifier, and
# $\frac1B\sum\|a_i-b_i\|$ as the pair term.
#
# ### Defaults: paper, official code, and here
#
# | | official code | here | why |
# |---|---|---|---|
# | features | VGG-Face fc6 (4096-d), conv5 + fc6 fine-tuned | frozen digit MLP, 64-d | no face data or weights offline |
# | head | 4096→8192→1000→512→128, ReLUs | 64→64→16 (or 2), ReLUs | small data |
# | $c$, clip $r$, $\alpha$, $\sigma$ | 0.1, 2, 0.8, `std_dev` = 1 | same | |
# | learning rate | Adam 1e-6 (fine-tuning) | Adam 1e-3 | a head trained from scratch |
# | $w_{pc}$ | 1 | 0.1 | 1 collapses the miniature |
# | gradient clipping | norm 3 | norm 3 | |
# | pseudo-negative $\sigma$ | `std_dev` used as the *covariance* scale | a standard deviation | same value at 1 |

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 2. From formula to code
#
# The ball map of the head (clip, exponential map at the learnt base point, projection, Riemannian
# gradient) and the MLR logits. Each line is a row of the tables above.

# %%
print(inspect.getsource(H.ToPoincare.forward))
print(inspect.getsource(H.gyroplane_logits))

# %% [markdown] slideshow={"slide_type": "subslide"}
# A from-scratch check. We write Hyp-PC as the official code writes it, a loop over pairs, and compare
# it with `H.hyp_pc_loss` on a random batch in the ball. Then we check three identities: the distance
# from 0, the flat limit of the MLR, and the clip bound.

# %%
g = torch.Generator().manual_seed(0)
z = H.expmap0(torch.randn(8, 5, generator=g, dtype=torch.float64), C)
loop = sum(2 / math.sqrt(C) * math.atan(math.sqrt(C) * H.mobius_add(-a, b, C).norm())
           for a, b in zip(z[:4], z[4:])) / 8
print(f"Hyp-PC: loop {float(loop):.10f}  lossviz {float(H.hyp_pc_loss(z, C)):.10f}")
assert abs(float(loop) - float(H.hyp_pc_loss(z, C))) < 1e-12

d0 = H.dist(torch.zeros_like(z), z, C)
assert torch.allclose(d0, 2 / math.sqrt(C) * torch.atanh(math.sqrt(C) * z.norm(dim=1)), atol=1e-12)
a, p = torch.randn(2, 5, generator=g, dtype=torch.float64), 0.1 * torch.randn(2, 5, generator=g, dtype=torch.float64)
flat = 4 * ((z[:, None] - p) * a).sum(-1)
print("max |MLR(c = 1e-9) - 4<z - p, a>| =", f"{float((H.mlr_logits(z, a, p, 1e-9) - flat).abs().max()):.1e}")
assert torch.allclose(H.mlr_logits(z, a, p, 1e-9), flat, rtol=1e-6, atol=1e-8)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 3. Weights as pictures
#
# ### The pair weight: arctan against artanh
# We put one real embedding $a$ at the origin and the other, $b = y$, at a growing radius, and ask
# autograd for the gradient of the pair's term with respect to $y$. Since $a = 0$, $u = \|y\|$. The arctan
# form pulls far pairs *less* (its weight stays between 1 and 2). The geodesic (artanh) form pulls them
# *harder and harder*, and its weight explodes at the rim.

# %%
R = 1 / math.sqrt(C)
frac = torch.tensor([0.5, 0.75, 0.9, 0.99, 0.999], dtype=torch.float64)
pair_grad = {}
for form in H.PC_FORMS:
    y = (frac[:, None] * R * torch.tensor([[0.6, 0.8]], dtype=torch.float64)).requires_grad_(True)
    total = sum(2 * H.hyp_pc_loss(torch.stack([torch.zeros(2, dtype=torch.float64), yi]), C, form) for yi in y)
    pair_grad[form] = torch.autograd.grad(total, y)[0].norm(dim=1)   # x2 undoes the 1/B of a batch of 2
for f_, ga, gh in zip(frac.tolist(), pair_grad["arctan"].tolist(), pair_grad["artanh"].tolist()):
    print(f"|y|/R = {f_:5.3f}   arctan weight {ga:6.3f}   artanh weight {gh:9.2f}")

# %% [markdown] slideshow={"slide_type": "subslide"}
# The same weights from `H.pair_term_weights` (autograd on a leaf $u$, in a batch of $B$), against the
# closed forms $(2/B)/(1\pm cu^2)$:

# %%
u = torch.linspace(0, 0.999, 400, dtype=torch.float64) * R
B = 32
weights = {form: H.pair_term_weights(u, C, form, batch=B) for form in H.PC_FORMS}
closed = {"arctan": (2 / B) / (1 + C * u ** 2), "artanh": (2 / B) / (1 - C * u ** 2)}
closed_form_err = max(float((weights[f] - closed[f]).abs().max()) for f in H.PC_FORMS)
assert closed_form_err < 1e-9                                      # round-off only (float64)
print(f"max |autograd - closed form| < 1e-9: {closed_form_err < 1e-9}")
fig, axes = plots.new_figure(2, width=4.6, height=3.6)
for form, color in zip(H.PC_FORMS, ("k", plots.NEG_COLOR)):
    axes[0, 0].plot(u / R, H.pair_term(u, C, form), color=color, label=form)
    axes[0, 1].semilogy(u / R, weights[form] * B, color=color, label=form)
axes[0, 0].axhline(math.pi / (2 * math.sqrt(C)), color=plots.MUTED, ls=":", label="π/(2√c): arctan at the rim")
axes[0, 0].set(title="pair term", xlabel="u / R", ylabel="term (ball units)")
axes[0, 1].set(title="pair weight B · ∂L/∂u", xlabel="u / R", ylabel="weight (log scale)")
_ = axes[0, 0].legend(), axes[0, 1].legend()
fig

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Hyp-CE: per-sample weights
# On a batch of real (0) and pseudo-negative (1) points and a random MLR, the autograd weights
# $\partial L/\partial\zeta$ are $(\mathrm{softmax} - \mathrm{onehot})/2B$. A real point with a high
# $P(\text{spoof})$ gets a large push; a well-classified point gets almost none.

# %%
torch.manual_seed(0)
mlr = H.HyperbolicMLR(5, 2, C).double()
labels = torch.tensor([0] * 4 + [1] * 4)
logits = mlr(z)
ce_weights = H.logit_weights(logits, labels)
assert torch.allclose(ce_weights, (torch.softmax(logits, 1) - torch.nn.functional.one_hot(labels, 2)).detach() / 8)
print("P(spoof):       ", np.round(torch.softmax(logits, 1)[:, 1].detach().numpy(), 3))
print("weight on ζ_real:", np.round(ce_weights[:, 0].numpy(), 3))

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Why clipping: what reaches the network near the rim
# Take a fixed batch of head outputs $u$ (random non-negative directions, as after a ReLU; half real,
# half pseudo) and scale them up. Pass them through the ball map and a random MLR, with and without
# feature clipping ($r = 2$), and measure three things (`H.boundary_gradients`):
# - **left**, how close the points come to the rim;
# - **middle**, the gradient at the ball point $z$;
# - **right**, the gradient that reaches the network, $\|\partial L/\partial u\|$.
#
# Without clipping, once $\sqrt c\,\|u\|$ passes about 3, the points sit on the rim. The gradient at $z$
# **blows up** there, because the metric magnifies it. Yet the gradient that reaches the network
# **vanishes**, because $\tanh$ is flat, the projection pins the points and the Riemannian rescale is
# about 0. The network is stuck with a large loss and no signal to fix it. With clipping, no point ever
# goes past $\tanh(\sqrt c\,r)/\sqrt c = 0.56R$. The gradient at $z$ stays bounded, and the network's
# gradient only falls like $r/\|u\|$ (its radial part is clipped away).

# %%
norms = np.geomspace(0.3, 60, 30)
grads = {r: H.boundary_gradients(norms, c=C, clip_r=r) for r in (CLIP_R, None)}
fig, axes = plots.new_figure(3, width=4.2, height=3.6)
for r, gr in grads.items():
    style = dict(color="k" if r else plots.NEG_COLOR, label=f"clip r = {r:g}" if r else "no clipping")
    axes[0, 0].semilogx(norms, gr["radius"], **style)
    axes[0, 1].loglog(norms, gr["grad_z"], **style)
    axes[0, 2].loglog(norms, gr["grad_u"], **style)
axes[0, 0].set(title="largest ‖z‖ / R", xlabel="head output ‖u‖", ylabel="‖z‖ / R")
axes[0, 1].set(title="gradient at the ball point", xlabel="head output ‖u‖", ylabel="mean ‖∂L/∂z‖")
axes[0, 2].set(title="gradient reaching the network", xlabel="head output ‖u‖", ylabel="mean ‖∂L/∂u‖")
_ = axes[0, 0].legend()
fig

# %%
free, clipped = grads[None], grads[CLIP_R]
vanish = free["grad_u"][-1] / clipped["grad_u"][-1]
blowup = free["grad_z"][-1] / free["grad_z"][0]
print(f"at ‖u‖ = {norms[-1]:.0f}: network gradient without clipping / with = {vanish:.1e};  "
      f"gradient at z, rim / centre = {blowup:.0f}x")
assert vanish < 1e-3 and blowup > 100 and clipped["radius"].max() <= math.tanh(math.sqrt(C) * CLIP_R) + 1e-9

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 4. Explore: curvature, clip radius and the pseudo-negatives' spread
#
# The panels here are built on `lossviz.widgets`: moving a control redraws the figure in place,
# and a Train button runs a real training run, cached by its settings.
#
# This panel is pure maths: the head is the identity, in 2-D. A fixed cloud of "real" features (blue)
# and pseudo-negatives (vermillion $\times$) drawn from $\mathcal N(\mu, \sigma^2 I)$ around its mean:
# - **left**, the Euclidean plane with the clip circle of radius $r$ and a linear decision boundary;
# - **middle**, the same points clipped and mapped into the ball, with the rim, the clip bound
#   $\tanh(\sqrt c\, r)/\sqrt c$ (dashed), and the *same* classifier made hyperbolic: its gyroplane is an arc;
# - **right**, the pair weight against $u/R$, and the largest $u$ that two clipped points can reach,
#   $\tanh(2\sqrt c\,r)/\sqrt c$.
#
# Try these settings:
# - $c = 0.01$: the ball is huge, $\exp_0$ is almost the identity, and the gyroplane straightens into the line;
# - $c = 1$ with $r = 5$: everything is pressed against the rim, where the artanh weight explodes;
# - $r = 0.5$: all points are pulled onto one small circle, and only their *directions* are left.

# %%
geometry = H.geometry_panel(c=C, clip_r=CLIP_R, sigma=1.0)
assert isinstance(geometry, widgets.Panel) and geometry.state["bound"] == H.clip_bound(C, CLIP_R)
geometry

# %%
geometry.controls["c"].value = 1.0
at_c1 = geometry.state
print(f"c = 1: R = {at_c1['R']:.2f}, clip bound {at_c1['bound']:.3f}, farthest pair u/R = {at_c1['u_max']:.3f}")
assert at_c1["bound"] == H.clip_bound(1.0, CLIP_R) and float(at_c1["z_real"].norm(dim=1).max()) <= at_c1["bound"]
geometry.controls["c"].value = C

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 5. A real training run
#
# ### The miniature
# `H.spoof_data()`. Live: all ten digit classes, 1200 training and 597 test images (stratified).
# Backbone: an MLP 64 → 128 → 64 (ReLU), trained for 300 Adam steps as a digit classifier and then
# frozen; its 64-d output is the feature $f$. Attacks: each transformation applied to the 597 live
# test images.

# %%
data = H.spoof_data()
print(f"live: train {tuple(data.train.shape)}, test {tuple(data.test_live.shape)}; "
      f"attacks {list(data.test_attacks)}")
fig, axes = plots.new_figure(6, 4, width=1.15, height=1.15)
_ = H.attack_gallery(axes, data)
fig

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Pseudo-negatives around the running mean
# Left: the backbone's features seen through their first two principal axes. Middle: the distance of
# each set to the mean. Right: how far the pseudo-negatives' centre is from the live mean, step by step.
#
# Two things to see:
# 1. In 64 dimensions a Gaussian is a thin **shell** of radius about $\sigma\sqrt{64} = 8\sigma$ around
#    its centre, and the live features spread wider than that (the medians printed below; asserted). So the
#    pseudo-negatives lie *inside* the live cloud, and the head learns "too close to the average face = spoof".
#    Print attacks (blurred, low contrast) land closer to the mean than live faces, so they are easy. Replay
#    attacks stay further out, about as far as the live features, so they are hard.
# 2. **The official running mean jumps.** At the first batch of every epoch $\mu_{\text{old}}$ is reset
#    to 0, so $\mu_{\text{new}} = 0.2\,\bar f$: the pseudo-negatives land far from everything.
#    Elsewhere $\mu_{\text{old}}$ is the previous *batch* mean, not a running average. We reproduce the
#    official rule (`running="official"`); `running="ema"` is the textbook version.

# %% tags=["nbval-ignore-output"]
fig, pn_stats = H.pseudo_negative_figure(data)
print(f"{'backbone test accuracy (digits)':38s} {data.backbone_acc:6.3f}")
for k_, v_ in pn_stats.items():
    print(f"{k_:38s} {v_:6.2f}")
d_ = {k_.removeprefix("median distance "): v_ for k_, v_ in pn_stats.items()}
assert data.backbone_acc > 0.9                                     # a working stand-in for the face network
assert d_["pseudo, σ = 1"] < d_["live (train)"] and d_["print"] < d_["replay"]   # shell inside; prints near μ
assert pn_stats["largest drift, official"] > 3 * pn_stats["largest drift, ema"]  # the official mean jumps
fig

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### The Poincaré disk against the Euclidean plane (2-D heads)
# We train the one-class head with a 2-D output, hyperbolic and Euclidean (400 Adam steps at lr
# 1e-3, 32 live + 32 pseudo-negatives per batch, $w_{pc} = 0.1$, the official $c$, $r$, $\alpha$, $\sigma$
# and gradient clipping). The shading is $P(\text{spoof})$ (red = spoof), and the black line is the
# decision boundary $P = 1/2$. In the ball, each class logit is a distance to its own gyroplane (an
# arc), and the boundary where the two logits are equal is curved. Filled points are the last training
# batch; hollow points are test images.

# %% tags=["nbval-ignore-output"]
disk_runs = {geo: H.train_one_class(geo, dim=2) for geo in H.GEOMETRIES}
loss_drop = lambda r: r.history["loss"][:20].mean() / r.history["loss"][-50:].mean()   # noqa: E731
assert all(np.isfinite(r.history["loss"]).all() and loss_drop(r) > 3 for r in disk_runs.values())

# %% tags=["nbval-ignore-output"]
fig, axes = plots.new_figure(2, width=5.4, height=5.2)
for ax, run in zip(axes[0], disk_runs.values()):
    H.embedding_plot(ax, run, per_set=60)
handles, names = axes[0, 0].get_legend_handles_labels()
_ = fig.legend(handles, names, loc="outside lower center", ncols=4, fontsize=8)
assert all(len(ax.collections) >= 6 for ax in axes[0]) and len(names) >= 6   # shading, boundary, 5 point sets
fig

# %% [markdown] slideshow={"slide_type": "subslide"}
# Look at the disk. The ReLU at the end of the head keeps the outputs in one quadrant. Most of them are
# longer than $r = 2$, so after clipping they **sit exactly on the clip sphere**, the dashed circle around
# the learnt base point $x_p$; the rest lie just inside it. A clipped point keeps only its *direction*:
# in 2-D the hyperbolic head mostly classifies angles along one arc. The Euclidean head keeps the lengths
# as well.

# %% tags=["nbval-ignore-output"]
for name, run in disk_runs.items():
    print(f"{name:10s} d=2  " + "  ".join(f"AUC {a} {run.auc[a]:.3f}" for a in H.ATTACKS))
disk_clip = H.clip_report(disk_runs["hyperbolic"])
print(f"hyperbolic d=2: {disk_clip['clipped']:.0%} of the test outputs are clipped onto the sphere "
      f"(median ‖u‖ = {disk_clip['u_norm_median']:.2f}, r = {CLIP_R:g})")
assert disk_clip["clipped"] > 0.5                                  # most points sit on the clip sphere
assert all(run.auc["print"] > 0.9 for run in disk_runs.values())   # both 2-D heads catch prints

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Hyperbolic against Euclidean, 16-d, several seeds
# The same protocol with a 16-d embedding, which is the spec's miniature of the paper's 128-d head.

# %% tags=["nbval-ignore-output"]
runs16 = {(geo, s): H.train_one_class(geo, dim=16, seed=s) for geo in H.GEOMETRIES for s in SEEDS}
assert all(np.isfinite(r.history["loss"]).all() and loss_drop(r) > 5 for r in runs16.values())

# %% tags=["nbval-ignore-output"]
print(f"{'head':12s} {'seed':>4s}   " + "  ".join(f"{a:>7s}" for a in H.ATTACKS) + "     mean")
for (geo, s), run in runs16.items():
    print(f"{geo:12s} {s:4d}   " + "  ".join(f"{run.auc[a]:7.3f}" for a in H.ATTACKS) + f"   {run.mean_auc:6.3f}")
mean_auc = {geo: float(np.mean([runs16[geo, s].mean_auc for s in SEEDS])) for geo in H.GEOMETRIES}
print("mean over seeds and attacks:", {k: round(v, 3) for k, v in mean_auc.items()})
assert len(runs16) == 2 * len(SEEDS) and all(0.5 < r.mean_auc < 1 for r in runs16.values())
assert all(r.auc["print"] > 0.9 and r.auc["print"] - r.auc["replay"] > 0.2 for r in runs16.values())

# %% tags=["nbval-ignore-output"]
fig, axes = plots.new_figure(3, width=4.2, height=3.5)
_ = H.curves_plot(axes[0], {f"{geo} seed {s}": r for (geo, s), r in runs16.items()})
drops = [loss_drop(r) for r in runs16.values()]
bound_R = H.clip_bound(C, CLIP_R) * math.sqrt(C)                     # the clip bound in units of R
end_radius = [runs16["hyperbolic", s].history["radius"][-1] / bound_R for s in SEEDS]
print(f"training loss, first 20 steps / last 50: {min(drops):.0f}x to {max(drops):.0f}x;  final mean AUC "
      f"{min(r.mean_auc for r in runs16.values()):.2f} to {max(r.mean_auc for r in runs16.values()):.2f}")
assert min(drops) > 5                                                  # the loss falls: training works
assert all(abs(e - 1) < 0.1 for e in end_radius)   # an identity of the clip (no radius can exceed it), shown, not a finding
fig

# %% [markdown] slideshow={"slide_type": "subslide"}
# Learning curves (solid: seed 0; dotted: the other seeds). The training loss falls steeply within a few
# hundred steps (by the factor printed above): real and pseudo-negatives are easy to tell apart. The mean
# AUC over the attacks is another story (right panel, and the range printed above). Separating live from
# *pseudo*-negatives is not the same task as separating live from *attacks*. The hyperbolic radius climbs
# to the clip bound, $\tanh(\sqrt c\,r)/\sqrt c = 0.56R$, and stays near it. That bound is an identity of
# the feature clipping (no embedding can go beyond it, trained or not), not something the loss learned.
#
# ROC curves for each attack, seed 0:

# %% tags=["nbval-ignore-output"]
fig, axes = plots.new_figure(3, width=3.9, height=3.9)
for ax, attack_name in zip(axes[0], H.ATTACKS):
    H.roc_plot(ax, {geo: runs16[geo, 0] for geo in H.GEOMETRIES}, attack_name)
assert all(len(ax.lines) == len(H.GEOMETRIES) + 1 for ax in axes[0])   # one curve per head, plus chance
assert all(runs16[geo, 0].auc["print"] > 0.9 for geo in H.GEOMETRIES)
fig

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Clipping in a real run
# Our backbone's features are small (their median norm is printed below), so the head's outputs start well
# inside the ball.
# VGG-Face fc6 features are much larger. To see the problem the clip solves, we multiply the head's
# input by 10 (`input_scale=10`) and train three times: with both clips (official); without the
# feature clip but still clipping the gradient norm at 3; and with no clipping at all.

# %% tags=["nbval-ignore-output"]
clip_runs = {
    "feature + gradient clip": H.train_one_class(input_scale=10.0),
    "gradient clip only": H.train_one_class(input_scale=10.0, clip_r=None),
    "no clipping": H.train_one_class(input_scale=10.0, clip_r=None, max_grad_norm=None),
}
print(f"median ‖f‖ of the live training features: {float(data.train.norm(dim=1).median()):.1f}")
assert all(np.isfinite(r.history["loss"]).all() and loss_drop(r) > 5 for r in clip_runs.values())

# %% tags=["nbval-ignore-output"]
clip_colors = dict(zip(clip_runs, ("k", "#E69F00", plots.NEG_COLOR)))
fig, axes = plots.new_figure(3, width=4.2, height=3.5)
_ = H.curves_plot(axes[0], clip_runs, what=("radius", "grad_norm", "auc"), colors=clip_colors)
rad = {name: r.history["radius"] for name, r in clip_runs.items()}
assert all(len(ax.lines) == len(clip_runs) for ax in axes[0]) and rad["feature + gradient clip"].max() < 0.6
assert all(rad[name][-1] < 0.5 * rad[name][0] for name in ("gradient clip only", "no clipping"))  # pulled back in
fig

# %% tags=["nbval-ignore-output"]
clip_stats = {name: dict(start_radius=r.history["radius"][0], max_grad=r.history["grad_norm"][:50].max(),
                         auc=r.mean_auc) for name, r in clip_runs.items()}
for name, st in clip_stats.items():
    print(f"{name:24s} radius at step 1 {st['start_radius']:.3f} R   largest gradient norm (first 50 steps) "
          f"{st['max_grad']:6.2f}   mean AUC {st['auc']:.3f}")
official, unclipped = clip_stats["feature + gradient clip"], clip_stats["no clipping"]
assert official["start_radius"] <= math.tanh(math.sqrt(C) * CLIP_R) + 1e-6 < 0.9 < unclipped["start_radius"]
assert unclipped["max_grad"] > 2 * official["max_grad"]
print(f"final mean AUC, feature clip - no clipping: {official['auc'] - unclipped['auc']:+.3f} (one seed)")

# %% [markdown] slideshow={"slide_type": "subslide"}
# Without the feature clip the real embeddings start next to the rim (above $0.9R$; asserted). The first
# gradients are several times larger than with clipping, because the rim magnifies them. The head then
# spends its first steps shrinking its outputs back towards the centre. With the clip, the points start on
# the clip sphere ($0.56R$) and stay near it (the learnt base point lets them drift a little). The last line
# compares the final AUCs; it is a single seed, so read it as an anecdote, not a ranking.
#
# **Gradient-norm clipping** (at 3) changes little here. Adam divides every step by a running estimate
# of the gradient's size, so a uniformly larger gradient does not make a larger step. Gradient clipping
# matters for SGD, and against rare spikes. The **feature clip** is what keeps the geometry usable.

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Train it yourself
# Choose the head (hyperbolic or Euclidean), $c$, the clip radius (0 turns it off), $\sigma$, $\alpha$,
# $w_{pc}$, the pair term (arctan or the geodesic artanh), gradient clipping, the dimension and the
# seed, then press **Train**. A run takes 1–3 s, and a setting you have already trained comes back at
# once from the cache. With `dim = 2` the right panel shows the disk; with 16 it shows the ROC curves.

# %% tags=["nbval-ignore-output"]
panel = H.training_panel(iters=400, dim=2)
assert panel.state["result"] is disk_runs["hyperbolic"]      # the same settings: from the cache
panel

# %%
panel.controls["geometry"].value = "euclidean"
assert panel.state["stale"]
again = panel.train()
assert again is disk_runs["euclidean"] and not panel.state["stale"]

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 6. The claim, checked
#
# **The paper's claim.** Hyp-OC beats the state of the art on five face anti-spoofing benchmarks, and
# the hyperbolic head learns a better one-class boundary than its Euclidean counterpart.
#
# **What we see at this scale: it does not show.** With a 16-d head on digits, the hyperbolic head has no
# clear advantage: the two heads' mean AUCs are within 0.1 of each other (the table above; asserted
# below). One likely reason is visible in the pictures: with $r = 2$ most head outputs are clipped, so
# the hyperbolic embeddings lie on one sphere, and there the ball's extra room (its radius) goes unused.
# Our miniature has none of the paper's ingredients: no pre-trained 4096-d identity features, no real
# attacks, no fine-tuning. So this says nothing against the paper's benchmark numbers. It only says that
# the geometry alone does not help here.
#
# **What we check instead: the mechanism.**
# 1. *The clip bound is exact.* With the base point at the origin, $\|z\| \le \tanh(\sqrt c\,r)/\sqrt c$.
#    With the learnt base point $x_p$, $d_c(x_p, z) \le \lambda_{x_p} r$. Both hold on the test images of
#    the trained 16-d heads, and the bound is reached: most outputs are clipped.
# 2. *The arctan pair weight is bounded.* It stays at or below 2 at every radius. The geodesic (artanh)
#    weight exceeds 100 at $(1-10^{-3})R$.
# 3. *Closed form.* The autograd weight $\partial L/\partial u$ equals $(2/B)/(1+cu^2)$ to 1e-6.
# 4. *Clipping prevents the vanishing gradient.* Without it, the gradient reaching the network falls
#    more than 1000-fold at large outputs, while the gradient at the ball point blows up.
# 5. *One-class sanity.* Trained on live digits alone, the hyperbolic head catches print attacks:
#    mean AUC(print) ≥ 0.75.
# 6. *No large difference either way.* The two heads' mean AUCs are within 0.1 of each other.

# %% tags=["nbval-ignore-output"]
reports = [H.clip_report(runs16["hyperbolic", s]) for s in SEEDS]
hyp_print = float(np.mean([runs16["hyperbolic", s].auc["print"] for s in SEEDS]))
claims = {
    "largest ‖z‖ / clip bound (base point at 0)": max(rep["max_norm"] / rep["bound"] for rep in reports),
    "largest d(x_p, z) / (λ_xp r)": max(rep["max_dist"] / rep["dist_bound"] for rep in reports),
    "fraction of test outputs clipped": float(np.mean([rep["clipped"] for rep in reports])),
    "largest arctan pair weight": float(pair_grad["arctan"].max()),
    "artanh pair weight at 0.999 R": float(pair_grad["artanh"][-1]),
    "mean AUC(print), hyperbolic": hyp_print,
    "mean AUC, hyperbolic - Euclidean": mean_auc["hyperbolic"] - mean_auc["euclidean"],
}
for k_, v_ in claims.items():
    print(f"{k_:44s} {v_:8.4f}")
assert claims["largest ‖z‖ / clip bound (base point at 0)"] <= 1 + 1e-6
assert claims["largest d(x_p, z) / (λ_xp r)"] <= 1 + 1e-5
assert claims["fraction of test outputs clipped"] > 0.5                  # the bound is where the points live
assert claims["mean AUC(print), hyperbolic"] >= 0.75
assert abs(claims["mean AUC, hyperbolic - Euclidean"]) < 0.1

# %%
assert claims["largest arctan pair weight"] <= 2 and claims["artanh pair weight at 0.999 R"] > 100
assert closed_form_err < 1e-6
assert vanish < 1e-3 and blowup > 100

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 7. Pitfalls
#
# **Collapse.** The pair term is smallest when every real embedding lands on one point, and the ReLU
# before the ball map even allows an all-zero output. With the paper's weight $w_{pc} = 1$, seed 0 of
# our miniature collapses: the real embeddings shrink to the centre and every test image gets the same
# score, so the AUC sits at chance (asserted below). Keep $w_{pc}$ around 0.1, and watch the radius (or
# spread) of the real embeddings.

# %% tags=["nbval-ignore-output"]
collapsed = H.train_one_class(w_pc=1.0, seed=0)
ok = runs16["hyperbolic", 0]
print(f"w_pc = 1:   final radius {collapsed.history['radius'][-1]:.3f} R, mean AUC {collapsed.mean_auc:.3f}")
print(f"w_pc = 0.1: final radius {ok.history['radius'][-1]:.3f} R, mean AUC {ok.mean_auc:.3f}")
assert collapsed.history["radius"][-1] < 0.2 * ok.history["radius"][-1]   # shrunk to the centre
assert abs(collapsed.mean_auc - 0.5) < 0.05 < ok.mean_auc - 0.5             # chance, against a working head

# %% [markdown] slideshow={"slide_type": "subslide"}
# **More traps.**
# - *What σ means.* The official `std_dev` argument is passed to `MultivariateNormal` as the covariance
#   `std_dev · I`, so the standard deviation is $\sqrt{\texttt{std\_dev}}$. lossviz's `sigma` is a
#   standard deviation. The two agree at the default 1, and differ everywhere else.
# - *The running-mean quirk.* $\mu_{\text{old}}$ is the previous batch's mean, and it is reset to 0 at
#   every epoch (the spikes in the pseudo-negative figure). We reproduce it; `running="ema"` fixes it.
# - *The Riemannian gradient's curvature lives on a class.* In the official `hyptorch`,
#   `RiemannianGradient.c` is a class attribute that every `ToPoincare(c)` overwrites. Two balls with
#   different $c$ in one process silently share the last value. lossviz passes $c$ with every call (tested).
# - *arctan against artanh.* The official pair term is arctan, which is bounded. The geodesic distance
#   is artanh, which explodes at the rim. They are different losses; never switch silently (the `pair term`
#   toggle of the panel).
# - *The learnt base point moves the clip bound.* With $x_p \ne 0$ the bound holds around $x_p$, as
#   $d_c(x_p, z) \le \lambda_{x_p} r$, and $\|z\|$ can exceed $\tanh(\sqrt c\,r)/\sqrt c$ (tested).
# - *Odd batches.* Hyp-PC pairs the two halves of the real batch. The official code asserts an even
#   batch, and lossviz raises a `ValueError`:

# %%
try:
    H.hyp_pc_loss(torch.zeros(5, 2), C)
except ValueError as err:
    print("ValueError:", err)

# %% [markdown] slideshow={"slide_type": "subslide"}
# - *The +1e-5 in the official Möbius denominator.* Inside the ball the denominator is at least
#   $(1-c\|x\|\|y\|)^2$. For two nearby points at the projection margin ($\|z\| = (1-10^{-3})R$) that is
#   about $4\cdot10^{-6}$, *smaller* than the 1e-5 the official code adds, and the official result shrinks.
#   Two points $3\cdot10^{-3}$ rad apart on the margin:

# %%
edge, theta = (1 - 1e-3) * R, 0.003
x_e = torch.tensor([[edge, 0.0]], dtype=torch.float64)
y_e = edge * torch.tensor([[math.cos(theta), math.sin(theta)]], dtype=torch.float64)
exact, official = H.mobius_add(-x_e, y_e, C), H.mobius_add(-x_e, y_e, C, eps=1e-5)
d_exact = float(H.dist(x_e, y_e, C))
d_official = 2 / math.sqrt(C) * math.atanh(math.sqrt(C) * float(official.norm()))
print(f"‖(-x) ⊕ y‖ / R: formula {float(exact.norm()) / R:.3f}, official +1e-5 {float(official.norm()) / R:.3f};  "
      f"geodesic distance {d_exact:.2f} against {d_official:.2f}")
assert d_official < 0.5 * d_exact

# %% [markdown] slideshow={"slide_type": "subslide"}
# lossviz computes the formula as printed; `eps=1e-5` reproduces the official code.

# %% [markdown] slideshow={"slide_type": "subslide"}
# - *Learning rate.* The official lr, 1e-6, is for fine-tuning a pre-trained VGG. A head trained from
#   scratch needs about 1e-3. At 1e-2 the head's ReLUs can die: once every output is 0, every image gets the
#   same score and the AUC sits at chance (try `H.train_one_class(lr=1e-2)` and watch `run.history["radius"]`).
# - *The `asinh` of the official code* is `log(x + sqrt(1 + x²))` with the log's argument clamped at 1e-5.
#   It loses precision for large negative arguments and bounds the logits from below. lossviz uses `torch.asinh`.
#
# ## 8. Exercises
# 1. **A tighter Gaussian.** Set σ = 0.3 in the training panel (16-d) for both heads. Which attacks
#    improve, and why? *Hint:* look again at the distance histogram: where does the σ = 0.3 shell lie?
# 2. **Unclip the miniature.** Set the clip radius to 5 (or 0, off) with a 2-D hyperbolic head. Do the
#    points leave the circle and use the radius? Does the AUC change? *Hint:* `H.clip_report(run)` on a
#    16-d run.
# 3. **The geodesic pair term.** Switch the pair term to artanh with $w_{pc} = 1$ and $c = 1$. Watch the
#    gradient norm (`run.history["grad_norm"]`). Is gradient clipping now doing something?
# 4. **A fair running mean.** Train with `running="ema"` (call `H.train_one_class` directly). Does
#    fixing the quirk change the AUCs? *Hint:* the quirk only affects one batch per epoch.
#
# ## 9. Summary
# - Hyp-OC trains a one-class detector from real samples only. Pseudo-negatives from a Gaussian at the
#   running mean give the classifier something to push against, and a hyperbolic MLR separates them in
#   the Poincaré ball. A bounded arctan pair term pulls the real embeddings together.
# - The ball's geometry needs its stability kit. Near the rim the gradient at the embedding blows up,
#   while the gradient reaching the network vanishes. Feature clipping keeps every point within
#   $\tanh(\sqrt c\,r)/\sqrt c$ of the origin (or within $\lambda_{x_p} r$ of the base point): exactly, as measured.
# - The arctan pair term's weight $2/(1+cu^2)$ is bounded, so it is a robust pull. The geodesic form's
#   weight $2/(1-cu^2)$ explodes.
# - At our scale the hyperbolic head does **not** beat the Euclidean one. Most embeddings sit on the clip
#   sphere, and the pseudo-negatives teach "too close to the mean", which catches prints far better than
#   replays.
#
# **References.** Narayan & Patel, *Hyp-OC: Hyperbolic One Class Classification for Face
# Anti-Spoofing*, arXiv:2404.14406, 2024. Ganea, Bécigneul & Hofmann, *Hyperbolic Neural Networks*,
# NeurIPS 2018. Khrulkov et al., *Hyperbolic Image Embeddings*, CVPR 2020 (the `hyptorch` code).
# Guo et al., *Clipped Hyperbolic Classifiers Are Super-Hyperbolic Classifiers*, CVPR 2022 (feature
# clipping). Wang et al., *Multi-Similarity Loss with General Pair Weighting*, CVPR 2019 (notebook 01).
