"""Betti matching in dimension 0 (lossviz.papers.betti_matching): hand-checked fixtures, the official
code's reference values, barcodes against gudhi, gradients, identities, panels and bad input."""

import numpy as np
import pytest
import torch

from lossviz.papers import betti_matching as B
from _util import drawn_artists, same_artists

pytestmark = pytest.mark.usefixtures("one_thread")


def loss_of(P, G, **kw):
    P, G = torch.as_tensor(P, dtype=torch.float64), torch.as_tensor(G, dtype=torch.float64)
    return float(B.betti_matching_loss(P, G, **kw))


# ---- hand-checked fixtures (superlevel, relative=False, as the official code) ----------------------

def test_fixture_one_unmatched_bar():
    # P: two peaks on the top row, 0.9 and 0.7, joined through the 0.2 pixel; the bottom row at 0.
    # Bars of P: (0.9, inf -> 0) and (0.7, 0.2); the zeros are born and die at 0 (zero length: dropped).
    # G = C = max(P, G): the whole top row at 1, one component: only its infinite bar (1, inf -> 0).
    # Image persistence P -> C: the 0.7 peak is already part of C's top row when it appears, so its image
    # bar dies at an edge of value 1 where C has no bar: unmatched.  The infinite bars match.
    # L = 2 ((0.9 - 1)^2 + (0 - 0)^2) + (0.7 - 0.2)^2 = 0.02 + 0.25 = 0.27
    P = np.array([[0.9, 0.2, 0.7], [0.0, 0.0, 0.0]])
    G = np.array([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    m = B.betti_matching(P, G)
    assert len(m.pairs) == 1 and m.unmatched_g == [] and len(m.unmatched_p) == 1
    lone = m.unmatched_p[0]
    assert (m.bars_p.birth_value[lone], m.bars_p.death_value[lone]) == (0.7, 0.2)
    assert loss_of(P, G) == pytest.approx(0.27, abs=1e-12)
    # gradient: d/dP(0) = 2 * 2 (0.9 - 1) = -0.4; the unmatched bar pushes its birth pixel down
    # (2 * 0.5 = 1) and its death pixel up (-1): three pixels, the critical ones
    loss, grad, _ = B.loss_and_gradient(P, G)
    assert np.allclose(grad, [[-0.4, -1.0, 1.0], [0, 0, 0]], atol=1e-12)


def test_fixture_infinite_bars_always_match():
    # One blob in each image, at different places: each image has only its infinite bar, and the
    # infinite bars of P, C and G always correspond.  L = 2 (0.8 - 1)^2 = 0.08; the gradient sits on
    # P's peak only (2 * 2 * (0.8 - 1) = -0.8).
    P = np.array([[0, 0, 0, 0.8], [0, 0, 0, 0]])
    G = np.array([[1.0, 0, 0, 0], [0, 0, 0, 0]])
    assert loss_of(P, G) == pytest.approx(0.08, abs=1e-12)
    _, grad, m = B.loss_and_gradient(P, G)
    assert np.allclose(grad, [[0, 0, 0, -0.8], [0] * 4], atol=1e-12) and m.pairs == [(0, 0)]


def test_fixture_matching_goes_by_place_through_the_comparison_image():
    # A 1-D profile on two identical rows. P: peaks 0.9 (left), 0.6 (middle), 0.3 (right), valleys 0.1, 0.2.
    # G: components at the left and right ends.  C = max(P, G) = [1, .1, .6, .2, 1].
    # Bars  P: (0.9, inf), (0.3, 0.2) [right merges into middle], (0.6, 0.1) [middle+right into left]
    #       C: (1 right, inf), (0.6, 0.2) [middle into right], (1 left, 0.1)
    #       G: (1 right, inf), (1 left, 0)
    # P -> C (C's edges, P's ages): at the 0.2 valley the right peak (P-younger than the middle) dies:
    #   P's (0.3, 0.2) <-> C's (0.6, 0.2); at 0.1 the middle dies: P's (0.6, 0.1) <-> C's (1, 0.1).
    # G -> C: G's left component dies at C's 0.1 edge: G's (1, 0) <-> C's (1, 0.1); C's middle bar has no
    # G partner, so P's (0.3, 0.2) is unmatched.
    # L = 2 (0.9 - 1)^2 + 2 ((0.6 - 1)^2 + (0.1 - 0)^2) + (0.3 - 0.2)^2 = 0.02 + 0.34 + 0.01 = 0.37
    P = np.tile([0.9, 0.1, 0.6, 0.2, 0.3], (2, 1))
    G = np.tile([1.0, 0, 0, 0, 1], (2, 1))
    m = B.betti_matching(P, G)
    pairs = sorted((m.bars_p.birth_value[i], m.bars_g.death_value[j]) for i, j in m.pairs)
    assert pairs == [(0.6, 0.0), (0.9, 0.0)] and len(m.unmatched_p) == 1 and m.unmatched_g == []
    assert loss_of(P, G) == pytest.approx(0.37, abs=1e-12)
    # relative=True pads with the maximum: every component touching the border joins the frame at once
    assert loss_of(P, G, relative=True) == pytest.approx(2 * 0.1 ** 2, abs=1e-12)


def test_official_reference_values():
    """60 random pairs (ties, binary and continuous truth, relative, sublevel) against the numbers the
    official code computed (generated once; see ``B.OFFICIAL_LOSSES``)."""
    ours = [loss_of(P, G, relative=r, kind=k) for P, G, r, k in B.fixture_pairs()]
    assert len(ours) == len(B.OFFICIAL_LOSSES) == 60
    assert np.allclose(ours, B.OFFICIAL_LOSSES, rtol=0, atol=1e-9)


# ---- barcodes --------------------------------------------------------------------------------------

def brute_force_betti0(P, t):
    """Number of 4-connected components of {P >= t}."""
    return B.n_components(P >= t)


@pytest.mark.parametrize("seed", range(5))
def test_barcode_counts_components_at_every_level(seed):
    P = np.random.default_rng(seed).random((7, 6))
    bars = B.barcode0(P)
    for t in np.unique(P):                          # superlevel: bar alive at t iff death < t <= birth
        alive = int(((bars.birth_value >= t) & ((bars.death_edge < 0) | (bars.death_value < t))).sum())
        assert alive == brute_force_betti0(P, t)


def test_barcodes_equal_gudhi():
    gudhi = pytest.importorskip("gudhi")
    rng = np.random.default_rng(1)
    for _ in range(50):
        P = rng.random(tuple(rng.integers(3, 12, 2)))
        cc = gudhi.CubicalComplex(vertices=-P)           # sublevel of -P = superlevel of P
        cc.compute_persistence()
        ref = sorted((-b, -d if np.isfinite(d) else 0.0) for b, d in cc.persistence_intervals_in_dimension(0))
        bars = B.barcode0(P)
        ours = sorted(zip(bars.birth_value, bars.death_value))
        assert np.allclose(ref, ours, atol=1e-12)


def test_binary_loss_counts_unmatched_components():
    """Property of the loss: on binary maps every matched pair costs 0 and every unmatched bar 1."""
    rng = np.random.default_rng(2)
    for _ in range(20):
        P = (rng.random((8, 8)) > 0.55).astype(float)
        G = (rng.random((8, 8)) > 0.55).astype(float)
        m = B.betti_matching(P, G)
        value = loss_of(P, G)
        assert value == round(value) == len(m.unmatched_p) + len(m.unmatched_g) == B.bm_error(P, G)
    assert B.bm_error(G, G) == 0


# ---- gradients -------------------------------------------------------------------------------------

@pytest.mark.parametrize("relative", [False, True])
def test_gradient_support_and_finite_differences(relative):
    rng = np.random.default_rng(3)
    P = torch.tensor(rng.random((6, 7)) * 0.8 + 0.1, dtype=torch.float64)
    G = torch.tensor((rng.random((6, 7)) > 0.6).astype(float))
    loss, grad, m = B.loss_and_gradient(P, G, relative=relative)
    assert np.all(grad[~m.critical_pixels()] == 0) or relative     # padding passes through P's max
    if not relative:
        assert (np.abs(grad) > 0).sum() <= m.critical_pixels().sum()
    # piecewise smooth: away from ties the matching is locally constant, so autograd = finite differences
    fd = np.zeros_like(grad)
    for k in range(P.numel()):
        d = torch.zeros(P.numel(), dtype=torch.float64)
        d[k] = 1e-7
        d = d.reshape(P.shape)
        fd.flat[k] = (loss_of(P + d, G, relative=relative) - loss_of(P - d, G, relative=relative)) / 2e-7
    assert np.allclose(grad, fd, atol=1e-6)


def test_batch_mean_and_device_and_dtype():
    x = torch.rand(3, 5, 5, dtype=torch.float32, requires_grad=True)
    y = (torch.rand(3, 5, 5) > 0.5).float()
    total = B.betti_matching_loss(x, y)
    assert total.dtype == torch.float32
    parts = [B.betti_matching_loss(x[k], y[k]) for k in range(3)]
    assert torch.allclose(total, torch.stack(parts).mean())
    total.backward()
    assert x.grad is not None and bool(torch.isfinite(x.grad).all())


def test_bad_input():
    good = torch.rand(4, 4)
    with pytest.raises(ValueError, match="shape"):
        B.betti_matching_loss(good, torch.rand(4, 5))
    with pytest.raises(ValueError, match="NaN"):
        B.betti_matching_loss(torch.full((4, 4), float("nan")), good)
    with pytest.raises(ValueError, match="floating"):
        B.betti_matching_loss(torch.ones(4, 4, dtype=torch.long), good)
    with pytest.raises(ValueError, match="dimensions"):
        B.betti_matching_loss(torch.rand(4), torch.rand(4))
    with pytest.raises(ValueError, match="at least 2 x 2"):
        B.betti_matching_loss(torch.rand(1, 4), torch.rand(1, 4))
    with pytest.raises(ValueError, match="filtration"):
        B.betti_matching_loss(good, good, kind="up")
    with pytest.raises(ValueError, match="alpha"):
        B.train_seg(-1.0, steps=2)


# ---- data, training, panels ------------------------------------------------------------------------

def test_stroke_data():
    x, y = B.stroke_data(20, seed=0)
    assert x.shape == (20, 1, 16, 16) and y.shape == (20, 16, 16)
    assert set(np.unique(y.numpy())) == {0.0, 1.0}
    comps = [B.n_components(t) for t in y.numpy()]
    assert min(comps) >= 1 and max(comps) <= 2                      # 1-2 strokes, each 4-connected
    assert not y[:, :2].any() and not y[:, -2:].any()               # off the border
    assert torch.equal(B.stroke_data(3, seed=5)[0], B.stroke_data(3, seed=5)[0])


def test_matching_panel_without_a_browser():
    panel = B.matching_panel()
    drawn = drawn_artists(panel.fig)
    s = panel.state
    assert s["support"] <= int(s["critical"].sum()) and s["n_unmatched"] >= 1
    assert np.all(s["grad"][~s["critical"]] == 0)
    panel.controls["blob"].value = 0.0                               # no spurious blob: one bar fewer
    assert panel.state["n_unmatched"] < s["n_unmatched"] or panel.state["loss"] < s["loss"]
    panel.controls["gap"].value = 0.9
    panel.controls["noise"].value = 0.0
    assert same_artists(drawn, drawn_artists(panel.fig)), "the knobs move the artists, never rebuild them"


def test_training_run_and_panel():
    run = B.train_seg(0.5, seed=0, steps=12, warmup=6, n_test=6)
    assert np.isfinite(run.history["loss"]).all() and len(run.history["bm"]) == 6
    assert set(run.scores) == {"dice", "betti0", "bm0"} and run.examples["prob"].shape == (6, 16, 16)
    assert B.train_seg(0.5, seed=0, steps=12, warmup=6, n_test=6) is run      # cached
    panel = B.training_panel(autorun=False, steps=50, n_test=6)
    assert "press <b>Train</b>" in panel.status.value
    panel.controls["warmup"].value = 25
    result = panel.train()
    assert set(result) == {"dice", "bm"} and result["dice"].params["alpha"] == 0.0
    assert "Betti-0 error" in panel.status.value
    assert len(set(B.pick_examples(result, 4))) == 4
    paired = B.paired_runs([0, 1], steps=6, warmup=3, n_test=4, progress=False)
    assert [r.params["seed"] for r in paired["bm"]] == [0, 1]


def test_sublevel_barcodes_equal_gudhi():
    gudhi = pytest.importorskip("gudhi")
    rng = np.random.default_rng(4)
    for _ in range(20):
        P = rng.random(tuple(rng.integers(3, 10, 2)))
        cc = gudhi.CubicalComplex(vertices=P)
        cc.compute_persistence()
        ref = sorted((b, d if np.isfinite(d) else 1.0) for b, d in cc.persistence_intervals_in_dimension(0))
        bars = B.barcode0(P, "sublevel")
        assert np.allclose(ref, sorted(zip(bars.birth_value, bars.death_value)), atol=1e-12)


@pytest.mark.parametrize("device", [
    "cpu", pytest.param("cuda", marks=[pytest.mark.cuda, pytest.mark.skipif(
        not torch.cuda.is_available(), reason="needs a CUDA device")])])
def test_loss_follows_the_input_device(device):
    x = torch.rand(2, 6, 6, device=device, requires_grad=True)
    y = (torch.rand(2, 6, 6, device=device) > 0.5).float()
    loss = B.betti_matching_loss(x, y, relative=True)
    loss.backward()
    assert loss.device.type == device and x.grad.device.type == device
    ref = B.betti_matching_loss(x.detach().cpu(), y.cpu(), relative=True)
    assert torch.allclose(loss.detach().cpu(), ref)
