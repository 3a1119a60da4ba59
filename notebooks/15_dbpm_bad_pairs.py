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
# # 15 — Dynamic Bad Pair Mining: finding the bad positive pairs of contrastive learning
#
# **Paper.** Xiang Lan, Hanshu Yan, Shenda Hong, Mengling Feng. *Towards Enhancing Time Series Contrastive
# Learning: A Dynamic Bad Pair Mining Approach.* ICLR 2024. [arXiv:2302.03357](https://arxiv.org/abs/2302.03357) ·
# official code: [lanxiang1017/DynamicBadPairMining_ICLR24](https://github.com/lanxiang1017/DynamicBadPairMining_ICLR24)
# (no licence file; lossviz re-implements it). The base loss, NT-Xent, is the one of notebook 09.
#
# **The story.** Contrastive learning (SimCLR) trusts every *positive pair*: the two random views of one item
# must end up close together. On time series this trust is sometimes wrong, and the paper names two ways.
# A **noisy pair** comes from an item that is mostly noise: both views share the noise, the network matches them
# by the noise alone, and the pair is suspiciously *easy*. A **faulty pair** comes from an augmentation that
# destroyed the signal: the two views show unrelated patterns, and the pair is suspiciously *hard*. Can we spot
# these pairs from training behaviour alone, without labels? DBPM keeps a memory of every pair's loss over the
# epochs, flags the pairs whose history is abnormally low or high, and shrinks their loss.
#
# In this notebook we inject noisy and faulty pairs into MNIST-1D, so that the ground truth is known. We then
# watch their losses during training, score DBPM's flags with precision and recall, and look at the
# down-weighting curve. Finally we check which part of the claim survives at small scale.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Setup
#
# One cell: imports, seeds, one torch thread, and the `FAST` switch (`LOSSVIZ_FAST=1` shortens the runs).

# %%
import inspect
import math

import numpy as np
import torch
from IPython.display import Markdown, display

import lossviz as lv
from lossviz import augment, plots
from lossviz.papers import dbpm as BP
from lossviz import train as T
from lossviz.metrics import paired_difference

FAST = T.setup(seed=0)
EPOCHS = 30 if FAST else 40
WARMUP = EPOCHS // 2
print("lossviz", lv.__version__, "| torch", torch.__version__, "| FAST =", FAST)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1. The idea and the math
#
# ### The per-pair loss
# A batch holds $B$ items and two views of each, $2B$ views with L2-normalised embeddings and cosine similarities
# $S$. Item $i$'s views are $a$ and $a'$. NT-Xent at temperature $\tau$ (notebook 09), **per pair**, averages the two
# directions:
#
# $$\ell_i = \tfrac12\Big[-\log\frac{e^{S_{aa'}/\tau}}{e^{S_{aa'}/\tau} + \sum_{n \in N_a} e^{S_{an}/\tau}}
#   \;-\; \log\frac{e^{S_{a'a}/\tau}}{e^{S_{a'a}/\tau} + \sum_{n \in N_{a'}} e^{S_{a'n}/\tau}}\Big],$$
#
# where $N_a$ holds every view except $a$ and $a'$. The mean $\frac1B\sum_i \ell_i$ is SimCLR's loss,
# `lv.nt_xent_loss`. The official code uses $\tau = 0.2$.
#
# ### The memory and the dynamic threshold
# DBPM stores $\ell_i^{(t)}$, the raw loss of pair $i$ in epoch $t$, for every pair and every epoch. After a
# warm-up of $E_w$ epochs (of $E$), at the start of epoch $e$:
#
# $$m_i = \frac1e\sum_{t<e} \ell_i^{(t)}\,\frac{t+1}{E}, \qquad \mu = \operatorname{mean}_i m_i, \quad
#   \sigma = \operatorname{std}_i m_i,$$
#
# $$\text{noisy: } m_i \le \mu - c_{np}\,\sigma \quad(\text{abnormally easy}), \qquad
#   \text{faulty: } m_i \ge \mu + c_{fp}\,\sigma \quad(\text{abnormally hard}).$$
#
# - The history score $m_i$ is a *plain* mean of epoch-weighted losses. Late epochs count more. Because the
#   weights $(t+1)/E$ are below 1, $m_i$ lives on a smaller scale than $\ell_i$.
# - $\sigma$ is the population standard deviation (numpy's `std`), the same for all pairs: the threshold is
#   *dynamic* because $\mu$ and $\sigma$ move with training, not because it differs per pair.
#
# ### The down-weighting
# A flagged pair's loss is multiplied by a weight that carries no gradient:
#
# $$\ell_i \leftarrow g(\ell_i)\,\ell_i, \qquad g_{\text{pdf}}(\ell) = \mathcal N(\ell;\mu,\sigma^2) =
#   \frac{e^{-(\ell-\mu)^2/2\sigma^2}}{\sigma\sqrt{2\pi}}, \qquad L = \frac1B \sum_i \ell_i .$$
#
# That is the official code (`scipy.stats.norm(mu, sd).pdf` at the *current raw* loss). Two things about it are
# odd, and we will see both:
# 1. the pdf is **not normalised** to 1: its peak $1/(\sigma\sqrt{2\pi})$ exceeds 1 whenever $\sigma < 0.399$;
# 2. $\mu$ and $\sigma$ come from the epoch-weighted history, while $\ell$ is the raw current loss: a **scale
#    mismatch**.
#
# lossviz also offers the `normalised` form $g(\ell) = e^{-(\ell-\mu)^2/2\sigma^2} \in (0, 1]$.
#
# ### General Pair Weighting
# With $g$ frozen, $\partial L/\partial S = \sum_i g_i\,\partial \ell_i/\partial S$: a flagged pair's pull on its
# positive *and* the push of its two views on all their negatives are scaled by $g_i$. Within each anchor, the
# negatives keep their InfoNCE softmax shares (notebook 09). So DBPM is a **per-pair weight on top of NT-Xent's
# per-negative weights**. Unflagged pairs keep weight 1.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 2. From formula to code
#
# The per-pair loss: one log-sum-exp over each view's negatives (`lossviz.similarity.masked_logsumexp`), the positive's
# logit gathered, and the two views of an item averaged.

