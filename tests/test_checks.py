"""Bad input gives a ValueError that says what is wrong; ``validation(False)`` skips the value
checks (NaN/Inf, a batch without positive pairs) but never the structural ones."""

from __future__ import annotations

import math

import numpy as np

import pytest
import torch

import lossviz as lv

LOSSES = list(lv.PAIR_LOSSES.items())
LOSS_IDS = [name for name, _ in LOSSES]


def good_batch():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 3, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    return x, lv.similarity(x), y


@pytest.fixture(autouse=True)
def validation_on():
    """Every test starts (and ends) with the value checks on, whatever a failing test did."""
    with lv.validation(True):
        yield


# ------------------------------------------------------------------------------------------------
# Structure: shapes and dtypes
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,loss", LOSSES, ids=LOSS_IDS)
def test_non_square_S(name, loss):
    _, S, y = good_batch()
    with pytest.raises(ValueError, match="square"):
        loss(S[:, :5], y)


@pytest.mark.parametrize("name,loss", LOSSES, ids=LOSS_IDS)
def test_one_dimensional_S(name, loss):
    _, S, y = good_batch()
    with pytest.raises(ValueError, match="2 dimensions"):
        loss(S[0], y)


@pytest.mark.parametrize("name,loss", LOSSES, ids=LOSS_IDS)
def test_integer_S(name, loss):
    _, S, y = good_batch()
    with pytest.raises(ValueError, match="floating-point"):
        loss(S.round().long(), y)


def test_single_sample_batch():
    with pytest.raises(ValueError, match="at least 2"):
        lv.ms_loss(torch.ones(1, 1), torch.tensor([0]))


@pytest.mark.parametrize("name,loss", LOSSES, ids=LOSS_IDS)
@pytest.mark.parametrize("bad", ["float", "bool", "short", "long", "2d"])
def test_bad_labels(name, loss, bad):
    _, S, y = good_batch()
    labels, match = {
        "float": (y.double(), "integer class ids"),
        "bool": (y == 0, "integer class ids"),
        "short": (y[:5], r"shape \(6,\)"),
        "long": (torch.cat([y, y[:1]]), r"shape \(6,\)"),
        "2d": (y[:, None], r"shape \(6,\)"),
    }[bad]
    with pytest.raises(ValueError, match=match):
        loss(S, labels)


def test_labels_as_a_list_are_accepted():
    _, S, y = good_batch()
    assert lv.ms_loss(S, y.tolist()) == lv.ms_loss(S, y)


# ------------------------------------------------------------------------------------------------
# Values: NaN / Inf, no positive pair
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,loss", LOSSES, ids=LOSS_IDS)
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_S(name, loss, bad):
    _, S, y = good_batch()
    S = S.clone()
    S[1, 2] = bad
    with pytest.raises(ValueError, match="NaN or Inf"):
        loss(S, y)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_embeddings(bad):
    x, _, y = good_batch()
    x = x.clone()
    x[3, 1] = bad
    with pytest.raises(ValueError, match="NaN or Inf"):
        lv.similarity(x)
    with pytest.raises(ValueError, match="NaN or Inf"):
        lv.recall_at_k(x, y, 1)
    with pytest.raises(ValueError, match="NaN or Inf"):
        lv.map_at_r(x, y)


def test_all_zero_embedding_row():
    x, _, _ = good_batch()
    x = x.clone()
    x[2] = 0
    with pytest.raises(ValueError, match="all zeros"):
        lv.similarity(x)


@pytest.mark.parametrize("name,loss", LOSSES, ids=LOSS_IDS)
def test_no_positive_pair(name, loss):
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with pytest.raises(ValueError, match="no positive pair"):
        loss(lv.similarity(x), torch.arange(5))


# ------------------------------------------------------------------------------------------------
# Knobs
# ------------------------------------------------------------------------------------------------

