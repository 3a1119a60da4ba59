"""Margin softmax losses (NormFace, CosFace, ArcFace) against loops written from the formulas,
closed-form proxy weights and pytorch-metric-learning; the identities data; TAR@FAR."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lossviz import data, margins, metrics


def loss_ref(cos, labels, *, s, m, kind):
    """-log softmax of the target with psi(theta) = cos(theta + m) / cos(theta) - m / cos(theta)."""
    total = 0.0
    for i in range(cos.shape[0]):
        y = int(labels[i])
        theta = math.acos(float(cos[i, y]))
        psi = {"arcface": math.cos(theta + m), "cosface": math.cos(theta) - m, "normface": math.cos(theta)}[kind]
        terms = [s * psi] + [s * float(cos[i, k]) for k in range(cos.shape[1]) if k != y]
        top = max(terms)
        total += -(s * psi - top - math.log(sum(math.exp(t - top) for t in terms)))
    return total / cos.shape[0]


def batch(seed, b=12, k=5, d=6):
    g = torch.Generator().manual_seed(seed)
    emb, W = torch.randn(b, d, generator=g, dtype=torch.float64), torch.randn(k, d, generator=g, dtype=torch.float64)
    return margins.cosine_logits(emb, W), torch.randint(0, k, (b,), generator=g)


@pytest.mark.parametrize("kind", margins.MARGINS)
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("s,m", [(1.0, 0.2), (16.0, 0.3), (64.0, 0.5)])
def test_values_equal_the_loop_reference(kind, seed, s, m):
    cos, y = batch(seed)
    got = float(margins.margin_softmax_loss(cos, y, s=s, m=m, kind=kind))
    assert got == pytest.approx(loss_ref(cos, y, s=s, m=m, kind=kind), rel=1e-10, abs=1e-10)


@pytest.mark.parametrize("kind", margins.MARGINS)
def test_proxy_weights_equal_the_closed_form(kind):
    cos, y = batch(3)
    s, m = 16.0, 0.3
    W = margins.proxy_weights(margins.margin_softmax_loss, cos, y, signed=True, s=s, m=m, kind=kind)
    p = torch.softmax(margins.margin_logits(cos, y, s=s, m=m, kind=kind), dim=1)
    onehot = F.one_hot(y, cos.shape[1]).bool()
    B = cos.shape[0]
    assert torch.allclose(W[~onehot], (s / B * p)[~onehot], atol=1e-12)  # softmax at temperature 1/s
    theta = torch.acos(cos[onehot])
    factor = {"arcface": torch.sin(theta + m) / torch.sin(theta), "cosface": 1.0, "normface": 1.0}[kind]
    assert torch.allclose(W[onehot], s / B * (p[onehot] - 1) * factor, atol=1e-12)


def test_gradients_through_the_embeddings_pass_gradcheck():
    g = torch.Generator().manual_seed(4)
    emb = torch.randn(6, 4, generator=g, dtype=torch.float64, requires_grad=True)
    W = torch.randn(3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    for kind in margins.MARGINS:
        assert torch.autograd.gradcheck(
            lambda e, w: margins.margin_softmax_loss(margins.cosine_logits(e, w), y, s=8.0, m=0.3, kind=kind), (emb, W))


@pytest.mark.parametrize("name,pml_kwargs,ours", [
    ("ArcFaceLoss", dict(margin=28.6, scale=64), dict(kind="arcface", s=64.0, m=math.radians(28.6))),
    ("CosFaceLoss", dict(margin=0.35, scale=64), dict(kind="cosface", s=64.0, m=0.35)),
    ("NormalizedSoftmaxLoss", dict(temperature=0.05), dict(kind="normface", s=20.0, m=0.0)),
])
def test_agrees_with_pytorch_metric_learning(name, pml_kwargs, ours):
    import pytorch_metric_learning.losses as L

    torch.manual_seed(0)
    pml = getattr(L, name)(num_classes=7, embedding_size=8, **pml_kwargs).double()
    emb = torch.randn(20, 8, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 7, (20,))
    expected = pml(emb, y)
    (g_expected,) = torch.autograd.grad(expected, emb)
    got = margins.margin_softmax_loss(margins.cosine_logits(emb, pml.W.T), y, **ours)
    (g_got,) = torch.autograd.grad(got, emb)
    assert float(got.detach()) == pytest.approx(float(expected.detach()), rel=1e-9)
    assert torch.allclose(g_got, g_expected, atol=1e-10)


def test_arcface_is_finite_at_cosines_of_exactly_one_and_under_half_precision():
    cos = torch.tensor([[1.0, -1.0, 0.0], [-1.0, 1.0, 0.5]], requires_grad=True)
    y = torch.tensor([0, 0])
    loss = margins.arcface_loss(cos, y)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(cos.grad).all()
    for dtype in (torch.float16, torch.bfloat16):
        assert torch.isfinite(margins.arcface_loss(cos.detach().to(dtype), y, s=64.0))


def test_easy_threshold_keeps_psi_decreasing_beyond_pi_minus_m():
    cos = torch.linspace(-1, 1, 201, dtype=torch.float64)[:, None].repeat(1, 2)
    y = torch.zeros(201, dtype=torch.long)
    plain = margins.margin_logits(cos, y, s=1.0, m=0.5, kind="arcface")[:, 0]
    safe = margins.margin_logits(cos, y, s=1.0, m=0.5, kind="arcface", easy_threshold=True)[:, 0]
    assert (plain.diff() < 0).any(), "plain ArcFace psi turns back for theta + m > pi"
    assert (safe.diff() > 0).all()


def test_margin_zero_and_normface_agree_and_cosine_classifier_projects():
    cos, y = batch(5)
    a = margins.normface_loss(cos, y, s=10.0)
    assert float(a) == pytest.approx(float(margins.margin_softmax_loss(cos, y, s=10.0, m=0.0, kind="arcface")))
    head = margins.CosineClassifier(4, 3)
    with torch.no_grad():
        head.weight.mul_(3.0)
    head.project()
    assert torch.allclose(head.weight.norm(dim=1), torch.ones(3))
    assert head(torch.randn(5, 4)).shape == (5, 3)


@pytest.mark.parametrize("call,match", [
    (lambda c, y: margins.margin_softmax_loss(c, y, s=0.0), "s .*must be > 0"),
    (lambda c, y: margins.margin_softmax_loss(c, y, m=-0.1), "m .*must be >= 0"),
    (lambda c, y: margins.margin_softmax_loss(c, y, kind="sphereface"), "kind must be one of"),
    (lambda c, y: margins.margin_softmax_loss(c * 3, y), "outside \\[-1, 1\\]"),
    (lambda c, y: margins.margin_softmax_loss(c, y.double()), "integer class ids"),
    (lambda c, y: margins.margin_softmax_loss(c, y + 10), "class indices in"),
    (lambda c, y: margins.margin_softmax_loss(c[:, :1], y * 0), "at least two classes"),
    (lambda c, y: margins.margin_softmax_loss(c * float("nan"), y), "NaN or Inf"),
    (lambda c, y: margins.cosine_logits(torch.randn(3, 4), torch.randn(2, 5)), "dimension 4 .* 5"),
])
def test_bad_input_raises_a_clear_error(call, match):
    cos, y = batch(6)
    with pytest.raises(ValueError, match=match):
        call(cos, y)


def test_identities_are_seeded_and_split_by_identity():
    x, y = data.make_ids(50, 4, seed=1)
    x2, _ = data.make_ids(50, 4, seed=1)
    assert x.shape == (200, 32) and x.dtype == np.float32 and np.array_equal(x, x2)
    assert not np.array_equal(x, data.make_ids(50, 4, seed=2)[0])
    split = data.load("ids")
    assert set(split.y_train.tolist()) == set(range(300)) and set(split.y_test.tolist()) == set(range(300, 400))
    assert split.x_test.shape == (1200, 32)
    with pytest.raises(ValueError, match="n_train"):
        data.identities(10, n_train=10)


def test_tar_at_far_on_separable_and_random_embeddings():
    y = torch.arange(20).repeat_interleave(5)
    emb = F.one_hot(y, 20).double() + 0.01 * torch.randn(100, 20, dtype=torch.float64)
    assert metrics.tar_at_far(emb, y, 1e-3) == 1.0
    noise = torch.randn(100, 20, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert metrics.tar_at_far(noise, y, 1e-2) < 0.1
    assert metrics.tar_at_far(noise, y, 0.5) > metrics.tar_at_far(noise, y, 1e-2)
    with pytest.raises(ValueError, match="far must be in"):
        metrics.tar_at_far(emb, y, 1.0)
    with pytest.raises(ValueError, match="genuine"):
        metrics.tar_at_far(emb[:3], torch.arange(3))


def test_tar_at_fars_equals_a_loop_over_pairs():
    g = torch.Generator().manual_seed(3)
    y = torch.arange(12).repeat_interleave(5)
    emb = torch.randn(12, 6, generator=g, dtype=torch.float64)[y] + torch.randn(60, 6, generator=g, dtype=torch.float64)
    f = F.normalize(emb, dim=1).tolist()
    genuine, impostor = [], []
    for a in range(60):
        for b in range(a + 1, 60):
            c = sum(u * v for u, v in zip(f[a], f[b]))
            (genuine if y[a] == y[b] else impostor).append(c)
    impostor.sort()
    fars = (1e-3, 1e-2, 0.1, 0.5)
    got = metrics.tar_at_fars(emb, y, fars)
    for far in fars:
        threshold = impostor[min(len(impostor) - 1, math.floor((1 - far) * len(impostor)))]
        assert got[far] == pytest.approx(sum(c > threshold for c in genuine) / len(genuine), abs=1e-12)
        assert metrics.tar_at_far(emb, y, far) == got[far]


@pytest.mark.parametrize("dtype", [torch.int8, torch.int16, torch.int32, torch.uint8])
def test_margin_losses_take_small_integer_labels_and_refuse_an_empty_batch(dtype):
    g = torch.Generator().manual_seed(0)
    cos, y = torch.rand(6, 4, generator=g) * 2 - 1, torch.tensor([0, 1, 2, 3, 0, 1])
    for fn in (margins.arcface_loss, margins.cosface_loss, margins.normface_loss):
        assert float(fn(cos, y.to(dtype))) == float(fn(cos, y))
        with pytest.raises(ValueError, match="empty"):
            fn(cos[:0], y[:0].to(dtype))
