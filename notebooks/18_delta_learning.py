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
# # 18 — Delta learning: what preference pairs of two weak teachers can teach a stronger student
#
# **Paper.** Scott Geng, Hamish Ivison, Chun-Liang Li, Maarten Sap, Jerry Li, Ranjay Krishna, Pang Wei Koh. *The
# Delta Learning Hypothesis: Preference Tuning on Weak Data can Yield Strong Gains.* COLM 2025.
# [arXiv:2507.06187](https://arxiv.org/abs/2507.06187) · official code:
# [scottgeng00/delta_learning](https://github.com/scottgeng00/delta_learning) (built on OpenRLHF; no licence file
# seen; lossviz re-implements the loss, and the miniature below is ours).
#
# **The story.** Fine-tuning a model on the answers of a *weaker* model usually makes it worse: it learns to imitate
# the weaker model. Yet the paper finds that *pairs* of weak answers help. Take a question, let a 3B model and a 1.5B
# model each answer it, call the 3B answer "chosen" and the 1.5B answer "rejected", and tune an 8B model on these
# pairs with DPO (Direct Preference Optimization): the 8B model gets better, and matches a recipe built on far
# stronger supervisors. Supervised fine-tuning (SFT) on the chosen answers alone, the same weak data, hurts it. The
# paper's explanation, the **delta learning hypothesis**: what the model learns from is the *difference* in quality
# between the two answers, not the quality of either.
#
# We cannot train an 8B model here. The paper backs the hypothesis with a logistic-regression analysis, and that we
# can rebuild: a linear student, two weak linear teachers, and exact test accuracies. In this notebook you will write
# DPO and its per-pair weights, see which pairs carry a signal, move the teachers' quality and errors, train SFT and
# DPO, and check on paired seeds when the delta helps and when it does not.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Setup
#
# One cell: imports, seeds, one torch thread, the `FAST` switch (`LOSSVIZ_FAST=1` checks the claim on 4 paired seeds
# instead of 8; the runs keep their full length, because the claim is about where they end).

# %%
import inspect

import numpy as np
import torch
from IPython.display import Markdown, display

import lossviz as lv
from lossviz import plots
from lossviz import widgets
from lossviz import train as T
from lossviz.metrics import paired_difference
from lossviz.papers import delta_learning as D