# %%
print(inspect.getsource(BP.pair_losses))

# %% [markdown] slideshow={"slide_type": "subslide"}
# **A batch with bad pairs.** We inject 10 % noisy and 10 % faulty pairs into the 2000 training signals
# (`BP.inject`, seeded; the ground truth is `bad.kind`), then take 8 items: 6 clean, 1 noisy, 1 faulty. Their two
# views use the miniature's augmentation (`BP.VIEWS`). For these pictures the embedding is the raw signal, so no
# network is needed yet. Three checks follow. The per-pair losses equal the textbook recipe, which is
# `cross_entropy(reduction="none")` on $S/\tau$ with the diagonal masked, averaged over the two views. Their mean
# is `lv.nt_xent_loss`. And the threshold rule equals the official code's numpy recipe on a random memory.

# %%
split = BP.mnist1d_small()
bad = BP.inject(split.x_train, noisy=0.1, faulty=0.1, seed=0)
print(bad.counts())
kinds = bad.kind
items = torch.cat([torch.nonzero(kinds == k).flatten()[:n] for k, n in ((BP.CLEAN, 6), (BP.NOISY, 1), (BP.FAULTY, 1))])
v1, v2 = bad.views(split.x_train, items, 0, **BP.VIEWS)
S, y = lv.similarity(torch.cat([v1, v2]).double()), augment.two_view_labels(len(items))
ell = BP.pair_losses(S, y, tau=0.2)
partner = torch.arange(2 * len(items)).roll(len(items))             # view i's positive: the other view
textbook = torch.nn.functional.cross_entropy((S / 0.2).fill_diagonal_(-math.inf), partner, reduction="none")
assert torch.allclose(ell, textbook.reshape(2, -1).mean(0), atol=1e-12)
assert torch.allclose(ell.mean(), lv.nt_xent_loss(S, y, tau=0.2), atol=1e-12)
print("per-pair loss (nats), 6 clean, noisy, faulty:", ell.numpy().round(2).tolist())

# %%
rng = np.random.default_rng(0)
memory, E = rng.gamma(4.0, 0.8, size=(12, 500)), 20                 # 12 epochs of 500 pairs' losses
official = np.array([np.mean(memory[:, i] * [(1 + t) / E for t in range(12)]) for i in range(500)])
flags = BP.flag_bad_pairs(BP.history_scores(torch.tensor(memory), E), c_np=2, c_fp=3)
mu, sd = official.mean(), official.std()
assert np.array_equal(flags.noisy.numpy(), official <= mu - 2 * sd)
assert np.array_equal(flags.faulty.numpy(), official >= mu + 3 * sd)
print(f"mu {flags.mu:.3f}, sigma {flags.sigma:.3f}: {int(flags.noisy.sum())} noisy and "
      f"{int(flags.faulty.sum())} faulty flags, as in the official recipe")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 3. Weights as pictures
#
# ### What a bad pair looks like
# Left: a clean pair, two views of one signal (shifted, rescaled and noisy copies). Middle: a noisy pair. The
# item's own signal is scaled down to 0.2 and a fixed, item-specific noise pattern of amplitude 3 sits on *both*
# views, so the views match almost exactly, by the noise. Right: a faulty pair, where view 2 shows another signal.

# %%
fig, axes = plots.new_figure(3, width=4.6, height=3.4)
shown = BP.pair_picture(axes[0], split.x_train, bad)
assert set(shown) == set(BP.KINDS)
fig

# %% [markdown] slideshow={"slide_type": "subslide"}
# ### Where the weight goes: NT-Xent against DBPM
# The signed pair weights $\partial L/\partial S$ of the 8-item batch, with the views sorted by item (an item plays
# the part of a class in the heat-map's labels). Each outlined 2 × 2 block is
# one item's two views, and its blue off-diagonal cells are the pull on the positive pair. Left: plain NT-Xent.
# Right: DBPM with the noisy and the faulty item flagged and given weight $g = 0.1$ (an illustrative value): their
# rows fade, both their pull and their push. Every other row is unchanged. The bars give the per-pair loss: the
# noisy pair is the easiest in the batch, the faulty one the hardest.

