"""CS-IB (notebook 29): the CS divergence and CS mutual information against loops written from the
formulas (values and gradients), the 1-D shape identity, the correntropy weight, bad inputs, panels."""
import math

import numpy as np
import pytest
import torch

from lossviz.papers import cs_ib as C


def _kappa(a, b, sigma):
    return math.exp(-float(((a - b) ** 2).sum()) / (2 * sigma ** 2))


def _div_loop(x, y, yh, sigma):
    N = len(x)
    terms = [0.0, 0.0, 0.0]
    for j in range(N):
        n = sum(_kappa(x[j], x[i], sigma) ** 2 for i in range(N))
        for t, (a, b) in enumerate(((y, y), (yh, yh), (yh, y))):
            terms[t] += sum(_kappa(x[j], x[i], sigma) * _kappa(a[j], b[i], sigma) for i in range(N)) / n
    return math.log2(terms[0]) + math.log2(terms[1]) - 2 * math.log2(terms[2])


def _batch(n=9, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, 3, generator=g, dtype=torch.float64), torch.randn(n, 1, generator=g, dtype=torch.float64),
            torch.randn(n, 1, generator=g, dtype=torch.float64))


@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.0])
def test_divergence_matches_loop_value_and_gradient(sigma):
    x, y, yh = _batch()
    yh.requires_grad_(True)
    d = C.cs_divergence(x, y, yh, sigma)
    assert abs(float(d.detach()) - _div_loop(x, y, yh.detach(), sigma)) < 1e-9
    d.backward()
    eps, num = 1e-6, torch.zeros_like(yh)
    for k in range(len(yh)):
        p, m = yh.detach().clone(), yh.detach().clone()
        p[k] += eps
        m[k] -= eps
        num[k] = (_div_loop(x, y, p, sigma) - _div_loop(x, y, m, sigma)) / (2 * eps)
    assert torch.allclose(yh.grad, num, atol=1e-6)
    assert float(C.cs_divergence(x, y, y.clone(), sigma)) == pytest.approx(0, abs=1e-12)


def test_ics_matches_formula_and_gradient():
    x, _, _ = _batch(8)
    t = torch.randn(8, 2, dtype=torch.float64, requires_grad=True)

    def ref(x, t):
        Kx = torch.tensor([[_kappa(a, b, 1.0) for b in x] for a in x], dtype=torch.float64)
        Kt = torch.exp(-((t[:, None] - t[None]) ** 2).sum(-1) / 2)
        N, one = len(x), torch.ones(len(x), dtype=torch.float64)
        return torch.log2(torch.trace(Kx @ Kt) / N ** 2 * (one @ Kx @ one) * (one @ Kt @ one) / N ** 4
                          / ((one @ Kx @ Kt @ one) / N ** 3) ** 2)

    ours, theirs = C.cs_mutual_information(x, t), ref(x, t)
    assert torch.allclose(ours, theirs)
    g1, = torch.autograd.grad(ours, t)
    g2, = torch.autograd.grad(theirs, t)
    assert torch.allclose(g1, g2)
    ix, it = C.cs_mutual_information(x, x), C.cs_mutual_information(t, t)
    assert torch.allclose(C.normalized_ics(x, t), ours / torch.sqrt(ix * it))


def test_flat_targets_collapse_to_squared_error():
    for seed in range(3):
        x, y, yh = _batch(20, seed)
        d = C.cs_divergence(x, y[:, 0], yh[:, 0], 1.0, flat=True)
        assert float(d) == pytest.approx(float(((y - yh) ** 2).sum()) / math.log(2), rel=1e-6)
    x, y, yh = _batch(20)                                # sigma scales it by 1 / sigma²
    assert float(C.cs_divergence(x, y[:, 0], yh[:, 0], 2.0, flat=True)) == pytest.approx(
        float(((y - yh) ** 2).sum()) / (4 * math.log(2)), rel=1e-6)


def test_gradient_is_correntropy_weighted():
    r = torch.cat([0.3 * torch.randn(40), 4 * torch.randn(8)]).double()
    grad, pred = C.residual_gradients(r, 1.0), C.correntropy_weights(r, 1.0) * r
    assert np.corrcoef(grad, pred)[0, 1] > 0.999
    assert torch.allclose(C.correntropy_weights(r).sum(), torch.tensor(1.0, dtype=r.dtype))


def test_no_underflow_for_large_residuals():
    x, y, _ = _batch(16)
    yh = (y + 100.0).float().requires_grad_(True)
    d = C.cs_divergence(x.float(), y.float(), yh)
    d.backward()
    assert torch.isfinite(d) and torch.isfinite(yh.grad).all()


def test_bad_inputs():
    x, y, yh = _batch()
    with pytest.raises(ValueError, match="N x 1"):
        C.cs_divergence(x, y[:, 0], yh[:, 0])
    with pytest.raises(ValueError, match="sigma"):
        C.cs_divergence(x, y, yh, 0.0)
    with pytest.raises(ValueError, match="NaN"):
        C.cs_divergence(x, y, yh * float("nan"))
    with pytest.raises(ValueError, match="same"):
        C.cs_divergence(x, y[:5], yh)
    with pytest.raises(ValueError, match="floating"):
        C.cs_divergence(x, y.long(), yh)
    with pytest.raises(ValueError, match="at least 2"):
        C.cs_divergence(x[:1], y[:1], yh[:1])
    with pytest.raises(ValueError, match="loss"):
        C.train_run("kl")
    with pytest.raises(ValueError, match="rows"):
        C.cs_mutual_information(x, x[:4])


def test_weight_panel_updates_in_place():
    p = C.weight_panel()
    share, scatter = p.state["outlier_weight"], p.fig.axes[0].collections[1]
    assert share < 0.5 * p.state["outlier_count"]
    p.controls["sigma"].value = 3.0
    assert p.state["outlier_weight"] > share and p.fig.axes[0].collections[1] is scatter
    p.controls["frac"].value = 0.0
    assert p.state["outlier_weight"] == 0.0


def test_training_panel_runs_and_caches():
    p = C.training_panel(loss="l1", epochs=2)
    first = p.state["result"]
    assert np.isfinite(first["rmse"]) and len(first["history"]["test_rmse"]) == 2
    p.controls["loss"].value = "cs"
    assert p.state["stale"]
    p.controls["loss"].value = "l1"
    assert p.train() is first
