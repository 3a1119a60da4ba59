"""Two-view augmentation: shapes, determinism, each transform against a direct computation, the
SimCLR sampler (its labels make nt_xent_loss SimCLR's loss), bad input.  No download: the data
come from scikit-learn's bundled digits and the locally generated MNIST-1D."""

from __future__ import annotations

import math

import pytest
import torch

import lossviz as lv
from lossviz import augment as A
from lossviz import data

OFF = {"digits": dict(shift=0, contrast=0, drop=0, noise=0), "mnist1d": dict(shift=0, scale=0, shear=0, noise=0)}


@pytest.fixture(scope="module")
def inputs():
    return {"digits": data.load("digits").x_train[:50], "mnist1d": data.load("mnist1d").x_train[:50]}


@pytest.mark.parametrize("kind", A.KINDS)
def test_shapes_determinism_and_independent_views(inputs, kind):
    x = inputs[kind]
    v1, v2 = A.two_views(x, kind, 0)
    assert v1.shape == v2.shape == x.shape and v1.dtype == x.dtype
    w1, w2 = A.two_views(x, kind, torch.Generator().manual_seed(0))
    assert torch.equal(v1, w1) and torch.equal(v2, w2)                  # same seed, same views
    assert not torch.equal(v1, v2)                                      # two different draws
    assert not torch.equal(A.two_views(x, kind, 1)[0], v1)
    assert torch.equal(A.augment(x, kind, 5, **OFF[kind]), x)            # every knob at 0: the identity
    # a view is recognisably its own item: its nearest input, far more often than chance (1/50)
    own = lambda v: float((torch.cdist(v, x).argmin(1) == torch.arange(len(x))).float().mean())  # noqa: E731
    assert own(v1) > 5 / len(x)
    assert own(A.augment(x, kind, 0, shift=0)) > 0.7                    # shifts are what hides it most


def test_digits_shift_is_a_zero_padded_crop(inputs):
    x = inputs["digits"]
    v = A.augment(x, "digits", 3, **(OFF["digits"] | dict(shift=1)))
    img, out = x.reshape(-1, 8, 8), v.reshape(-1, 8, 8)
    padded = torch.nn.functional.pad(img, (1, 1, 1, 1))
    crops = {(dy, dx): padded[:, 1 + dy:9 + dy, 1 + dx:9 + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1)}
    seen = set()
    for n in range(len(x)):
        match = [k for k, c in crops.items() if torch.equal(c[n], out[n])]
        assert match, f"image {n} is not a one-pixel shift of its input"
        seen.update(match)
    assert len(seen) >= 5                                                # the offsets vary


def test_digits_drop_contrast_noise(inputs):
    x = inputs["digits"].repeat(20, 1)
    dropped = A.augment(x, "digits", 0, **(OFF["digits"] | dict(drop=0.3)))
    lost = (x != 0) & (dropped == 0)
    assert bool(((dropped == x) | (dropped == 0)).all())
    assert abs(float(lost.sum()) / float((x != 0).sum()) - 0.3) < 0.02
    bright = A.augment(x, "digits", 0, **(OFF["digits"] | dict(contrast=0.2)))
    factor = (bright.sum(1) / x.sum(1))
    assert float(factor.min()) >= 0.8 - 1e-6 and float(factor.max()) <= 1.2 + 1e-6 and float(factor.std()) > 0.05
    noisy = A.augment(x, "digits", 0, **(OFF["digits"] | dict(noise=0.1)))
    assert abs(float((noisy - x).std()) - 0.1) < 0.005


def test_mnist1d_transforms(inputs):
    x = inputs["mnist1d"]
    rolled = A.augment(x, "mnist1d", 0, **(OFF["mnist1d"] | dict(shift=4)))
    for n in range(len(x)):
        ks = [k for k in range(-4, 5) if torch.equal(torch.roll(x[n], k), rolled[n])]
        assert ks, f"signal {n} is not a circular shift of at most 4 samples"
    scaled = A.augment(x, "mnist1d", 0, **(OFF["mnist1d"] | dict(scale=0.4)))
    ratio = scaled[:, 0] / x[:, 0]
    assert float(ratio.min()) >= 0.8 - 1e-5 and float(ratio.max()) <= 1.2 + 1e-5
    assert torch.allclose(scaled, x * ratio[:, None], atol=1e-5)
    sheared = A.augment(x, "mnist1d", 0, **(OFF["mnist1d"] | dict(shear=0.75)))
    trend = sheared - x                                                 # a straight line through 0 at the centre
    assert torch.allclose(trend, trend[:, :1] * torch.linspace(1, -1, 40), atol=1e-5)
    assert float(trend[:, 0].abs().max()) <= 0.75 / 4 + 1e-6


def test_sampler_gives_simclr_batches(inputs):
    x = inputs["digits"]
    sampler = A.TwoViewSampler(x, "digits", batch_size=16, seed=0)
    views, labels, idx = sampler.sample()
    assert views.shape == (32, 64) and torch.equal(labels, torch.arange(16).repeat(2))
    assert len(set(idx.tolist())) == 16
    # the labels make each view's only positive its other view: nt_xent_loss is SimCLR's NT-Xent
    pos, _ = lv.pair_masks(labels)
    assert torch.equal(pos.nonzero()[:, 1], torch.arange(32).roll(16))
    S = lv.similarity(views.double())
    logits = (S / 0.2).fill_diagonal_(-math.inf)
    simclr = torch.nn.functional.cross_entropy(logits, torch.arange(32).roll(16))
    torch.testing.assert_close(lv.nt_xent_loss(S, labels, tau=0.2), simclr)
    # without replacement within an epoch (50 items, batches of 16: 3 batches per epoch)
    seen = torch.cat([idx] + [sampler.sample()[2] for _ in range(2)])
    assert len(set(seen.tolist())) == 48
    again = A.TwoViewSampler(x, "digits", batch_size=16, seed=0).sample()
    assert torch.equal(again[0], views)


def test_bad_input_is_refused(inputs):
    x = inputs["digits"]
    with pytest.raises(ValueError, match="unknown kind"):
        A.augment(x, "cifar")
    with pytest.raises(ValueError, match="unknown digits augmentation knob"):
        A.augment(x, "digits", scale=0.1)
    with pytest.raises(ValueError, match="64 pixels"):
        A.augment(inputs["mnist1d"], "digits")
    with pytest.raises(ValueError, match="shift must be an integer"):
        A.augment(x, "digits", shift=0.5)
    with pytest.raises(ValueError, match="drop .* must be in"):
        A.augment(x, "digits", drop=1.0)
    with pytest.raises(ValueError, match="noise must be >= 0"):
        A.augment(x, "digits", noise=-0.1)
    with pytest.raises(ValueError, match="generator must be"):
        A.augment(x, "digits", "seed")
    with pytest.raises(ValueError, match="NaN"):
        A.augment(torch.full_like(x, math.nan), "digits")
    with pytest.raises(ValueError, match="batch_size must be an integer >= 2"):
        A.two_view_labels(1)
    with pytest.raises(ValueError, match="larger than"):
        A.TwoViewSampler(x, "digits", batch_size=64)