BAD_KNOBS = [
    (lv.ms_loss, dict(alpha=0.0), "alpha must be > 0"),
    (lv.ms_loss, dict(alpha=-1.0), "alpha must be > 0"),
    (lv.ms_loss, dict(beta=0.0), "beta must be > 0"),
    (lv.ms_loss, dict(beta=-50.0), "beta must be > 0"),
    (lv.ms_loss, dict(eps=-0.1), "eps must be >= 0"),
    (lv.ms_loss, dict(alpha=math.nan), "alpha must be finite"),
    (lv.ms_loss, dict(beta=math.inf), "beta must be finite"),
    (lv.ms_loss, dict(lam=math.nan), "lam must be finite"),
    (lv.ms_loss, dict(eps=math.nan), "eps must be finite"),
    (lv.ms_loss, dict(alpha="2"), "alpha must be a number"),
    (lv.ms_loss, dict(alpha=True), "alpha must be a number"),
    (lv.ms_loss, dict(beta=torch.tensor([1.0, 2.0])), "single number"),
    (lv.binomial_deviance_loss, dict(alpha=0.0), "alpha must be > 0"),
    (lv.binomial_deviance_loss, dict(beta=-1.0), "beta must be > 0"),
    (lv.binomial_deviance_loss, dict(lam=math.nan), "lam must be finite"),
    (lv.contrastive_loss, dict(lam=math.nan), "lam must be finite"),
    (lv.lifted_structure_loss, dict(lam=math.inf), "lam must be finite"),
    (lv.triplet_loss, dict(margin=-0.1), "margin must be >= 0"),
    (lv.triplet_loss, dict(margin=math.nan), "margin must be finite"),
    (lv.triplet_loss, dict(mining="hard"), "mining must be 'all' or 'semihard'"),
    (lv.triplet_loss, dict(mining=None), "mining must be 'all' or 'semihard'"),
    (lv.ms_mining, dict(eps=-0.5), "eps must be >= 0"),
]


@pytest.mark.parametrize("fn,knobs,match", BAD_KNOBS,
                         ids=[f"{fn.__name__}-{k}" for fn, knobs, _ in BAD_KNOBS for k in knobs])
def test_bad_knobs(fn, knobs, match):
    _, S, y = good_batch()
    with pytest.raises(ValueError, match=match):
        fn(S, y, **knobs)


def test_tensor_knobs_are_accepted():
    _, S, y = good_batch()
    assert lv.ms_loss(S, y, beta=torch.tensor(50.0)) == lv.ms_loss(S, y, beta=50.0)


def test_pair_weights_needs_a_scalar_loss():
    _, S, y = good_batch()
    with pytest.raises(ValueError, match="scalar"):
        lv.pair_weights(lambda S, labels: S.sum(dim=1), S, y)


# ------------------------------------------------------------------------------------------------
# validation(False): value checks off, structural checks on
# ------------------------------------------------------------------------------------------------

def test_validation_off_skips_the_no_positive_check():
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    S, y = lv.similarity(x), torch.arange(5)
    with lv.validation(False):
        assert not lv.validation_enabled()
        leaf = S.clone().requires_grad_(True)
        ms = lv.ms_loss(leaf, y)
        ms.backward()
        assert ms.item() == 0.0 and (leaf.grad == 0).all()  # nothing to pull, so nothing mined
        contrastive = lv.contrastive_loss(S, y)
        assert torch.isfinite(contrastive)
        # only the negative half: sum over pairs of [S_ij - 0.5]_+, over B anchors
        expected = torch.relu(S - 0.5).masked_fill(torch.eye(5, dtype=torch.bool), 0).sum() / 5
        torch.testing.assert_close(contrastive, expected)
    assert lv.validation_enabled()
    with pytest.raises(ValueError, match="no positive pair"):
        lv.ms_loss(S, y)


def test_validation_off_skips_the_nan_check():
    _, S, y = good_batch()
    S = S.clone()
    S[0, 1] = math.nan
    with lv.validation(False):
        lv.contrastive_loss(S, y)  # no error: the caller asked for speed