FAST = T.setup(seed=0)
SEEDS = list(range(4 if FAST else 8))
print("lossviz", lv.__version__, "| torch", torch.__version__, "| FAST =", FAST)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1. The idea and the math
#
# ### DPO: a logistic loss on the difference of two implicit rewards
# A policy $\pi$ (the model being tuned) starts from a frozen reference $\pi_{ref}$ (the same model before tuning).
# For a question $x$ with a chosen answer $y_c$ and a rejected answer $y_r$,
#
# $$h = \big(\log\pi(y_c|x) - \log\pi_{ref}(y_c|x)\big) - \big(\log\pi(y_r|x) - \log\pi_{ref}(y_r|x)\big), \qquad
#   L_{DPO} = -\log\sigma(\beta h) = \mathrm{softplus}(-\beta h).$$
#
# - $\log\pi(y|x) - \log\pi_{ref}(y|x)$ is DPO's *implicit reward* of an answer: how much more likely the policy
#   makes it than the reference did. $h$ is the chosen answer's reward minus the rejected one's.
# - $\beta > 0$ scales that margin; $m = \beta h$ is the pair's **margin** (a logit). The official configuration
#   uses $\beta = 5$.
# - At the start, $\pi = \pi_{ref}$, so every $h = 0$ and every pair costs $\log 2$.
#
# DPO is a two-candidate softmax: $L = -\log \frac{e^{\beta r_c}}{e^{\beta r_c} + e^{\beta r_r}}$ with implicit
# rewards $r$, that is InfoNCE (notebook 09) with one positive, one negative and temperature $1/\beta$.
#
# ### The per-pair weight (General Pair Weighting)
# $$\nabla L_{DPO} = -\,\underbrace{\beta\,\sigma(-m)}_{w}\,\big(\nabla\log\pi(y_c|x) - \nabla\log\pi(y_r|x)\big).$$
#
# Each pair pulls its chosen answer up and pushes its rejected answer down, with one weight $w = \beta\sigma(-m)$, as
# every pair loss of notebook 01 weights its pairs:
# - at the reference ($m = 0$) every pair weighs $\beta/2$;
# - a pair the policy already ranks right by a wide margin ($m \gg 0$) weighs almost 0;
# - a pair it ranks wrong ($m \ll 0$) weighs almost $\beta$.
#
# ### The baseline: SFT on the chosen answers
# $$L_{SFT} = -\log\pi(y_c|x).$$
# Every example weighs 1 for ever, and nothing ties the model to where it started: SFT imitates the chosen teacher,
# mistakes included.
#
# ### Our miniature: two weak teachers and a logistic student
# The paper proves its point in logistic regression; its section was not available to us, only its one-sentence
# summary, so the set-up below is **our reconstruction**, not the paper's proof.
# - Inputs $x \sim \mathcal N(0, I_d)$, true labels $y = \mathrm{sign}(w^*\cdot x)$.
# - Teacher $k$ labels with $\hat y_k = \mathrm{sign}(w_k\cdot x)$, where
#   $w_k = \alpha_k w^* + c\,e_{common} + \epsilon_k\, e_k$: some truth ($\alpha_k$), an error it shares with the other
#   teacher ($c$) and an error of its own ($\epsilon_k$). All the $e$'s are orthonormal and orthogonal to $w^*$.
# - The student is $p_w(y|x) = \sigma(y\, w\cdot x)$, starting at $w_{ref} = w_0$, better than both teachers.
# - Each input gives one pair: chosen answer $\hat y_c$, rejected answer $\hat y_r$.
#
# **Exact test accuracy** (an identity): for Gaussian $x$, $\mathrm{sign}(w\cdot x)$ and $\mathrm{sign}(w^*\cdot x)$
# disagree on the wedge between the two hyperplanes, so the accuracy is $1 - \angle(w, w^*)/\pi$. No test set is
# needed, and the curves carry no test-sampling noise.
#
# **Pairs where the teachers agree carry no signal** (a property of the loss on binary labels): if
# $\hat y_c = \hat y_r$ the two log-probabilities in $h$ are the same, so $h \equiv 0$ for every $w$ and the gradient is
# exactly zero. Where they disagree, $h = \hat y_c\,(w - w_{ref})\cdot x$. So the fraction of useful pairs is the
# fraction of inputs where the teachers disagree, $\angle(w_c, w_r)/\pi$.
#
# **DPO's first step goes along the teachers' difference** (derived). At $w = w_{ref}$ every weight is $\beta/2$, and
# with $\mathbb E[\mathrm{sign}(a\cdot x)\,x] = \sqrt{2/\pi}\,\hat a$ ($\hat a = a/\lVert a\rVert$):
#
# $$\mathbb E[\nabla L] = -\tfrac{\beta}{2}\,\mathbb E\big[\tfrac{\hat y_c - \hat y_r}{2}\,x\big]
#   = -\tfrac{\beta}{4}\sqrt{2/\pi}\,(\hat w_c - \hat w_r).$$
#
# SFT's first step, by contrast, pulls towards $\hat w_c$ itself, errors and all.
#
# **First-order gain** (derived, exact in this construction). With $\rho$ each vector's cosine with $w^*$ and
# $d = \hat w_c - \hat w_r$, moving the student a distance $t$ along $d$ changes its cosine with $w^*$ at the rate
#
# $$\frac{d}{dt}\cos(w_0 + t\,\hat d, w^*)\Big|_{t=0} = \frac{(\rho_c - \rho_r)(1 - \rho_s^2)}{\lVert d\rVert\,\lVert w_0\rVert}.$$
#
# It is positive **if and only if the chosen teacher is the better one**, however weak both are. That is the delta
# learning hypothesis in one line.
#
# **Why the first order is not the whole story.** The step along $\hat w_c - \hat w_r$ also carries the teachers'
# errors. A *shared* error ($c$) cancels in the difference; each teacher's *own* error ($\epsilon_k$) does not. So with
# independent errors a finite run can lose accuracy although its first step gains. $\beta$ is the anchor: once a
# pair is ranked right its weight $\beta\sigma(-\beta h)$ dies faster for a larger $\beta$, and the student stays
# closer to $w_{ref}$.
#
# ### The paper, its code, and here
# | | official (`configs/dpo/...`, `openrlhf/cli/train_dpo.py`) | this notebook |
# |---|---|---|
# | loss | `dpo_loss_type: dpo_norm`: DPO on length-averaged log-probs (`average_log_prob = True`) | DPO on one label per pair (a length of 1); `len_c`, `len_r` in `D.dpo_loss` give `dpo_norm` |
# | β | 5 | 2 (main run) and 20 (the strong anchor) |
# | optimiser | Adam, one epoch, batch 32, cosine schedule; lr 5e-8 in the config of the Tülu-3-8B-SFT run (`base.yaml` has 5e-7; the run's own config is what ran) | full-batch gradient descent, 400 steps, lr 1.25/β (SFT: 0.25) |
# | data | chosen: Qwen-2.5-3B, rejected: Qwen-2.5-1.5B, student Tülu-3-8B-SFT | teachers $w_c$, $w_r$, student $w_0$ (d = 100, 3000 pairs) |
#
# The learning rate of DPO is scaled by $1/\beta$ because DPO's gradient scales with $\beta$: without it, the
# β knob would mostly change the step size.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 2. From formula to code
#
# `D.dpo_loss` computes the margin with `D.dpo_margin` (which checks the inputs: 1-D log-probabilities, one per pair,
# none above 0) and averages $-\log\sigma(m)$ with `logsigmoid`, exact and stable for any margin:

# %%
print(inspect.getsource(D.dpo_loss))

# %% [markdown] slideshow={"slide_type": "subslide"}
# Checked on a made-up batch of 6 pairs of sequence log-probabilities (a policy that has moved a little from its
# reference) against the formula written naively; the
# length-normalised `dpo_norm` is DPO on log-probs divided by the answers' lengths; and the pair weights
# $\beta\sigma(-m)$ are the gradient that autograd finds on $\log\pi(y_c|x)$ (times $-n$, the mean's $1/n$ undone).

# %%
g = torch.Generator().manual_seed(0)
rc, rr = -5 - 5 * torch.rand(2, 6, generator=g, dtype=torch.float64)       # reference log-probs of y_c, y_r
pc, pr = rc - 0.4 * torch.rand(6, generator=g), rr - torch.rand(6, generator=g)   # the policy, after some tuning
beta, n_c, n_r = 5.0, torch.tensor([3, 8, 5, 2, 9, 4]), torch.tensor([6, 2, 7, 4, 3, 5])
h = (pc - rc) - (pr - rr)
naive = torch.log(1 + torch.exp(-beta * h)).mean()
assert torch.allclose(D.dpo_loss(pc, pr, rc, rr, beta=beta), naive)
assert torch.allclose(D.dpo_loss(pc, pr, rc, rr, beta=beta, len_c=n_c, len_r=n_r),
                      D.dpo_loss(pc / n_c, pr / n_r, rc / n_c, rr / n_r, beta=beta))
leaf = pc.clone().requires_grad_(True)
D.dpo_loss(leaf, pr, rc, rr, beta=beta).backward()
w = D.dpo_pair_weights(pc, pr, rc, rr, beta=beta)
assert torch.allclose(-6 * leaf.grad, w)
print("margins m = β h:", np.round((beta * h).numpy(), 2), "\npair weights β σ(−m):", np.round(w.numpy(), 3))

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### The miniature's identities
# One seed's data: d = 100, 3000 Gaussian inputs, each labelled by both teachers (`D.make_miniature`). The geometry
# of the main set-up is $\alpha_c = 0.7$, $\alpha_r = 0.1$, shared error $c = 1.0$, own errors $\epsilon = 0.3$, and a
# student with cosine $\rho_s = 0.8$ to $w^*$. Two checks:
# 1. the exact accuracy $1 - \angle(w, w^*)/\pi$ agrees with a Monte-Carlo estimate on $10^5$ fresh points, within 0.005.
# 2. on the pairs where the teachers agree, DPO's gradient is exactly zero, at any $w$.

# %% tags=["nbval-ignore-output"]
mini = D.make_miniature(0)
acc = mini.accuracies()
mc = {k: D.monte_carlo_accuracy(getattr(mini, k), mini.w_star, n=100_000) for k in acc}
for k, name in (("w0", "student at start"), ("w_c", "chosen teacher"), ("w_r", "rejected teacher")):
    print(f"{name:17s} exact {acc[k]:.3f}   Monte Carlo {mc[k]:.3f}")