# %%
w = torch.ones(len(items), dtype=torch.float64)
w[-2:] = 0.1
G_nt = lv.pair_weights(lv.nt_xent_loss, S, y, signed=True, tau=0.2)
G_db = lv.pair_weights(BP.dbpm_loss, S, y, signed=True, tau=0.2, w=w)
fig, axes = plots.new_figure(3, width=4.3, height=3.8)
colors = [BP.KIND_COLORS[BP.KINDS[int(k)]] for k in kinds[items]]
axes[0, 0].bar(range(len(items)), ell.numpy(), color=colors)
axes[0, 0].set(xlabel="item (6 clean, noisy, faulty)", ylabel="per-pair loss ℓ (nats)", title="the batch's pair losses")
_ = plots.weight_heatmap(axes[0, 1], G_nt, y, title="NT-Xent pair weights")
_ = plots.weight_heatmap(axes[0, 2], G_db, y, title="DBPM, bad pairs at g = 0.1")
fig

# %% [markdown] slideshow={"slide_type": "subslide"}
# **The exact fact behind the picture.** A pair's weight scales its two views' rows of $\partial L/\partial S$, and
# nothing else.

# %%
rows = torch.tensor([6, 7, 14, 15])                     # the views of the noisy and the faulty item
assert torch.allclose(G_db[rows], 0.1 * G_nt[rows], atol=1e-14)
keep = torch.ones(len(y), dtype=torch.bool)
keep[rows] = False
assert torch.allclose(G_db[keep], G_nt[keep], atol=1e-14)
assert ell[-2] == ell.min() and ell[-1] == ell.max()

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 4. Explore: the threshold knobs and the weight function
#
# The panels here are built on `lossviz.widgets`: moving a control redraws the figure in place,
# and a Train button runs a real training run, cached by its settings.
#
# Pure maths, no data. Left: history scores spread as a Gaussian with mean $\mu$ and standard deviation $\sigma$,
# the two cuts, and the share of pairs beyond each. Right: the weight $g(\ell)$ of a flagged pair against its
# current loss. Things to try:
# - move $\sigma$ below 0.4 with the `pdf` form: the weight climbs above 1, so pairs near $\mu$ would be
#   **up-weighted**, the opposite of the intent;
# - switch to `normalised`: the peak is 1 whatever $\sigma$;
# - set $c_{fp}$ from 3 (`run.sh`) to 2 (the argparse default): about ten times more pairs are flagged faulty
#   when the scores are Gaussian (2.3 % instead of 0.13 %).

# %%
maths = BP.threshold_panel(mu=1.0, sigma=0.3, c_np=2.0, c_fp=3.0, form="pdf")
assert maths.state["max_weight"] > 1                  # sigma = 0.3 < 0.399: the pdf up-weights near mu
maths

# %%
maths.controls["form"].value = "normalised"
assert abs(maths.state["max_weight"] - 1) < 1e-3
maths.controls["c_fp"].value = 2.0
assert abs(maths.state["share"][1] - 0.0228) < 1e-3
maths.controls["form"].value, maths.controls["c_fp"].value = "pdf", 3.0

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 5. A real training run: SimCLR with bad pairs, with and without DBPM
#
# **Protocol.** MNIST-1D: 2000 training and 500 test signals of length 40, standardised
# (`BP.mnist1d_small`). We inject 10 % noisy and 10 % faulty pairs (200 each, seed 0). Views: a circular shift of
# up to 3 samples, an amplitude factor $1 \pm 0.175$ (standard deviation 0.1), Gaussian noise 0.1. Network: the
# SimCLR miniature of notebook 09, an MLP encoder 40 → 128 → 128 and projector 128 → 128 → 32, L2-normalised.
# Training: per-pair NT-Xent at τ = 0.2, batches of 256 items (every item once per epoch), Adam 9e-4, 40
# epochs. DBPM starts after a warm-up of 20 epochs, with the `run.sh` cuts $c_{np} = 2$, $c_{fp} = 3$ and the
# `pdf` weight. Both runs use the same seed, so they are identical until the warm-up ends. The flags are computed
# at every epoch in both runs and scored against the truth; only DBPM uses them. Evaluation: 5-NN class accuracy
# of the encoder's features on the clean test signals, with the clean training signals as gallery. Labels are
# used only here.
#
# Two more runs isolate each effect: DBPM with noisy pairs only, and SimCLR on clean data as a reference.

# %% tags=["nbval-ignore-output"]
runs = {m: BP.train_dbpm(m, epochs=EPOCHS, warmup=WARMUP) for m in ("simclr", "dbpm")}
noisy_only = BP.train_dbpm("dbpm", epochs=EPOCHS, warmup=WARMUP, faulty=0.0)
clean = BP.train_dbpm("simclr", epochs=EPOCHS, warmup=WARMUP, noisy=0.0, faulty=0.0)
print({name: f"{r.seconds:.1f} s" for name, r in [*runs.items(), ("noisy only", noisy_only), ("clean", clean)]})
assert all(np.isfinite(r.memory).all() for r in (*runs.values(), noisy_only, clean))
clean_loss = lambda r, e: r.memory[e][r.kind == BP.CLEAN].mean()              # noqa: E731
print("clean pairs' mean loss, first -> last epoch:", {n: f"{clean_loss(r, 0):.2f} -> {clean_loss(r, -1):.2f}"
      for n, r in [*runs.items(), ("noisy only", noisy_only), ("clean", clean)]})
