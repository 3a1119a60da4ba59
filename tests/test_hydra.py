"""lossviz.papers.hydra: Hydra's loss against a loop written from the paper's formula (values and gradients,
float64), the official recipe's stability trick, the gate's subspace property, the measurements,
a short run, the two panels, and bad input (the effective rank: tests/test_metrics.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import lossviz as lv
from lossviz.papers import hydra as H
from lossviz.train import Run

from _util import value_and_grad

pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------------------------------
# References written from the formulas
# ------------------------------------------------------------------------------------------------

def loop_loss(S, y1, y2, yk, tau):
    """L = mean over anchors i with P_i nonempty of (1/|P_i|) sum_{j: yk_j = y2_i}
    [log(e^{l_ij} + sum_{k: yk_k not in {y1_i, y2_i}} e^{l_ik}) - l_ij]  (FastSSL: per-anchor mean, then anchors)."""
    anchors = []
    for i in range(S.shape[0]):
        terms = []
        for j in range(S.shape[1]):
            if int(yk[j]) != int(y2[i]):
                continue
            denom = torch.exp(S[i, j] / tau)
            for k in range(S.shape[1]):
                if int(yk[k]) not in (int(y1[i]), int(y2[i])):
                    denom = denom + torch.exp(S[i, k] / tau)
            terms.append(torch.log(denom) - S[i, j] / tau)
        if terms:
            anchors.append(sum(terms) / len(terms))
    return sum(anchors) / len(anchors)


def official_recipe(S, y1, y2, yk, tau, detach=True):
    """FastSSL's arithmetic: subtract the row mean (detached there, not in vitookit), exp, mask, log."""
    logits = S / tau
    mean = logits.mean(1, keepdim=True)
    logits = logits - (mean.detach() if detach else mean)
    score = logits.exp()
    pos = y2[:, None] == yk[None, :]
    exclude = pos | (y1[:, None] == yk[None, :])
    neg = (score * (~exclude)).sum(1, keepdim=True)
    return ((pos * (torch.log(score + neg) - logits)).sum(1) / pos.sum(1)).mean()   # simlap.py's reduction


def random_batch(seed, n=12, classes=4, keys=None, mode="arbitrary"):
    g = torch.Generator().manual_seed(seed)
    y1 = torch.randint(0, classes, (n,), generator=g)
    yk = y1 if keys is None else torch.randint(0, classes, (keys,), generator=g)
    y2 = H.partner_labels(y1, mode, num_classes=classes, generator=g)
    if keys is not None:                          # keep at least one positive per batch
        yk[0] = y2[0]
    S = torch.rand(n, len(yk), generator=g, dtype=torch.float64) * 2 - 1
    return S, y1, y2, (None if keys is None else yk), yk


# ------------------------------------------------------------------------------------------------
# The loss
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed,tau,mode,keys", [(0, 0.1, "arbitrary", None), (1, 0.5, "identical", None),
                                                (2, 0.05, "distinct", None), (3, 0.2, "arbitrary", 9),
                                                (4, 1.0, "distinct", 15)])
def test_loss_matches_loop_reference_values_and_gradients(seed, tau, mode, keys):
    S, y1, y2, key_labels, yk = random_batch(seed, keys=keys, mode=mode)
    value, grad = value_and_grad(H.hydra_loss, S, y1, partner=y2, tau=tau, key_labels=key_labels)
    ref, ref_grad = value_and_grad(lambda s, y: loop_loss(s, y, y2, yk, tau), S, y1)
    torch.testing.assert_close(value, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-10, atol=1e-12)


