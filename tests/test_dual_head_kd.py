"""Dual-head KD (notebook 32): losses vs slow references (values and gradients), errors, panels, identities."""
import math

import numpy as np
import pytest
import torch

from lossviz.papers import dual_head_kd as M


def _batch(seed=0, n=4, c=6, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    z = scale * torch.randn(n, c, generator=g, dtype=torch.float64)
    t = scale * torch.randn(n, c, generator=g, dtype=torch.float64)
    return z, t


def _sig(x):
    return 1 / (1 + math.exp(-x))


def ref_bkl(z, t, T):
    tot = 0.0
    for i in range(z.shape[0]):
        for k in range(z.shape[1]):
            p, q = _sig(float(t[i, k]) / T), _sig(float(z[i, k]) / T)
            tot += p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q))
    return T * T * tot / z.shape[0]


def ref_bkln(z, t, T):
    tot = 0.0
    for i in range(z.shape[0]):
        for k in range(z.shape[1]):
            q = _sig((float(z[i, k]) - float(t[i, k])) / T)
            tot += -0.5 * math.log(q) - 0.5 * math.log(1 - q) - math.log(2)
    return T * T * tot / z.shape[0]


def ref_kd(z, t, T):
    tot = 0.0
    for i in range(z.shape[0]):
        p = np.exp(t[i].numpy() / T); p /= p.sum()
        q = np.exp(z[i].numpy() / T); q /= q.sum()
        tot += float((p * np.log(p / q)).sum())
    return T * T * tot / z.shape[0]


@pytest.mark.parametrize("T", [1.0, 2.0, 4.0])
def test_values_against_loops(T):
    z, t = _batch()
    assert float(M.bkl_loss(z, t, T)) == pytest.approx(ref_bkl(z, t, T), rel=1e-10)
    assert float(M.bkl_norm_loss(z, t, T)) == pytest.approx(ref_bkln(z, t, T), rel=1e-10)
    assert float(M.kd_loss(z, t, T)) == pytest.approx(ref_kd(z, t, T), rel=1e-10)


def test_gradients_closed_form():
    z, t = _batch(1)
    N, T = z.shape[0], 2.0
    assert torch.allclose(M.logit_grad(M.bkl_norm_loss, z, t, T=T), T / (2 * N) * torch.tanh((z - t) / (2 * T)))
    assert torch.allclose(M.logit_grad(M.bkl_loss, z, t, T=T), T / N * (torch.sigmoid(z / T) - torch.sigmoid(t / T)))
    T4 = 4.0
    want = T4 / N * (torch.softmax(z / T4, 1) - torch.softmax(t / T4, 1))
    assert torch.allclose(M.logit_grad(M.kd_loss, z, t, T=T4), want)
    zz = z.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a: M.bkl_loss(a, t, 2.0), (zz,))
    assert torch.autograd.gradcheck(lambda a: M.bkl_norm_loss(a, t, 2.0), (zz,))


def test_shift_invariance_and_minimum():
    z, t = _batch(2)
    assert float(M.kd_loss(z + 3.0, t)) == pytest.approx(float(M.kd_loss(z, t)), abs=1e-10)
    assert abs(float(M.bkl_loss(z + 3.0, t)) - float(M.bkl_loss(z, t))) > 0.1
    assert float(M.bkl_norm_loss(t, t)) == pytest.approx(0.0, abs=1e-12)


def test_stability_against_clamp():
    z, t = torch.tensor([[40.0]]), torch.tensor([[0.0]])
    assert torch.isinf(M.bkl_norm_clamped(z, t, 2.0))
    assert float(M.bkl_norm_loss(z, t, 2.0)) == pytest.approx(4 * (10 - math.log(2)), abs=1e-4)
    zm, tm = _batch(3, scale=1.0)
    assert float(M.bkl_norm_clamped(zm, tm)) == pytest.approx(float(M.bkl_norm_loss(zm, tm)), rel=1e-6)


def test_bad_inputs():
    z, t = _batch()
    with pytest.raises(ValueError):
        M.bkl_loss(z, t[:, :3])
    with pytest.raises(ValueError):
        M.bkl_norm_loss(z, t, 0.0)
    with pytest.raises(ValueError):
        M.kd_loss(z * float("nan"), t)
    with pytest.raises(ValueError):
        M.bkl_loss(z[0], t[0])
    with pytest.raises(ValueError):
        M.student_loss("nope", z, z, torch.zeros(4, dtype=torch.long), t, 0.1)
    with pytest.raises(ValueError):
        M.ce_loss(z, torch.zeros(4))


def test_collapse_conflict():
    lo, hi = M.collapse_cosines(1.0), M.collapse_cosines(16.0)
    assert lo["cos_W"] > 0.5 and hi["cos_W"] < 0 and abs(hi["cos_h"]) < abs(hi["cos_W"])


def test_logit_panel_updates():
    panel = M.logit_panel()
    assert panel.state["max_bkln"] == pytest.approx(1.0, abs=1e-3)
    assert panel.state["kd_spread"] < 1e-9 < panel.state["bkl_spread"]
    panel.controls["T_bkl"].value = 4.0
    assert 1.8 < panel.state["max_bkln"] <= 2.0
    panel.controls["T_kd"].value = 1.0
    assert panel.state["kd_spread"] < 1e-9


def test_head_isolation_and_train_panel():
    hg = M.head_grads()
    assert hg["kd"][0].abs().max() == 0 and hg["ce"][1].abs().max() == 0
    assert hg["kd"][2].abs().max() > 0 and hg["ce"][2].abs().max() > 0
    panel = M.train_panel(steps=20)
    res = panel.train()
    assert set(res) == {"CE only", "dhkd"} and 0 <= panel.state["acc"]["dhkd"] <= 1
    panel.controls["alpha"].value = 1.0
    assert panel.state["stale"]