assert all(clean_loss(r, -1) < clean_loss(r, 0) - 0.5 for r in (*runs.values(), noisy_only, clean))

# %% tags=["nbval-ignore-output"]
for name, r in [*runs.items(), ("dbpm, noisy only", noisy_only), ("simclr, clean data", clean)]:
    print(f"{name:19s} {r!r}")
    print(f"{'':19s} final mean pair loss: " + ", ".join(f"{k} {v:.2f}" for k, v in r.final_losses().items()))
assert set(noisy_only.final_losses()) == {"clean", "noisy"} and set(clean.final_losses()) == {"clean"}
assert all(set(r.final_losses()) == set(BP.KINDS) for r in runs.values())

# %% [markdown] slideshow={"slide_type": "subslide"}
# **The pair losses over training.** Thin lines are five pairs of each kind, thick lines each kind's mean. The
# dotted line marks the end of the warm-up. Faulty pairs stay far above the clean ones, because no network can match
# two unrelated signals. Noisy pairs fall below the clean ones: their views match by the shared pattern.
# After the warm-up, DBPM (middle) stops training on the faulty pairs it flagged, and their loss stays higher
# than in SimCLR (left). Right: the 5-NN accuracy of the encoder during training; the dotted line is the untrained
# encoder (epoch 0). Every run ends *below* it: this SimCLR miniature does not learn features that help 5-NN,
# which matters for the downstream part of the claim (section 6).

# %% tags=["nbval-ignore-output"]
fig, axes = plots.new_figure(3, width=4.6, height=3.6)
for ax, (name, r) in zip(axes[0, :2], runs.items()):
    _ = BP.loss_trajectories(ax, r, title=f"pair losses, {name}")
for (name, r), c in zip([*runs.items(), ("clean data", clean)], ("k", "#E69F00", plots.MUTED)):
    axes[0, 2].plot(r.evals["epoch"], r.evals["knn"], marker="o", color=c, label=name)
axes[0, 2].axhline(runs["dbpm"].evals["knn"][0], color="k", ls=":", lw=1.2, label="untrained encoder")
axes[0, 2].set(xlabel="epoch", ylabel="5-NN test accuracy", title="downstream: 5-NN on the encoder")
axes[0, 2].legend(loc="upper right")
by_kind = {n: {k: r.memory[:, r.kind == BP.KINDS.index(k)].mean(1) for k in BP.KINDS} for n, r in runs.items()}
print("smallest gap faulty - clean over the epochs:",
      {n: f"{(m['faulty'] - m['clean']).min():.2f}" for n, m in by_kind.items()})
assert all((m["faulty"] > m["clean"]).all() and m["noisy"][-1] < m["clean"][-1] for m in by_kind.values())
fig

# %% [markdown] slideshow={"slide_type": "subslide"}
# **The flags against the truth, per epoch** (computed from epoch 1 on; used only after the warm-up). Left: the
# main DBPM run. The flags of the first epochs are poor (the recall starts low, checked). From the warm-up on, when
# DBPM uses them, the faulty flags are right at every epoch (precision near 1, checked), but they find only part
# of the faulty pairs (the recall is printed in section 6). No pair is flagged noisy any more (checked),
# although the noisy pairs are the easiest. The 10 % faulty pairs form a long upper
# tail that inflates $\sigma$, and $\mu - 2\sigma$ falls below every score. Right: with noisy pairs only,
# $\sigma$ is small and the noisy flags work.

# %% tags=["nbval-ignore-output"]
fig, axes = plots.new_figure(2, width=4.8, height=3.5)
_ = BP.flag_curves(axes[0, 0], runs["dbpm"], title="DBPM, 10 % noisy + 10 % faulty")
_ = BP.flag_curves(axes[0, 1], noisy_only, title="DBPM, 10 % noisy only")
e = WARMUP
print(f"sigma of the history scores at epoch {e}: with faulty pairs {runs['dbpm'].stats['sigma'][e]:.3f}, "
      f"noisy only {noisy_only.stats['sigma'][e]:.3f}")
st = runs["dbpm"].stats
print(f"faulty flags: lowest precision from the warm-up on {np.nanmin(st['faulty_precision'][WARMUP:]):.2f}, "
      f"recall at epochs 1-3 {np.round(st['faulty_recall'][1:4], 2)}, last {st['faulty_recall'][-1]:.2f}")
assert np.nanmin(st["faulty_precision"][WARMUP:]) >= 0.95 and not (runs["dbpm"].flags[WARMUP:] == BP.NOISY).any()
assert st["faulty_recall"][1] < 0.5 * st["faulty_recall"][-1]             # the first epochs' flags are poor
assert runs["dbpm"].stats["sigma"][e] > 2 * noisy_only.stats["sigma"][e]    # the faulty tail inflates sigma
fig