@pytest.mark.parametrize("name,loss", LOSSES, ids=LOSS_IDS)
def test_validation_off_keeps_structural_checks(name, loss):
    _, S, y = good_batch()
    with lv.validation(False):
        with pytest.raises(ValueError, match="square"):
            loss(S[:, :5], y)
        with pytest.raises(ValueError, match="integer class ids"):
            loss(S, y.float())
        with pytest.raises(ValueError, match=r"shape \(6,\)"):
            loss(S, y[:4])
        with pytest.raises(ValueError, match="2 dimensions"):
            loss(S[0], y)
    with lv.validation(False), pytest.raises(ValueError, match="must be"):
        lv.ms_loss(S, y, beta=-1.0)


def test_set_validation_and_the_context_manager_restore_state():
    try:
        lv.set_validation(False)
        assert not lv.validation_enabled()
        with lv.validation(True):
            assert lv.validation_enabled()
        assert not lv.validation_enabled()
    finally:
        lv.set_validation(True)
    with pytest.raises(RuntimeError), lv.validation(False):
        raise RuntimeError("boom")
    assert lv.validation_enabled()


# ------------------------------------------------------------------------------------------------
# Metrics
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("k", [0, -1, 6, 7, 1.5, True, "1"])
def test_recall_at_k_out_of_range(k):
    x, _, y = good_batch()
    with pytest.raises(ValueError, match=r"k must be an integer in \[1, 5\]"):
        lv.recall_at_k(x, y, k)


def test_metrics_bad_labels():
    x, _, y = good_batch()
    with pytest.raises(ValueError, match="integer class ids"):
        lv.recall_at_k(x, y.float(), 1)
    with pytest.raises(ValueError, match=r"shape \(6,\)"):
        lv.recall_at_k(x, y[:3], 1)
    with pytest.raises(ValueError, match=r"shape \(6,\)"):
        lv.map_at_r(x, y[:3])


def test_map_at_r_without_any_same_class_pair():
    x, _, _ = good_batch()
    with pytest.raises(ValueError, match="at least one class with two or more samples"):
        lv.map_at_r(x, torch.arange(6))


def test_integer_accepts_ints_and_rejects_bools_floats_and_small_values():
    from lossviz import checks

    assert checks.integer(3, "k", 1) == 3 and checks.integer(np.int64(2), "k", 1) == 2
    for bad in (True, 2.0, 0, "3"):
        with pytest.raises(ValueError, match="k must be an integer >= 1"):
            checks.integer(bad, "k", 1)


def test_the_shared_validators_name_the_argument_and_the_range():
    from lossviz import checks

    assert checks.integer(3, "k", 1, 5) == 3 and checks.integer(np.int64(2), "k", 1) == 2
    for bad in (0, 6, 2.0, True, "3"):
        with pytest.raises(ValueError, match=r"k must be an integer in \[1, 5\]"):
            checks.integer(bad, "k", 1, 5)
    assert checks.fraction(0.0, "share") == 0.0 and checks.fraction(0.5, "share", high=0.5) == 0.5
    for bad, kw in ((0.0, dict(zero_ok=False)), (0.6, dict(high=0.5)), (-0.1, {}), (math.nan, {})):
        with pytest.raises(ValueError, match="share must"):
            checks.fraction(bad, "share", **kw)
    assert checks.choice("a", "mode", ("a", "b")) == "a"
    for bad in ("c", ["a"], None):
        with pytest.raises(ValueError, match=r"unknown mode .*choose one of \['a', 'b'\]"):
            checks.choice(bad, "mode", ("a", "b"))
    assert checks.temperature(0.1) == 0.1
    with pytest.raises(ValueError, match="a temperature of 0 divides S by zero"):
        checks.temperature(0)
    with pytest.raises(ValueError, match="must be > 0"):
        checks.temperature(-0.1)


