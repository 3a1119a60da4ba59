"""Draw the README figure: one P x K digits batch, the pair weights of five losses.

Run with `make figure`; writes docs/pair_weights.png."""

import pathlib

import torch

import lossviz as lv
from lossviz import data, plots

plots.use_style()
digits = data.load("digits")
idx = data.PKSampler(digits.y_train.numpy(), p=4, k=4, seed=0).sample()
torch.manual_seed(0)
with torch.no_grad():
    S = lv.similarity(lv.models.mlp(64, 16)(digits.x_train[idx]).double())
y = digits.y_train[idx]
losses = {
    "contrastive": (lv.contrastive_loss, dict(lam=0.5)),
    "triplet": (lv.triplet_loss, dict(margin=0.1)),
    "lifted structure": (lv.lifted_structure_loss, dict(lam=1.0)),
    "binomial deviance": (lv.binomial_deviance_loss, dict(alpha=2.0, beta=40.0, lam=0.5)),
    "multi-similarity": (lv.ms_loss, lv.MS_PRESETS["official_code"]),
}
fig, axes = plots.new_figure(5, width=3.2, height=3.5)
for ax, (name, (fn, knobs)) in zip(axes[0], losses.items()):
    plots.weight_heatmap(ax, lv.pair_weights(fn, S, y, signed=True, **knobs), y, title=name, colorbar=False)
fig.suptitle("Pair weights dL/dS on one batch of 4 digit classes x 4 images: blue pulls a positive pair "
             "together, vermillion pushes a negative pair apart")
fig.savefig(pathlib.Path(__file__).with_name("pair_weights.png"), dpi=90)