def test_every_anchor_counts_once_however_many_positives_it_has():
    """FastSSL's reduction: anchor weights do not grow with the size of the partner class.  An anchor
    whose partner class has 5 keys counts as much as one whose partner class has 1."""
    S, y1, y2, _, yk = random_batch(5, n=12)
    pos, _ = H.hydra_masks(y1, y2)
    assert pos.sum(1).min() < pos.sum(1).max()                   # the batch has unequal |P_i|
    W = lv.pair_weights(H.hydra_loss, S, y1, signed=True, partner=y2, tau=0.1)
    pull = -(W * pos).sum(1)                                      # = (1/(tau |A|)) mean_j (1 - q_j)
    value = H.hydra_loss(S, y1, partner=y2, tau=0.1)
    per_anchor = [H.hydra_loss(S[i:i + 1], y1[i:i + 1], partner=y2[i:i + 1], key_labels=y1, tau=0.1)
                  for i in range(len(y1))]
    torch.testing.assert_close(value, torch.stack(per_anchor).mean(), rtol=1e-12, atol=1e-12)
    assert (pull > 0).all()


@pytest.mark.parametrize("detach", [True, False])
def test_official_mean_subtraction_changes_nothing_value_or_gradient(detach):
    """The loss is invariant to a per-row shift, so FastSSL's detached and vitookit's attached mean
    subtraction give the same value and the same gradient as the plain log-sum-exp."""
    for seed in range(3):
        S, y1, y2, _, yk = random_batch(seed, n=10)
        value, grad = value_and_grad(H.hydra_loss, S, y1, partner=y2, tau=0.1)
        ref, ref_grad = value_and_grad(lambda s, y: official_recipe(s, y, y2, yk, 0.1, detach), S, y1)
        torch.testing.assert_close(value, ref, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(grad, ref_grad, rtol=1e-10, atol=1e-12)


def test_pair_weights_closed_form_and_excluded_keys_get_nothing():
    """Positive (i, j): (1 - q_j); allowed negative k: sum_{j in P_i} q_k, q the softmax over {j} and
    the allowed negatives; row i divided by tau * |A| * |P_i|.  Excluded keys: exactly 0."""
    tau = 0.2
    for seed in range(3):
        S, y1, y2, _, yk = random_batch(seed, n=10)
        W = lv.pair_weights(H.hydra_loss, S, y1, signed=True, partner=y2, tau=tau)
        pos, allowed = H.hydra_masks(y1, y2)
        expect = torch.zeros_like(S)
        for i in range(len(y1)):
            for j in torch.nonzero(pos[i]).flatten():
                cols = torch.cat([j[None], torch.nonzero(allowed[i]).flatten()])
                q = torch.softmax(S[i, cols] / tau, 0)
                expect[i, j] -= 1 - q[0]
                expect[i, cols[1:]] += q[1:]
        per_row = tau * len(y1) * pos.sum(1, keepdim=True)
        torch.testing.assert_close(W, expect / per_row, rtol=1e-10, atol=1e-14)
        assert (W[~pos & ~allowed] == 0).all() and (W[pos] <= 0).all() and (W[allowed] >= 0).all()


def test_identical_pairs_with_one_image_per_class_is_one_way_infonce():
    """y2 = y1 and every label once: the positive of anchor i is key i (its other view), the other
    keys are negatives, so Hydra is MoCo/SimCLR's one-way InfoNCE, cross_entropy(S / tau, arange)."""
    g = torch.Generator().manual_seed(0)
    S = torch.rand(8, 8, generator=g, dtype=torch.float64) * 2 - 1
    y = torch.arange(8)
    ref = F.cross_entropy(S / 0.1, y)
    torch.testing.assert_close(H.hydra_loss(S, y, partner=H.partner_labels(y, "identical"), tau=0.1), ref)


def test_masks_never_push_the_partner_or_own_class():
    y1 = torch.tensor([0, 0, 1, 2])
    y2 = torch.tensor([1, 0, 2, 2])
    pos, allowed = H.hydra_masks(y1, y2)
    assert pos.tolist() == [[False, False, True, False], [True, True, False, False],
                            [False, False, False, True], [False, False, False, True]]
    assert allowed.tolist() == [[False, False, False, True], [False, False, True, True],
                                [True, True, False, False], [True, True, True, False]]


def test_float32_large_scale_is_finite_where_the_naive_exp_is_not():
    S, y1, y2, _, yk = random_batch(0, n=10)
    S = S.float()
    tau = 1 / 300                               # a learnable scale that has grown to 300
    assert not torch.isfinite(official_recipe(S, y1, y2, yk, tau))            # exp(300) overflows float32
    value = H.hydra_loss(S, y1, partner=y2, tau=tau)
    assert torch.isfinite(value)
    torch.testing.assert_close(value.double(), H.hydra_loss(S.double(), y1, partner=y2, tau=tau), rtol=1e-4, atol=1e-3)


# ------------------------------------------------------------------------------------------------
# Partners and the gate
# ------------------------------------------------------------------------------------------------

def test_partner_labels_modes():
    y = torch.tensor([0, 1, 2, 3, 4, 0, 1, 2, 3, 4] * 3)
    assert torch.equal(H.partner_labels(y, "identical"), y)
    arb = H.partner_labels(y, "arbitrary", generator=torch.Generator().manual_seed(0))
    assert sorted(arb.tolist()) == sorted(y.tolist()) and not torch.equal(arb, y)
    again = H.partner_labels(y, "arbitrary", generator=torch.Generator().manual_seed(0))
    assert torch.equal(arb, again)
    dis = H.partner_labels(y, "distinct", num_classes=5, generator=torch.Generator().manual_seed(1))
    assert (dis != y).all() and ((dis >= 0) & (dis < 5)).all()


def test_gated_similarity_open_gate_is_the_cosine_in_both_versions():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(5, 6, generator=g, dtype=torch.float64), torch.randn(7, 6, generator=g, dtype=torch.float64)
    cos = F.normalize(z1, dim=1) @ F.normalize(z2, dim=1).T
    for renorm in (False, True):
        torch.testing.assert_close(H.gated_similarity(z1, z2, torch.ones(6, dtype=torch.float64), renormalize=renorm), cos)


def test_gated_similarity_matches_loops():
    g = torch.Generator().manual_seed(1)
    z1, z2 = torch.randn(4, 5, generator=g, dtype=torch.float64), torch.randn(3, 5, generator=g, dtype=torch.float64)
    gate = torch.rand(4, 5, generator=g, dtype=torch.float64)
    u1, u2 = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    fast = H.gated_similarity(z1, z2, gate)
    vito = H.gated_similarity(z1, z2, gate, renormalize=True)
    for i in range(4):
        for j in range(3):
            assert math.isclose(float(fast[i, j]), sum(float(gate[i, k] ** 2 * u1[i, k] * u2[j, k]) for k in range(5)),
                                rel_tol=1e-12, abs_tol=1e-14)
            a, b = gate[i] * u1[i], gate[i] * u2[j]
            assert math.isclose(float(vito[i, j]), float(a @ b / (a.norm() * b.norm())), rel_tol=1e-12)


@pytest.mark.parametrize("renormalize", [False, True])
def test_gate_opens_a_subspace(renormalize):
    """A closed dimension (g_k = 0) drops out of the similarity.  vitookit's form sees only the open
    coordinates (no gradient reaches a closed one); FastSSL's normalises z before the gate, so a
    closed coordinate enters only through the norm: moving mass *within* the closed dimensions (a
    permutation, norm kept) changes nothing."""
    g = torch.Generator().manual_seed(2)
    z1, z2 = torch.randn(4, 8, generator=g, dtype=torch.float64), torch.randn(6, 8, generator=g, dtype=torch.float64)
    gate = torch.zeros(8, dtype=torch.float64)
    gate[:3] = torch.tensor([1.0, 0.7, 0.4], dtype=torch.float64)
    z2b = z2.clone()
    z2b[:, 3:] = z2[:, 3:].flip(1)
    S = H.gated_similarity(z1, z2, gate, renormalize=renormalize)
    assert not torch.allclose(S, H.gated_similarity(z1, z2b, torch.ones(8, dtype=torch.float64)))
    torch.testing.assert_close(S, H.gated_similarity(z1, z2b, gate, renormalize=renormalize))
    leaf1, leaf2 = z1.clone().requires_grad_(), z2.clone().requires_grad_()
    H.gated_similarity(leaf1, leaf2, gate, renormalize=renormalize).sum().backward()
    if renormalize:
        assert leaf1.grad[:, 3:].abs().max() < 1e-12 and leaf2.grad[:, 3:].abs().max() < 1e-12
        assert (leaf1.grad[:, :3] != 0).all()
        torch.testing.assert_close(S, H.gated_similarity(z1[:, :3], z2[:, :3], gate[:3], renormalize=True))
    else:
        u1, u2 = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
        torch.testing.assert_close(S, (u1[:, :3] * gate[:3] ** 2) @ u2[:, :3].T)
        assert (leaf2.grad[:, 3:] != 0).any()                         # through the norm of z only


def test_feature_gate_shapes_symmetry_and_kinds():
    torch.manual_seed(0)
    gate = H.FeatureGate(5, 6, embed_dim=8, mlp_dim=16)
    y1, y2 = torch.tensor([0, 1, 2, 3, 4, 0]), torch.tensor([1, 2, 3, 4, 0, 0])
    g = gate(y1, y2)
    assert g.shape == (6, 6) and ((g > 0) & (g < 1)).all()
    gate.eval()
    torch.testing.assert_close(gate(y1, y2), gate(y2, y1))           # fused: symmetric in the pair
    table = gate.table()
    assert table.shape == (5, 5, 6) and torch.allclose(table, table.transpose(0, 1))
    torch.testing.assert_close(table[y1, y2], gate(y1, y2))
    unfused = H.FeatureGate(5, 6, embed_dim=8, mlp_dim=16, fuse=False).eval()
    torch.testing.assert_close(unfused(y1, y2), unfused(y1) * unfused(y2))
    assert (H.FeatureGate(5, 6, kind="open")(y1, y2) == 1).all()
    gum = H.FeatureGate(5, 6, embed_dim=8, mlp_dim=16, kind="gumbel", gumbel_tau=0.5)
    a = gum(y1, y2, generator=torch.Generator().manual_seed(0))
    b = gum(y1, y2, generator=torch.Generator().manual_seed(1))
    assert not torch.equal(a, b)                                      # training: noisy
    gum.eval()
    torch.testing.assert_close(gum(y1, y2), torch.sigmoid(gum.logits(y1, y2) / 0.5))


def test_gumbel_gate_values_lean_open_and_sharpen_with_small_tau():
    zeros = torch.zeros(20000, dtype=torch.float64)
    g = H.gate_values(zeros, "gumbel", generator=torch.Generator().manual_seed(0))
    assert 0.57 < float(g.mean()) < 0.63                              # one Gumbel: mean about 0.6 at logit 0
    sharp = H.gate_values(zeros, "gumbel", gumbel_tau=0.3, generator=torch.Generator().manual_seed(0))
    soft = H.gate_values(zeros, "gumbel", gumbel_tau=2.0, generator=torch.Generator().manual_seed(0))
    assert ((sharp - 0.5).abs().mean() > (soft - 0.5).abs().mean())
    assert torch.equal(H.gate_values(zeros[:3], "open"), torch.ones(3, dtype=torch.float64))


# ------------------------------------------------------------------------------------------------
# The subspace mechanism, measured
# ------------------------------------------------------------------------------------------------

def test_class_pair_alignment_is_the_mean_over_all_pairs():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(30, 5, generator=g, dtype=torch.float64)
    y = torch.arange(3).repeat(10)
    gates = torch.rand(3, 3, 5, generator=g, dtype=torch.float64)
    for renorm in (False, True):
        M = H.class_pair_alignment(z, y, gates, renormalize=renorm)
        for a, b, c in ((0, 1, 2), (2, 0, 1), (1, 1, 0)):
            S = H.gated_similarity(z[y == a], z[y == c], gates[a, b], renormalize=renorm)
            assert float(M[a, b, c]) == pytest.approx(float(S.mean()), rel=1e-10)
    margin = H.subspace_margin(H.class_pair_alignment(z, y, None))
    assert margin.shape == (3, 3) and torch.isnan(margin.diagonal()).all()
    # no gate: M[a, b, c] = sim(a, c), so for each a exactly one partner b has a positive margin
    assert ((margin > 0).sum(1) == 1).all()


def test_subspace_margin_on_a_built_case():
    M = torch.zeros(3, 3, 3, dtype=torch.float64)
    M[0, 1, 1], M[0, 1, 2] = 0.5, 0.2
    M[0, 2, 2], M[0, 2, 1] = 0.1, 0.3
    m = H.subspace_margin(M)
    assert float(m[0, 1]) == pytest.approx(0.3) and float(m[0, 2]) == pytest.approx(-0.2)


# ------------------------------------------------------------------------------------------------
# A short run and the panels
# ------------------------------------------------------------------------------------------------

def test_short_run_records_history_scores_gates_and_is_cached():
    run = H.train_hydra("arbitrary", True, epochs=1, embed_dim=16, mlp_dim=32, progress=False)
    assert len(run.history["loss"]) == 898 // 128 and np.isfinite(run.history["loss"]).all()
    assert run.history["scale"][0] == pytest.approx(10.0, rel=0.01)            # s = 1/tau at the start
    assert ((run.history["open"] >= 0) & (run.history["open"] <= 1)).all()
    assert run.gates.shape == (10, 10, 32) and np.allclose(run.gates, run.gates.transpose(1, 0, 2))
    assert run.h_test.shape == (899, 128) and run.z_test.shape == (899, 32)
    assert 1 <= run.erank_h <= 128 and 0 <= run.scores["knn_z"] <= 1
    assert "erank(h)" in repr(run) and isinstance(run, Run) and run.final("erank_z") == run.scores["erank_z"]
    assert not (run.model.training or run.gate.training)
    assert H.train_hydra("arbitrary", True, epochs=1, embed_dim=16, mlp_dim=32, progress=False) is run
    plain = H.train_hydra("arbitrary", False, epochs=1, embed_dim=16, mlp_dim=32, progress=False)
    assert plain.gates is None and (plain.history["open"] == 1).all()
    batch = H.gated_batch(run, n=16)
    assert batch["S"].shape == (16, 16) and batch["tau"] == pytest.approx(1 / run.history["scale"][-1])
    torch.testing.assert_close(batch["S"], H.gated_similarity(batch["z1"], batch["z2"], batch["g"]))


def drawn(fig) -> list:
    """The artists in a panel's axes: a pure-maths panel moves these on a change, never replaces them."""
    return [a for ax in fig.axes for a in (*ax.lines, *ax.collections, *ax.patches, *ax.images, *ax.texts)]


def test_gate_panel_redraws_on_its_knobs():
    panel = H.gate_panel(d=16, kind="sigmoid", kappa=8.0)
    artists = drawn(panel.fig)
    _, _, k = H.toy_classes(16)
    assert panel.state["open"] == k and panel.redraws == 1
    loss_gated = panel.state["loss"]
    panel.controls["kind"].value = "open"
    assert torch.equal(panel.state["gate"], torch.ones(16, dtype=torch.float64)) and panel.state["open"] == 16
    assert panel.state["loss"] > loss_gated                 # the gate makes the a-b pairing easier
    panel.controls["kind"].value = "gumbel"
    panel.controls["kappa"].value = 0.0
    panel.controls["gumbel_tau"].value = 0.3
    sharp = (panel.state["gate"] - 0.5).abs().mean()
    panel.controls["gumbel_tau"].value = 2.0
    assert (panel.state["gate"] - 0.5).abs().mean() < sharp
    before = panel.state["loss"]
    panel.controls["tau"].value = 0.5
    assert panel.state["loss"] != before
    panel.controls["d"].value = 64
    assert panel.state["gate"].shape == (64,)
    assert drawn(panel.fig) == artists                    # moved in place, nothing rebuilt


def test_training_panel_trains_on_press_and_caches():
    panel = H.training_panel(autorun=False, epochs=5)
    assert "press" in panel.state["status"]
    panel.controls["dim"].value = 8
    first = panel.train()
    assert first.params["dim"] == 8 and first.params["epochs"] == 5 and panel.state["result"] is first
    assert panel.train() is first                            # cached by parameters
    panel.controls["gate"].value = False
    assert panel.state["stale"]
    assert panel.train().gates is None


# ------------------------------------------------------------------------------------------------
# Bad input
# ------------------------------------------------------------------------------------------------

def test_bad_input_is_refused_with_clear_messages():
    S, y1, y2, _, _ = random_batch(0, n=6)
    with pytest.raises(ValueError, match="integer class ids"):
        H.hydra_loss(S, y1.float(), partner=y2)
    with pytest.raises(ValueError, match="partner must have shape"):
        H.hydra_loss(S, y1, partner=y2[:3])
    with pytest.raises(ValueError, match="NaN or Inf"):
        H.hydra_loss(S.clone().fill_(math.nan), y1, partner=y2)
    with pytest.raises(ValueError, match="tau .* must be > 0"):
        H.hydra_loss(S, y1, partner=y2, tau=0)
    with pytest.raises(ValueError, match="tau .* must be > 0"):
        H.hydra_loss(S, y1, partner=y2, tau=-0.1)
    with pytest.raises(ValueError, match="no anchor has a positive"):
        H.hydra_loss(S, torch.zeros(6, dtype=torch.long), partner=torch.ones(6, dtype=torch.long))
    with pytest.raises(ValueError, match="pass key_labels"):
        H.hydra_loss(S[:, :4], y1, partner=y2)
    with pytest.raises(ValueError, match="key_labels must have shape"):
        H.hydra_loss(S[:, :4], y1, partner=y2, key_labels=y1)
    with pytest.raises(ValueError, match="unknown pair mode"):
        H.partner_labels(y1, "random")
    with pytest.raises(ValueError, match=r"num_classes \(mode 'distinct' needs it\) must be an integer >= 2"):
        H.partner_labels(y1, "distinct")
    with pytest.raises(ValueError, match=r"class ids in \[0, 2\)"):
        H.partner_labels(torch.tensor([0, 5]), "distinct", num_classes=2)
    z = torch.randn(4, 3)
    with pytest.raises(ValueError, match="same dimension"):
        H.gated_similarity(z, torch.randn(4, 5), torch.ones(3))
    with pytest.raises(ValueError, match="one gate per anchor"):
        H.gated_similarity(z, z, torch.ones(2, 3))
    with pytest.raises(ValueError, match="a d-vector"):
        H.gated_similarity(z, z, torch.ones(5))
    with pytest.raises(ValueError, match=r"lie in \[0, 1\]"):
        H.gated_similarity(z, z, torch.full((3,), 1.5))
    with pytest.raises(ValueError, match="unknown gate kind"):
        H.FeatureGate(3, 4, kind="relu")
    with pytest.raises(ValueError, match="dim must be an integer"):
        H.FeatureGate(3, 0)
    with pytest.raises(ValueError, match=r"class ids in \[0, 3\)"):
        H.FeatureGate(3, 4)(torch.tensor([0, 3]), torch.tensor([1, 1]))
    with pytest.raises(ValueError, match="gumbel_tau .* must be > 0"):
        H.gate_values(torch.zeros(3), "gumbel", gumbel_tau=0)
    with pytest.raises(ValueError, match="every class id"):
        H.class_pair_alignment(torch.randn(4, 3), torch.tensor([0, 0, 2, 2]), None)
    with pytest.raises(ValueError, match="gates must be C x C x d"):
        H.class_pair_alignment(torch.randn(4, 3), torch.tensor([0, 1, 2, 2]), torch.ones(3, 3, 2))
    with pytest.raises(ValueError, match="unknown pair mode"):
        H.train_hydra("random")
    with pytest.raises(ValueError, match="gate_kind must be"):
        H.train_hydra(gate_kind="open")
    with pytest.raises(ValueError, match="epochs must be an integer"):
        H.train_hydra(epochs=0)