assert all(abs(acc[k] - mc[k]) < 0.005 for k in acc)
assert acc["w0"] > acc["w_c"] > acc["w_r"] > 0.5           # the student beats both teachers

# %% tags=["nbval-ignore-output"]
agree = mini.y_c == mini.y_r
x, y = mini.x[agree], mini.y_c[agree]
w_any = (mini.w0 + 0.5 * torch.randn(100, dtype=torch.float64)).requires_grad_(True)    # any student
ref = D.logistic_logp(mini.w0, x, y)
D.dpo_loss(D.logistic_logp(w_any, x, y), D.logistic_logp(w_any, x, y), ref, ref, beta=2.0).backward()
disagree = float(torch.arccos(torch.nn.functional.cosine_similarity(mini.w_c, mini.w_r, dim=0)) / torch.pi)
print(f"teachers agree on {float(agree.double().mean()):.0%} of the 3000 pairs (expected {1 - disagree:.0%}); "
      f"DPO's gradient on them: max |∂L/∂w| = {float(w_any.grad.abs().max()):g}")
assert bool((w_any.grad == 0).all())

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 3. Weights as pictures
#
# Left: the per-pair weight $\beta\sigma(-\beta h)$, divided by $\beta$, against the pair's implicit-reward margin
# $h$, for four values of β. A larger β makes the weight fall faster once a pair is ranked right: the strong anchor.
#
# Middle and right: DPO's pair weight for inputs $x$ in the plane of the two teachers (the main geometry). Grey: the
# teachers agree, the pair carries no signal, whatever the student does. Coloured: the two wedges between the
# teachers' decision lines (blue: the chosen teacher's, vermillion: the rejected one's), where they disagree. At the reference ($t = 0$) every pair there weighs $\beta/2$. After
# the student has moved a distance $t$ along DPO's first direction, the pairs far from the decision lines are
# ranked right by a wide margin and lose their weight; the weight is left on the pairs near the lines.

# %%
hs = torch.linspace(-3, 3, 201, dtype=torch.float64)
vecs = D.directions(**D.GEOMETRY)
fig, axes = plots.new_figure(3, width=3.3, height=3.4)
for b, c in zip((0.5, 2.0, 5.0, 20.0), ("#56B4E9", D.COLORS["dpo"], "#000000", D.COLORS["dpo_anchor"])):
    axes[0, 0].plot(hs, torch.sigmoid(-b * hs), color=c, label=f"β = {b:g}")
axes[0, 0].set(xlabel="implicit-reward margin h", ylabel="pair weight / β", title="DPO's pair weight")
axes[0, 0].legend(fontsize=8)
_ = D.weight_map(axes[0, 1], vecs, beta=2.0, t=0.0)
_ = D.weight_map(axes[0, 2], vecs, beta=2.0, t=1.5)
wedge = torch.arccos(torch.nn.functional.cosine_similarity(vecs["w_c"], vecs["w_r"], dim=0)) / torch.pi
print(f"the teachers disagree on {float(wedge):.0%} of all inputs: only those pairs carry a signal")
fig

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 4. Explore
#
# **The geometry, without training.** Move the teachers and β and see, at once:
# - *Left*, the **accuracy dial**: every vector drawn at its angle from $w^*$, which *is* its test accuracy (the
#   ticks). The dashed green arrow is DPO's first direction $\hat w_c - \hat w_r$, the green dot the student moved a
#   distance $t$ along it.
# - *Middle*, the exact accuracy of the student moved in a straight line along DPO's first direction and towards the
#   chosen teacher (SFT's pull), against the distance moved (first order only: a real run bends).
# - *Right*, DPO's pair weights at that point, as in section 3.
#
# The knobs: β, α chosen ($\alpha_c$), the gap $\alpha_c - \alpha_r$ (negative: the worse teacher is chosen),
# shared err $c$, own err $\epsilon$ (both teachers), moved $t$. Try: a negative gap (the first-order gain turns
# negative); shared err 0 with own err 0.9 (independent errors: the DPO path rises a little, then falls below the
# start); shared err 1.5 (more cancels in the difference).

# %%
panel = D.geometry_panel()
assert isinstance(panel, widgets.Panel) and panel.state["acc"]["w0"] > panel.state["acc"]["w_c"]
assert panel.state["gain"] > 0 and panel.state["acc_t"] > panel.state["acc"]["w0"]
panel