# %% [markdown] slideshow={"slide_type": "subslide"}
# **The missed faulty pairs are not hidden among the clean ones.** One might guess that the faulty pairs DBPM
# misses look clean. They do not. Take the history scores behind the last epoch's flags of the main DBPM run
# (`BP.missed_faulty`): almost every missed faulty pair scores *above every clean pair* (the cell prints how many).
# They are missed because the faulty pairs themselves inflate $\sigma$: 10 % of scores far out in one tail
# make the standard deviation several times larger than the spread of the clean and noisy pairs, so the cut
# $\mu + 3\sigma$ lands far beyond the highest clean score, in the middle of the faulty tail. The outliers widen
# the yardstick that is meant to find them.

# %% tags=["nbval-ignore-output"]
m_final = BP.history_scores(torch.as_tensor(runs["dbpm"].memory[:-1], dtype=torch.float64), EPOCHS)
tail = BP.missed_faulty(m_final, runs["dbpm"].kind)
print(f"faulty pairs missed by mu + 3 sigma: {tail['missed']} of {bad.counts()['faulty']}; "
      f"{tail['above_clean']} of them score above every clean pair")
print(f"sigma of all scores {tail['sigma']:.3f}, without the faulty pairs {tail['sigma_without_faulty']:.3f}; "
      f"cut mu + 3 sigma {tail['cut']:.2f}, highest clean score {tail['clean_max']:.2f}")
assert tail["missed"] > 0 and tail["above_clean"] >= 0.8 * tail["missed"]
assert tail["sigma"] > 2 * tail["sigma_without_faulty"] and tail["cut"] > tail["clean_max"]

# %% [markdown] slideshow={"slide_type": "subslide"}
# **A robust threshold** (not in the paper). Replace the mean and the standard deviation by statistics that a tail
# of outliers cannot drag: the median and the median absolute deviation (MAD),
#
# $$\tilde\mu = \operatorname{median}_i m_i, \qquad \tilde\sigma = 1.4826\,\operatorname{median}_i |m_i - \tilde\mu|,$$
#
# $$\text{noisy: } m_i \le \tilde\mu - c_{np}\tilde\sigma, \qquad \text{faulty: } m_i \ge \tilde\mu + c_{fp}\tilde\sigma .$$
#
# The factor 1.4826 makes $\tilde\sigma$ equal to $\sigma$ for Gaussian scores, so the cuts $c_{np} = 2$,
# $c_{fp} = 3$ keep their meaning. The median moves little until half of the scores are outliers. Below, the same
# scores with both rules (`BP.flag_bad_pairs(m, rule="mad")`), and the precision and recall of each kind's flags.
# With the robust rule both cuts sit just outside the clean pairs, and both kinds of bad pair are found.

# %% tags=["nbval-ignore-output"]
fig, axes = plots.new_figure(2, width=4.8, height=3.5)
kind_t, robust = torch.as_tensor(runs["dbpm"].kind), {}
for ax, rule in zip(axes[0], BP.RULES):
    f = BP.score_histogram(ax, m_final, kind_t, rule=rule, title=f"last epoch's scores, {rule} rule")
    robust[rule] = {"noisy": BP.precision_recall(f.noisy, kind_t == BP.NOISY),
                    "faulty": BP.precision_recall(f.faulty, kind_t == BP.FAULTY)}
    print(f"{rule:5s} rule: " + "; ".join(f"{k} flags precision {'n/a (none flagged)' if math.isnan(p) else f'{p:.2f}'}"
                                         f" recall {r:.2f}" for k, (p, r) in robust[rule].items()))
assert all(p >= 0.85 and r >= 0.9 for p, r in robust["mad"].values())      # measured about 0.95 or more
fig

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Re-flag the run yourself** (pure maths on its stored memory, no training). Pick an epoch $e$ and the cuts. Left:
# the history scores $m$ of epochs $0..e-1$, coloured by true kind, with the cuts (log-scaled counts). Right: the
# down-weighting curve at epoch $e$ and each flagged pair on it, at its current raw loss. Note the scale mismatch:
# $\mu$ lives on the scale of the epoch-weighted history, while the flagged faulty pairs' raw losses lie many σ above
# it (the cell prints how many), so the pdf gives them a weight of essentially 0. In effect DBPM *drops* them. Lower
# $c_{np}$ to about 1 to catch some noisy pairs, and watch the precision; then switch the rule to `mad` (the robust
# threshold of the section above) and move the epoch.

# %% tags=["nbval-ignore-output"]
reflag = BP.flag_panel(runs["dbpm"], epoch=WARMUP)
f_e, raw = reflag.state["flags"], torch.as_tensor(runs["dbpm"].memory[WARMUP])
far = float((raw[f_e.faulty].median() - f_e.mu) / f_e.sigma)
print(f"epoch {WARMUP}: mu {f_e.mu:.2f}, sigma {f_e.sigma:.2f}; flagged faulty pairs: median raw loss "
      f"{float(raw[f_e.faulty].median()):.1f}, {far:.0f} sigma above mu")