LEARNABLE = [  # (loss, knob, value, other knobs): each knob a tensor that requires grad
    (lv.nt_xent_loss, "tau", 0.2, {}), (lv.supcon_loss, "tau", 0.3, {}),
    (lv.hard_nt_xent_loss, "tau", 0.2, dict(frac=0.5)), (lv.simple_contrastive_loss, "lam", 0.05, {}),
    (lv.ms_loss, "alpha", 2.0, {}), (lv.ms_loss, "beta", 40.0, {}), (lv.ms_loss, "lam", 0.5, {}),
    (lv.ms_loss, "beta", 40.0, dict(mining=False)), (lv.binomial_deviance_loss, "alpha", 2.0, {}),
    (lv.binomial_deviance_loss, "beta", 40.0, {}), (lv.contrastive_loss, "lam", 0.3, {}),
    (lv.lifted_structure_loss, "lam", 1.0, {}),
]


@pytest.mark.parametrize("fn, knob, value, knobs", LEARNABLE, ids=[f"{f.__name__}-{k}" for f, k, _, _ in LEARNABLE])
def test_a_learnable_knob_gets_its_gradient(fn, knob, value, knobs):
    """A CLIP-style learned temperature (or scale, or margin): the loss keeps the tensor in the graph.
    Its gradient equals the central finite difference of the loss in that knob (float64)."""
    g = torch.Generator().manual_seed(3)
    y = torch.arange(4).repeat_interleave(4)
    S = lv.similarity(torch.randn(4, 5, generator=g, dtype=torch.float64)[y]
                      + torch.randn(16, 5, generator=g, dtype=torch.float64))
    k = torch.tensor(value, dtype=torch.float64, requires_grad=True)
    loss = fn(S, y, **{knob: k}, **knobs)
    loss.backward()
    assert k.grad is not None and float(loss.detach()) == pytest.approx(float(fn(S, y, **{knob: value}, **knobs)), rel=1e-12)
    h = 1e-6 * max(1.0, abs(value))
    numeric = (float(fn(S, y, **{knob: value + h}, **knobs)) - float(fn(S, y, **{knob: value - h}, **knobs))) / (2 * h)
    assert float(k.grad) == pytest.approx(numeric, rel=1e-5, abs=1e-9)
    assert float(k.grad) != 0


@pytest.mark.parametrize("fn, knob, value", [(lv.arcface_loss, "s", 30.0), (lv.arcface_loss, "m", 0.4),
                                             (lv.cosface_loss, "m", 0.3), (lv.normface_loss, "s", 16.0)])
def test_a_learnable_scale_or_margin_of_the_margin_losses_gets_its_gradient(fn, knob, value):
    g = torch.Generator().manual_seed(4)
    cos, y = torch.rand(12, 5, generator=g, dtype=torch.float64) * 2 - 1, torch.arange(12) % 5
    k = torch.tensor(value, dtype=torch.float64, requires_grad=True)
    fn(cos, y, **{knob: k}).backward()
    h = 1e-6 * max(1.0, value)
    numeric = (float(fn(cos, y, **{knob: value + h})) - float(fn(cos, y, **{knob: value - h}))) / (2 * h)
    assert float(k.grad) == pytest.approx(numeric, rel=1e-5) and float(k.grad) != 0


def test_learnable_knobs_are_still_checked_and_numpy_scalars_are_numbers():
    S, y = torch.eye(4, dtype=torch.float64), torch.tensor([0, 0, 1, 1])
    with pytest.raises(ValueError, match="tau .* must be > 0"):
        lv.nt_xent_loss(S, y, tau=torch.tensor(-0.1, requires_grad=True))
    with pytest.raises(ValueError, match="must be a single number"):
        lv.nt_xent_loss(S, y, tau=torch.ones(2, requires_grad=True))
    assert float(lv.nt_xent_loss(S, y, tau=np.float32(0.5))) == pytest.approx(float(lv.nt_xent_loss(S, y, tau=0.5)))
    assert float(lv.ms_loss(S, y, beta=np.int64(40))) == pytest.approx(float(lv.ms_loss(S, y, beta=40.0)))
    with pytest.raises(ValueError, match="within float32's range"):
        lv.ms_loss(S, y, beta=1e39)