# %%
panel.controls["gap"].value = -0.6                 # the rejected teacher is now the better one
assert panel.state["gain"] < 0
panel.controls["gap"].value = 0.6
panel.controls["shared"].value, panel.controls["own"].value, panel.controls["t"].value = 0.0, 0.9, 3.0
assert panel.state["gain"] > 0 and panel.state["acc_t"] < panel.state["acc"]["w0"]     # gains first, loses later
panel.controls["shared"].value, panel.controls["own"].value, panel.controls["t"].value = 1.0, 0.3, 1.0

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 5. A real training run
#
# **Protocol** (the miniature of section 2, seed 0: d = 100, 3000 training pairs; the data are synthetic by design, the
# exact accuracy needs Gaussian inputs). Four runs from the same start $w_{ref} = w_0$ on the same training sample,
# full-batch gradient descent for 400 steps, the exact test accuracy recorded after *every* step (SFT peaks within
# the first 20 steps; a coarser log would shave the peak):
# - `sft`: SFT on the chosen teacher's labels, lr 0.25;
# - `dpo`: DPO, β = 2, lr 1.25/β;
# - `swap`: DPO, β = 2, with chosen and rejected swapped: the worse teacher is chosen;
# - `dpo_anchor`: DPO, β = 20, the strong anchor.

# %% tags=["nbval-ignore-output"]
runs = D.seed_runs(0, progress=True)
for name, run in runs.items():
    print(f"{D.NAMES[name]:20s} {run!r}  ({run.seconds:.2f} s)")
sft, dpo = runs["sft"].scores, runs["dpo"].scores
assert sft["best_step"] > 1 and sft["best"] > sft["acc0"]                # SFT learns: it rises, then ...
assert abs(sft["final"] - runs["sft"].teachers["chosen"]) < 0.02         # ... lands on the chosen teacher
assert sft["best_step"] <= 20                                             # the early peak
assert dpo["final"] > dpo["acc0"] and runs["swap"].scores["final"] < dpo["acc0"]
assert dpo["acc0"] < runs["dpo_anchor"].scores["final"] < dpo["final"]  # the strong anchor gains less

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Learning curves** (left, log steps). SFT first gains a little (it averages the student with the teacher), then
# copies the chosen teacher and falls to its accuracy. DPO on the same data climbs above the start and stays there;
# with the pairs swapped it learns the delta the wrong way round and sinks towards the rejected teacher; the strong
# anchor (β = 20) gains less, because its pair weights die sooner. Right: the final students on the accuracy dial.
# DPO also leaves most pairs ranked right: the share of the signal-carrying pairs with a positive margin, and their
# mean weight, are printed below the figure.

# %% tags=["nbval-ignore-output"]
fig, axes = plots.new_figure(2, width=4.8, height=3.8)
D.plot_curves(axes[0, 0], runs, title="seed 0, shared error c = 1.0")
D.accuracy_dial(axes[0, 1], vecs, keys=("w_star", "w0", "w_c", "w_r"))
for name in ("sft", "dpo", "dpo_anchor"):
    a = np.pi * (1 - runs[name].scores["final"])
    axes[0, 1].plot([0, np.cos(a)], [0, np.sin(a)], color=D.COLORS[name], lw=3, alpha=0.8, label=D.NAMES[name])
axes[0, 1].legend(loc="lower center", fontsize=7, ncol=2, frameon=False)
sig = mini.y_c != mini.y_r
m = 2.0 * mini.y_c[sig] * (mini.x[sig] @ (runs["dpo"].w - mini.w0))
print(f"after DPO: {float((m > 0).double().mean()):.0%} of the signal-carrying pairs ranked right, mean weight "
      f"{float((2.0 * torch.sigmoid(-m)).mean()):.2f} (β/2 = 1 at the start)")
assert float((m > 0).double().mean()) > 0.5
fig

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Train it yourself.** The knobs of section 4 (β, α chosen, the gap, shared and own error), the number of steps and
# the seed; *Train* runs SFT, DPO and DPO with swapped pairs on the same sample (about half a second; a setting
# already trained comes back at once from the cache). Try shared err 0.6, the counter-case of section 6: how high does
# SFT's early peak rise now, compared with DPO's end? Try shared err 0 with own err 0.9 (independent errors), at
# β = 2 and then β = 20: where does DPO end, compared with the start?