assert reflag.state["pr"]["faulty"][0] == 1.0 and far > 5
reflag

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Train it yourself.** Choose DBPM or SimCLR, the cuts, the warm-up fraction, the injected rates, the weight
# form, the epochs and the seed, and press *Train*. A 40-epoch run takes a few seconds; a setting already trained
# comes back at once from the cache, like the default setting below.

# %% tags=["nbval-ignore-output"]
train_panel = BP.training_panel(epochs=EPOCHS)
assert train_panel.state["result"] is runs["dbpm"]
train_panel

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 6. The claim, checked
#
# **The paper's claim.** DBPM reliably identifies noisy and faulty positive pairs from their loss history, and
# down-weighting them improves time-series representations on four real data sets, as a plug-in with no extra
# parameters to learn.
#
# **What we can check here**, on numbers measured above (one seed; we do not search seeds):
# 1. *Faulty pairs are found:* at the last epoch, the faulty flags have precision ≥ 0.8 and recall ≥ 0.3. This
#    holds in both runs; in the SimCLR run the flags are only observed.
# 2. *They are found because they are hard:* their final mean loss exceeds the clean pairs' by more than 1 nat.
# 3. *Noisy pairs are easy* (lower final loss than clean pairs) in both runs. They are found (precision ≥ 0.5) when
#    they are the only bad pairs, but not next to faulty pairs. This part of the claim depends on the mix.
# 4. *The down-weighting acts:* after the warm-up, every flagged faulty pair gets a weight below $10^{-3}$, and DBPM
#    leaves the faulty pairs with a higher final loss than SimCLR does.
# 5. *A robust threshold finds both kinds* (our addition, not the paper's): checked on 8 paired seeds below.
# 6. *Downstream:* not measurable with this miniature (see below).

# %% tags=["nbval-ignore-output"]
fp_s, fr_s = runs["simclr"].final_flags("faulty")
fp_d, fr_d = runs["dbpm"].final_flags("faulty")
loss_s, loss_d = runs["simclr"].final_losses(), runs["dbpm"].final_losses()
np_only, nr_only = noisy_only.final_flags("noisy")
after = runs["dbpm"].flags[WARMUP:] == BP.FAULTY
print(f"faulty flags: SimCLR P {fp_s:.2f} R {fr_s:.2f} | DBPM P {fp_d:.2f} R {fr_d:.2f}")
print(f"noisy flags: with faulty pairs {int((runs['dbpm'].flags[-1] == BP.NOISY).sum())} flagged | "
      f"noisy only P {np_only:.2f} R {nr_only:.2f}")
print(f"largest weight given to a flagged faulty pair after the warm-up: {runs['dbpm'].weights[WARMUP:][after].max():.1e}")
assert min(fp_s, fp_d) >= 0.8 and min(fr_s, fr_d) >= 0.3                               # 1
assert all(l["faulty"] > l["clean"] + 1 for l in (loss_s, loss_d))                       # 2
assert all(l["noisy"] < l["clean"] for l in (loss_s, loss_d, noisy_only.final_losses()))  # 3
assert np_only >= 0.5 and not (runs["dbpm"].flags[-1] == BP.NOISY).any()                 # 3
assert runs["dbpm"].weights[WARMUP:][after].max() < 1e-3 and loss_d["faulty"] > loss_s["faulty"]  # 4

# %% [markdown] slideshow={"slide_type": "subslide"}
# 5. *The robust threshold, on 8 paired seeds.* The main run is one seed, so we repeat the comparison of the two
#    rules on 8 seeds (seed 0 included; each seed draws its own bad pairs, views and network). To keep this cheap,
#    each seed is a SimCLR run of half the warm-up; both rules flag the same loss memory, so the comparison is
#    paired twice over, by seed and by memory (`BP.rule_comparison`). We compare recall, which is defined for both
#    rules (DBPM's rule flags no noisy pair, so its noisy precision does not exist), assert the gain with a margin
#    well inside the measured spread, and check that the robust rule stays precise. The price of the robust rule is
#    printed too: its faulty flags catch a few pairs that are not faulty, which DBPM's rule leaves alone.

