"""lossviz.similarity: the cosine similarity matrix (fast path and formula), the masked log-sum-exp."""

from __future__ import annotations

import math

import pytest
import torch

import lossviz as lv
from lossviz.similarity import masked_logsumexp


@pytest.mark.parametrize("B,D", [(9, 5), (5, 9)])  # both branches of the backward pass
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