# %% tags=["nbval-ignore-output"]
train_panel = D.training_panel()
assert train_panel.state["result"]["dpo"] is runs["dpo"]          # the default setting comes from the cache
train_panel

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 6. The claim, checked
#
# **The paper's claim.** Preference pairs made of individually weak answers give gains beyond either answer's
# quality, even where SFT on the same data hurts; in logistic regression, the gap between two weak teachers provably
# gives a stronger student a useful signal.
#
# **What we check, in our miniature** (shared error c = 1.0, every seed its own frame and training sample, the four
# runs of a seed paired on that sample; seed spread is small because the geometry fixes every teacher's accuracy):
# 1. DPO ends above the student's start by at least 0.02, on every seed;
# 2. SFT ends below the start by at least 0.08, on every seed;
# 3. DPO's final accuracy beats **SFT's best step** (its maximum over all 400 steps, logged at every step) by at least
#    0.01 on every seed, and the paired difference is "ahead" with mean − 2 se > 0.01. Comparing with SFT's last
#    step only would flatter DPO: SFT's early peak is above the start;
# 4. with the pairs swapped, DPO ends at least 0.1 below the start, on every seed;
# 5. DPO's descent direction at the reference, on each finite sample, has cosine ≥ 0.9 with $\hat w_c - \hat w_r$
#    (its expectation).
#
# The thresholds were set in advance, before these runs. Every baseline gets the same 400 steps from the same start.

# %% tags=["nbval-ignore-output"]
per_seed = [D.seed_runs(s) for s in SEEDS]
final = {k: np.array([r[k].scores["final"] for r in per_seed]) for k in D.RUNS}
sft_best = np.array([r["sft"].scores["best"] for r in per_seed])
s0 = per_seed[0]["dpo"].scores["acc0"]                                       # the same on every seed (geometry)
cosines = np.array([D.dpo_gradient_cosine(D.make_miniature(s), beta=2.0) for s in SEEDS])
vs = {"DPO final − start": paired_difference(final["dpo"], s0),
      "DPO final − SFT's best step": paired_difference(final["dpo"], sft_best),
      "SFT final − start": paired_difference(final["sft"], s0),
      "DPO swapped final − start": paired_difference(final["swap"], s0),
      "DPO β = 20 final − start": paired_difference(final["dpo_anchor"], s0)}
assert all(r[k].scores["final"] != s0 for r in per_seed for k in D.RUNS)                          # every run moves
display(Markdown(f"Over {len(SEEDS)} paired seeds (mean ± standard error; SFT's best step at steps "
                 f"{sorted({int(r['sft'].scores['best_step']) for r in per_seed})}; gradient cosines "
                 f"{cosines.min():.3f} to {cosines.max():.3f}):\n\n" + "\n".join(f"- {k}: {d}" for k, d in vs.items())))

# %% tags=["nbval-ignore-output"]
assert all(r["sft"].scores["best_step"] > 1 and r["sft"].scores["best"] > s0 for r in per_seed)   # SFT learns
assert (final["dpo"] >= s0 + 0.02).all()                                                          # 1.
assert (final["sft"] <= s0 - 0.08).all()                                                          # 2.
d = vs["DPO final − SFT's best step"]
assert (final["dpo"] >= sft_best + 0.01).all() and d.verdict == "ahead" and d.mean - 2 * d.se > 0.01   # 3.
assert (final["swap"] <= s0 - 0.1).all()                                                          # 4.
assert (cosines >= 0.9).all()                                                                     # 5.
print("all five checks hold on", len(SEEDS), "seeds; smallest margin over SFT's best step:",
      f"{(final['dpo'] - sft_best).min():+.3f}")

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Two other set-ups: how clean is the delta? (printed, not asserted)
#
# **A smaller shared error, c = 0.6.** Both teachers are now more accurate (less of each is error), so SFT's early
# pull goes towards a better teacher. DPO still ends above the start and SFT still ends below it (checked). The question
# is SFT's *early* peak: if SFT were stopped at its best step, would it beat DPO? The comparison is printed with its
# verdict; nothing is asserted about it.
#
# **Independent teacher errors** ($c = 0$, $\rho_c = 0.6$, $\rho_r = 0.3$, $w_k = \rho_k w^* + \sqrt{1-\rho_k^2}\,e_k$;
# 3 seeds). The first-order gain is positive, but the step along $\hat w_c - \hat w_r$ carries both teachers' large
# own errors. Where DPO ends at β = 2 and at β = 20 is printed, as is SFT's peak and end; nothing is asserted.