# %% tags=["nbval-ignore-output"]
rules = BP.rule_comparison(range(8), epochs=WARMUP // 2)
gain = {k: paired_difference(rules["mad"][f"{k}_recall"], rules["sigma"][f"{k}_recall"]) for k in ("faulty", "noisy")}
for k, d in gain.items():
    print(f"{k} recall, MAD rule - sigma rule: {d}")
print(f"faulty precision, MAD rule - sigma rule: "
      f"{paired_difference(rules['mad']['faulty_precision'], rules['sigma']['faulty_precision'])}")
print("MAD rule, lowest over the seeds: " + ", ".join(f"{k} {rules['mad'][k].min():.2f}" for k in rules["mad"]))
assert gain["faulty"].mean - 2 * gain["faulty"].se > 0.3 and gain["noisy"].mean - 2 * gain["noisy"].se > 0.5
assert min(rules["mad"][k].min() for k in rules["mad"]) >= 0.85

# %% [markdown] slideshow={"slide_type": "subslide"}
# 6. *Downstream*, one seed: the 5-NN accuracy of each run against the untrained encoder. The SimCLR miniature
#    *lowers* the 5-NN accuracy below that of the untrained network (both printed, checked), with or without bad
#    pairs. So no downstream effect of DBPM can be measured here, in either direction.

# %% tags=["nbval-ignore-output"]
knn = {n: r.knn for n, r in [*runs.items(), ("clean data", clean)]}
untrained = runs["dbpm"].evals["knn"][0]
print("5-NN: " + ", ".join(f"{n} {v:.3f}" for n, v in knn.items()) + f" | untrained encoder {untrained:.3f}")
display(Markdown(f"Measured, one seed: the untrained encoder scores {untrained:.3f} and the best trained run "
                 f"{max(knn.values()):.3f}, so training lowers the 5-NN accuracy. DBPM − SimCLR = "
                 f"{knn['dbpm'] - knn['simclr']:+.3f}; SimCLR on clean data − SimCLR with bad pairs = "
                 f"{knn['clean data'] - knn['simclr']:+.3f}."))
assert max(knn.values()) < untrained - 0.03          # training lowers the 5-NN accuracy below the untrained encoder

# %% [markdown] slideshow={"slide_type": "subslide"}
# **What holds, what does not.**
# - *Faulty pairs*: found as the paper says, with precise flags. The recall (printed above) is partial, but not
#   because the missed pairs look clean: almost all of them score above every clean pair (section 5). The faulty
#   tail inflates $\sigma$, and the cut $\mu + 3\sigma$ moves out into the tail.
# - *Noisy pairs*: easy, as the paper says, but only found when they are alone. A mean-and-standard-deviation
#   threshold is not robust: one tail of outliers (faulty) widens $\sigma$ and hides the other tail.
# - *The robust threshold* (median and MAD, our addition) finds both kinds next to each other, with high
#   precision, on every one of 8 seeds (printed above).
# - *Down-weighting*: because of the scale mismatch, the pdf weight of a flagged pair is essentially 0. DBPM as
#   coded *removes* the flagged pairs from training rather than shrinking them softly.
# - *Downstream*: at this scale the claim cannot be checked. The SimCLR miniature lowers the 5-NN accuracy
#   below that of the untrained encoder (checked), so this miniature is no test of representation quality. The
#   differences between DBPM, SimCLR and the clean-data run are printed above; with one seed each we cannot tell
#   them from seed noise. The paper's gains come from ResNet encoders on real ECG and activity data, with linear
#   probes.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 7. Pitfalls
#
# **Noisy pairs are only "noisy" if they are easy.** The obvious injection, adding the noise pattern to the
# *signal* before augmentation, does not make easy pairs: each view shifts the pattern, and a shift of one sample
# decorrelates white noise. These pairs end up *harder* than clean ones, so DBPM cannot call them noisy. Some
# can even be flagged as faulty (the cell prints how many). The injection design decides what can be detected.

# %% tags=["nbval-ignore-output"]
signal_noise = BP.train_dbpm("dbpm", epochs=EPOCHS, warmup=WARMUP, faulty=0.0, noise="signal")
assert np.isfinite(signal_noise.memory).all() and clean_loss(signal_noise, -1) < clean_loss(signal_noise, 0) - 0.5

# %% tags=["nbval-ignore-output"]
losses = signal_noise.final_losses()
flags_last = signal_noise.flags[-1][signal_noise.kind == BP.NOISY]
print(f"noise in the signal: final loss noisy {losses['noisy']:.2f} vs clean {losses['clean']:.2f}; "
      f"noisy pairs flagged noisy {int((flags_last == BP.NOISY).sum())}, flagged faulty {int((flags_last == BP.FAULTY).sum())}")
assert losses["noisy"] > losses["clean"] and not (flags_last == BP.NOISY).any()

# %% [markdown] slideshow={"slide_type": "subslide"}
# **The unnormalised pdf.** The σ of the history scores was below 0.399 at the start of the DBPM phase, so the
# pdf's peak exceeded 1. Any flagged pair whose current loss sat near $\mu$ would have been *up-weighted*. It did
# not happen here only because of the second oddity, the scale mismatch: raw losses are far above $\mu$. With the
# `normalised` form the weight can never exceed 1.

# %% tags=["nbval-ignore-output"]
sig = runs["dbpm"].stats["sigma"][WARMUP]
print(f"sigma at epoch {WARMUP}: {sig:.3f} -> pdf peak 1/(sigma sqrt(2 pi)) = {1 / (sig * math.sqrt(2 * math.pi)):.2f}")
assert float(BP.weight_function(runs["dbpm"].stats["mu"][WARMUP], runs["dbpm"].stats["mu"][WARMUP], sig)) > 1

# %% [markdown] slideshow={"slide_type": "subslide"}
# **Two presets in one repository.** `run.sh` passes $c_{fp} = 3$; the argparse default is 2. Re-flagging the
# SimCLR run's last epoch with both shows how much the choice matters: more faulty pairs are caught at 2, and
# the precision stays near 1 here because the faulty tail is far away.

# %% tags=["nbval-ignore-output"]
m_last = BP.history_scores(torch.as_tensor(runs["simclr"].memory[:-1]), EPOCHS)
truth = torch.as_tensor(runs["simclr"].kind) == BP.FAULTY
pr = {}
for preset, cuts in BP.PRESETS.items():
    f = BP.flag_bad_pairs(m_last, **cuts)
    pr[preset] = BP.precision_recall(f.faulty, truth)
    print(f"{preset:9s} {cuts}: {int(f.faulty.sum())} faulty flags, precision/recall "
          f"{'/'.join(f'{v:.2f}' for v in pr[preset])}")
assert pr["argparse"][1] > pr["run.sh"][1] and min(pr["argparse"][0], pr["run.sh"][0]) >= 0.9

# %% [markdown] slideshow={"slide_type": "subslide"}
# **More traps.**
# - *The memory grows* with pairs × epochs (here 40 × 2000 floats, nothing). At scale, keep a running sum
#   $\sum_t \ell_i^{(t)}(t+1)/E$ per pair and divide by $e$: the same $m_i$ in O(N) memory.

# %%
mem = torch.as_tensor(runs["simclr"].memory[:25], dtype=torch.float64)
running = sum(mem[t] * (t + 1) / EPOCHS for t in range(25)) / 25
assert torch.allclose(running, BP.history_scores(mem, EPOCHS), atol=1e-12)

# %% [markdown] slideshow={"slide_type": "subslide"}
# - *The loop must carry item indices.* A loss history is per *item*, so every batch needs its items' indices
#   (`memory[e, idx] = ell`). A sampler that returns only tensors cannot do DBPM.
# - *No gradient through the weight.* The official code computes $g$ in numpy; lossviz detaches it. If $g$ carried a
#   gradient, the optimiser could lower the loss by moving $\ell$ away from $\mu$ instead of learning.
# - *Flags before the warm-up* are noisy: the losses of the first epochs say more about the initialisation than
#   about the pairs (see the low recall in the first epochs above).
#
# ## 8. Exercises
# 1. **The normalised weight.** In the training panel, switch the weight to `normalised`. Does anything change?
#    *Hint:* compare `run.weights` of flagged pairs; with the scale mismatch both forms are nearly 0.
# 2. **More faulty pairs.** Raise the faulty rate to 30 %. Do precision and recall of the faulty flags hold up?
#    *Hint:* a 30 % tail is no longer an "abnormal" 3σ outlier; watch $\mu$ and $\sigma$ in `run.stats`.
# 3. **Where the robust rule breaks.** Train a SimCLR run with 30 % faulty pairs in the training panel, then
#    re-flag it with `BP.flag_panel(train_panel.state["result"], rule="mad")`. Do the robust flags still hold?
#    Which rate of faulty pairs would break the median itself? *Hint:* the median moves little while fewer than
#    half of the scores are outliers, but a wide faulty tail also widens the MAD.
# 4. **Fix the scale mismatch.** Evaluate the weight at the pair's own history score $m_i$ instead of its raw
#    loss. Which flagged pairs now keep a non-negligible weight? *Hint:* `BP.weight_function(m, f.mu, f.sigma)`.
#
# ## 9. Summary
# - DBPM keeps every positive pair's loss history, scores it with epoch weights $(t+1)/E$, and flags pairs below
#   $\mu - c_{np}\sigma$ (noisy: abnormally easy) or above $\mu + c_{fp}\sigma$ (faulty: abnormally hard). A flagged
#   pair's loss is multiplied by a Gaussian pdf of its current loss, which scales its whole rows of NT-Xent's pair weights.
# - On MNIST-1D with injected bad pairs, the faulty pairs are found with high precision, but many slip under
#   the $3\sigma$ cut although they score above every clean pair: the faulty tail inflates σ. The noisy pairs are
#   easy but only found when no faulty tail inflates σ. A median/MAD threshold finds both kinds (8 seeds).
# - As coded, the pdf weight is unnormalised and applied on a different scale than its μ and σ. Together these
#   make DBPM drop flagged pairs rather than shrink them.
# - The downstream gain cannot be measured at this scale: the SimCLR miniature lowers the 5-NN accuracy below the
#   untrained network's, and we do not claim it.
#
# **References.** Lan, Yan, Hong, Feng, *Towards Enhancing Time Series Contrastive Learning: A Dynamic Bad Pair
# Mining Approach*, ICLR 2024. Chen, Kornblith, Norouzi, Hinton, *A Simple Framework for Contrastive Learning of
# Visual Representations* (SimCLR), ICML 2020. Wang & Liu, *Understanding the Behaviour of Contrastive Loss*,
# CVPR 2021 (notebook 09). Greydanus, *Scaling down Deep Learning* (MNIST-1D), 2020. Arpit et al., *A Closer Look
# at Memorization in Deep Networks*, ICML 2017 (hard examples have high losses for longer).
