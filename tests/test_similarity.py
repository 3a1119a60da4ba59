"""lossviz.similarity: the cosine similarity matrix (fast path and formula), the masked log-sum-exp."""

from __future__ import annotations

import math

import pytest
import torch

import lossviz as lv
from lossviz.similarity import masked_logsumexp


@pytest.mark.parametrize("B,D", [(9, 5), (5, 9)])  # B > D and B < D
def test_similarity_backward_written_by_hand_equals_autograd_through_normalize(B, D):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(B, D, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lv.similarity, (x,))
    W = torch.randn(B, B, generator=g, dtype=torch.float64)
    (grad,) = torch.autograd.grad((lv.similarity(x) * W).sum(), x)
    f = torch.nn.functional.normalize(x, dim=1)
    (expected,) = torch.autograd.grad(((f @ f.T) * W).sum(), x)
    torch.testing.assert_close(grad, expected, rtol=1e-12, atol=1e-12)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # S keeps the embeddings' dtype
        assert lv.similarity(x.float()).dtype == torch.float32


@pytest.mark.parametrize("B,D", [(9, 5), (5, 9)])
def test_similarity_formula_equals_the_fast_path_in_value_and_gradient(B, D):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(B, D, generator=g, dtype=torch.float64, requires_grad=True)
    W = torch.randn(B, B, generator=g, dtype=torch.float64)
    S, S_formula = lv.similarity(x), lv.similarity_formula(x)
    torch.testing.assert_close(S, S_formula, rtol=0, atol=1e-12)
    (grad,) = torch.autograd.grad((S * W).sum(), x)
    (grad_formula,) = torch.autograd.grad((S_formula * W).sum(), x)
    torch.testing.assert_close(grad, grad_formula, rtol=0, atol=1e-12)


@pytest.mark.parametrize("B,D", [(9, 5), (5, 9)])
@pytest.mark.parametrize("scale", [1e20, 1e-20, 1e-30, 1e36, "mixed"])
def test_similarity_of_very_large_or_small_float32_rows_is_that_of_the_rows_scaled_to_one(B, D, scale):
    """|x|^2 overflows float32 near 1e20 (S was 0) and underflows near 1e-20 (S ~ 0; rows near 1e-30
    were refused as all zeros).  S must not depend on the rows' scales, and d/dx_i scales as 1 / s_i."""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(B, D, generator=g)
    W = torch.randn(B, B, generator=g) / B
    if scale == "mixed":                                  # one batch, rows of every scale
        s = torch.tensor([1e20, 1e-20, 1e-30, 1e36, 1.0] * 2)[:B, None]
    else:
        s = torch.full((B, 1), scale)
    big = (x * s).requires_grad_(True)                   # float32 rows of norm ~ s
    S = lv.similarity(big)
    (grad,) = torch.autograd.grad((S * W).sum(), big)
    unit = big.detach().double() / s.double()             # the same rows at scale ~1, in float64
    unit.requires_grad_(True)
    S_ref = lv.similarity_formula(unit)
    (grad_ref,) = torch.autograd.grad((S_ref * W.double()).sum(), unit)
    assert S.dtype == torch.float32 and torch.isfinite(S).all() and torch.isfinite(grad).all()
    torch.testing.assert_close(S.double(), S_ref.detach(), rtol=0, atol=1e-6)
    torch.testing.assert_close(grad.double() * s.double(), grad_ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("B,D", [(6, 4), (4, 6)])
def test_only_exactly_zero_rows_are_refused_and_they_give_zero_cosines_without_validation(B, D):
    x = torch.randn(B, D, generator=torch.Generator().manual_seed(3))
    x[2] = 0
    with pytest.raises(ValueError, match="all zeros"):
        lv.similarity(x)
    x[2, 1] = 1e-40                                       # one subnormal entry: a direction all the same
    assert float(lv.similarity(x)[2, 2]) == pytest.approx(1.0, abs=1e-6)
    x[2] = 0
    leaf = x.clone().requires_grad_(True)
    with lv.validation(False):                            # the training loop's setting
        S = lv.similarity(leaf)
    assert (S[2] == 0).all() and (S[:, 2] == 0).all()
    S.sum().backward()
    assert torch.isfinite(leaf.grad).all()


def test_masked_logsumexp_is_the_log_of_the_masked_sum_and_finite_on_empty_rows():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 7, generator=g, dtype=torch.float64, requires_grad=True)
    mask = torch.rand(5, 7, generator=g) < 0.5
    mask[2] = False                                                      # an empty row
    out = masked_logsumexp(x, mask)
    for i in range(5):
        want = torch.log(sum(torch.exp(x[i, j]) for j in range(7) if mask[i, j])) if mask[i].any() else -math.inf
        assert float(out[i].detach()) == pytest.approx(float(want.detach()) if torch.is_tensor(want) else want, rel=1e-12)
    torch.where(mask.any(1), out, 0.0).sum().backward()
    assert torch.isfinite(x.grad).all() and (x.grad[2] == 0).all() and (x.grad[~mask] == 0).all()
    soft = torch.where(mask, torch.softmax(torch.where(mask, x, -math.inf), dim=1), 0.0)
    torch.testing.assert_close(x.grad[mask.any(1)], soft[mask.any(1)].detach())   # d lse / dx = softmax
    assert masked_logsumexp(x, mask, dim=0, keepdim=True).shape == (1, 7)