# %% tags=["nbval-ignore-output"]
c06 = [D.seed_runs(s, runs=("sft", "dpo"), shared=0.6) for s in SEEDS]
ind = [D.seed_runs(s, runs=("sft", "dpo", "dpo_anchor"), **D.INDEPENDENT) for s in SEEDS[:3]]
get = lambda rs, k, key="final": np.array([r[k].scores[key] for r in rs])  # noqa: E731
assert all(r["sft"].scores["best_step"] > 1 and r["sft"].scores["best"] > s0 for r in c06 + ind)   # SFT learns
assert (get(c06, "dpo") > s0).all() and (get(c06, "sft") < s0).all()
vs06 = {"DPO final − start": paired_difference(get(c06, "dpo"), s0),
        "SFT final − start": paired_difference(get(c06, "sft"), s0),
        "**DPO final − SFT's best step**": paired_difference(get(c06, "dpo"), get(c06, "sft", "best"))}
span = lambda a: f"{a.min():.3f} to {a.max():.3f}"  # noqa: E731
lost = int((get(ind, "dpo") < s0).sum())

# %% tags=["nbval-ignore-output"]
t06, tind = c06[0]["sft"].teachers, ind[0]["sft"].teachers
display(Markdown(
    f"**c = 0.6** (teachers {t06['chosen']:.3f} and {t06['rejected']:.3f}, start {s0:.3f}, {len(SEEDS)} seeds):\n\n"
    + "\n".join(f"- {k}: {d}" for k, d in vs06.items())
    + f"\n\n**Independent errors** (teachers {tind['chosen']:.3f} and {tind['rejected']:.3f}, 3 seeds): DPO β = 2 ends "
    f"at {span(get(ind, 'dpo'))}, {'below' if lost == 3 else 'not always below'} the start ({lost} of 3 seeds); "
    f"DPO β = 20 at {span(get(ind, 'dpo_anchor'))}; SFT peaks at {span(get(ind, 'sft', 'best'))} "
    f"(step {int(ind[0]['sft'].scores['best_step'])} on seed 0), then ends at {span(get(ind, 'sft'))}."))
assert len(vs06) == 3

# %% [markdown] slideshow={"slide_type": "subslide"}
# The curves of seed 0 in the two other set-ups, side by side. Compare, at c = 0.6, the height of SFT's early bump
# with the end of the DPO curve; with independent errors, where DPO at β = 2 and the strong anchor (β = 20) end,
# relative to the start.

# %% tags=["nbval-ignore-output"]
fig, axes = plots.new_figure(2, width=4.8, height=3.6)
D.plot_curves(axes[0, 0], c06[0], title="shared error c = 0.6")
D.plot_curves(axes[0, 1], ind[0], title="independent errors")
assert c06[0]["sft"].scores["best"] > c06[0]["sft"].scores["final"]
fig

# %% [markdown] slideshow={"slide_type": "subslide"}
# **What holds.**
# - *The mechanism, exactly:* pairs where the teachers agree carry zero gradient, and DPO's first step points along
#   $\hat w_c - \hat w_r$ (cosine ≥ 0.9 on every seed's sample). The first-order gain is positive exactly when the
#   better teacher is chosen, and swapping the pairs turns the gain into a large loss (checked).
# - *The claim, in the c = 1.0 set-up:* DPO on pairs of two teachers, both worse than the student, ends above the
#   student; SFT on the better teacher's labels ends well below it; and DPO beats SFT even at SFT's best step, on
#   every seed (checked, with the paired margin printed above).
# - *Its limits:* in our miniature the delta is clean when the teachers' errors are shared, so that they cancel in
#   the difference. With a smaller shared error, an early-stopped SFT is a competitor to reckon with, and with
#   independent errors the step along the delta carries both teachers' own errors: the printed verdicts above say
#   how each comparison came out here (not asserted). The paper's 3B and 1.5B models come from one family trained on
#   similar data, which plausibly makes their errors more shared than independent (our reading; not measured).

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 7. Pitfalls
#
# - **Early stopping confounds SFT.** A short SFT run can look *good*: it first averages the student with the teacher.
#   Compare DPO with SFT's best step, not only its last, and log finely: SFT's peak comes within the first 20 steps,
#   and logging every 5 steps can shave it.
# - **β and the learning rate interact.** DPO's gradient scales with β. With a fixed learning rate, a larger β mostly
#   takes larger steps; here the learning rate is 1.25/β, so β changes only how fast the pair weights die.
# - **Positive "log-probabilities".** DPO expects sequence log-probabilities ($\le 0$). Passing logits or
#   probabilities gives a loss that trains, wrongly; lossviz refuses a positive value:

# %%
try:
    D.dpo_loss(torch.tensor([2.3, -0.1]), torch.tensor([-1.0, -2.0]), torch.tensor([-1.0, -1.0]),
               torch.tensor([-1.0, -1.0]))
except ValueError as err:
    print("ValueError:", err)

# %% [markdown] slideshow={"slide_type": "subslide"}
# - **Length normalisation.** `dpo_norm` divides each log-probability by its answer's length. It matters for language
#   models (a long answer has a very negative log-probability; without it, β acts on sums of hundreds of tokens) and
#   is irrelevant in the logistic miniature, where every answer is one label.
# - **The miniature is ours.** It reproduces the mechanism (learning from the delta, zero signal where the teachers
#   agree, SFT collapsing onto the teacher), not the paper's proof or its benchmarks.
# - **Shared versus independent errors** change the story completely (section 6). A result in one set-up says
#   little about the other.
#
# ## 8. Exercises
# 1. **How small a gap?** In the Train panel, keep c = 1.0 and shrink the gap $\alpha_c - \alpha_r$ to 0.2, then 0.
#    Does DPO still beat the start? *Hint:* at a gap of 0 the first-order gain is 0, and the teachers differ only in
#    their own errors.
# 2. **The anchor.** With independent errors (shared err 0, own err 0.9), find the smallest β at which DPO no longer
#    loses accuracy. *Hint:* the middle plot of the Explore panel shows how far the student may move before it
#    loses; the learning rate is 1.25/β.
# 3. **No floor for swapped pairs.** SFT on the rejected teacher (`D.train_delta("sft", swap=True)`) ends at that
#    teacher's accuracy. Does DPO with swapped pairs stop there too? Train both for 1000 steps and compare. *Hint:*
#    swapped DPO moves along $\hat w_r - \hat w_c$; compute that direction's own accuracy with `D.exact_accuracy`
#    on the vectors of `D.directions()`.
# 4. **Length normalisation.** Give every answer of section 2 the same length, 10 tokens. Which β makes `dpo_norm`
#    equal to plain DPO at β = 5? Is there such a β when the lengths differ? *Hint:* `D.dpo_margin` divides each
#    log-probability by its answer's length.
#
# ## 9. Summary
# - DPO is a logistic loss on the difference of two implicit rewards; each pair's gradient weight is
#   $\beta\sigma(-m)$: $\beta/2$ at the start, small once the pair is ranked right.
# - In a binary miniature, pairs where the two teachers agree carry exactly no signal, and DPO's first step goes
#   along $\hat w_c - \hat w_r$: it learns from the delta, and gains to first order exactly when the better teacher
#   is chosen.
# - With a shared teacher error (c = 1.0), DPO on pairs of two teachers worse than the student improves it, while SFT
#   on the better teacher drags it down to that teacher; DPO beats SFT's best step on every seed (asserted).
# - With a smaller shared error, early-stopped SFT competes with DPO; with independent errors, the delta carries the
#   teachers' own errors, and β is the anchor that limits how far the student moves.
#
# **References.** Geng, Ivison, Li, Sap, Li, Krishna, Koh, *The Delta Learning Hypothesis: Preference Tuning on Weak
# Data can Yield Strong Gains*, COLM 2025 (arXiv:2507.06187). Rafailov, Sharma, Mitchell, Ermon, Manning, Finn,
# *Direct Preference Optimization: Your Language Model is Secretly a Reward Model*, NeurIPS 2023. Lambert et al.,
# *Tülu 3: Pushing Frontiers in Open Language Model Post-Training*, 2024. Burns et al., *Weak-to-Strong
# Generalization*, 2023. Wang et al., *Multi-Similarity Loss with General Pair Weighting*, CVPR 2019 (notebook 01).
