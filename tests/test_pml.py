"""lv.from_pml: a pytorch-metric-learning loss (and miner) evaluated on a similarity matrix S.

Its value and pair weights must equal lossviz's own losses where PML has the same loss, and PML's
own result on the embeddings (the matrix it builds from S is the one it would build itself)."""

import pytest
import torch

import lossviz as lv
from _util import value_and_grad
from pytorch_metric_learning import distances, losses, miners          # the test extras


def batch(seed=0, p=4, k=4, dim=6):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(p).repeat_interleave(k)[torch.randperm(p * k, generator=g)]
    x = torch.randn(p, dim, generator=g, dtype=torch.float64)[y] + 0.8 * torch.randn(p * k, dim, generator=g,
                                                                                     dtype=torch.float64)
    return x, y


SAME = [  # (PML loss, the lossviz loss it equals, knobs)
    ("ms", lambda: losses.MultiSimilarityLoss(alpha=2, beta=50, base=0.5), lv.ms_loss,
     dict(alpha=2.0, beta=50.0, lam=0.5, mining=False)),
    ("ms_paper", lambda: losses.MultiSimilarityLoss(alpha=2, beta=40, base=1.0), lv.ms_loss,
     dict(alpha=2.0, beta=40.0, lam=1.0, mining=False)),
    ("nt_xent", lambda: losses.NTXentLoss(temperature=0.1), lv.nt_xent_loss, dict(tau=0.1)),
    ("supcon", lambda: losses.SupConLoss(temperature=0.2), lv.supcon_loss, dict(tau=0.2)),
    ("lifted", lambda: losses.GeneralizedLiftedStructureLoss(pos_margin=1.0, neg_margin=0.0,
                                                             distance=distances.CosineSimilarity()),
     lv.lifted_structure_loss, dict(lam=1.0)),
]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("name, make, ours, knobs", SAME, ids=[c[0] for c in SAME])
def test_from_pml_equals_the_lossviz_loss_in_value_and_pair_weights(name, make, ours, knobs, seed):
    x, y = batch(seed)
    S = lv.similarity(x)
    value, grad = value_and_grad(lv.from_pml(make()), S, y)
    want, want_grad = value_and_grad(ours, S, y, **knobs)
    torch.testing.assert_close(value, want, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grad, want_grad, rtol=1e-9, atol=1e-12)


def test_from_pml_with_the_ms_miner_is_lossviz_ms_with_mining():
    x, y = batch(3)
    S = lv.similarity(x)
    fn = lv.from_pml(losses.MultiSimilarityLoss(alpha=2, beta=50, base=0.5), miners.MultiSimilarityMiner(epsilon=0.1))
    W, W_ours = lv.pair_weights(fn, S, y), lv.pair_weights(lv.ms_loss, S, y, alpha=2.0, beta=50.0, lam=0.5, eps=0.1)
    torch.testing.assert_close(W, W_ours, rtol=1e-9, atol=1e-12)
    assert (W == 0).any() and (W > 0).any()                          # the miner dropped some pairs


@pytest.mark.parametrize("make", [
    lambda: losses.ContrastiveLoss(),                                  # LpDistance on unit vectors
    lambda: losses.TripletMarginLoss(margin=0.2),
    lambda: losses.ContrastiveLoss(distance=distances.LpDistance(power=2)),
    lambda: losses.CircleLoss(),
    lambda: losses.MarginLoss(),
], ids=["contrastive", "triplet", "contrastive_squared", "circle", "margin"])
def test_from_pml_equals_pml_on_the_embeddings(make):
    """The matrix built from S is the one PML builds from the embeddings: same value and gradient."""
    x, y = batch(4)
    loss = make().double() if hasattr(make(), "double") else make()
    leaf = x.clone().requires_grad_(True)
    want = loss(leaf, y)
    (want_grad,) = torch.autograd.grad(want, leaf)
    leaf2 = x.clone().requires_grad_(True)
    got = lv.from_pml(loss)(lv.similarity(leaf2), y)
    (got_grad,) = torch.autograd.grad(got, leaf2)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(got_grad, want_grad, rtol=1e-7, atol=1e-9)


def test_from_pml_restores_the_loss_and_its_weights_are_finite_on_the_diagonal():
    loss = losses.TripletMarginLoss()
    original = loss.distance
    x, y = batch(5)
    W = lv.pair_weights(lv.from_pml(loss, miners.TripletMarginMiner(margin=0.2)), lv.similarity(x), y)
    assert loss.distance is original and torch.isfinite(W).all() and (W.diagonal() == 0).all()
    assert "TripletMarginLoss" in lv.from_pml(loss).__name__


@pytest.mark.parametrize("make, message", [
    (lambda: losses.ArcFaceLoss(num_classes=4, embedding_size=6), "other embeddings"),
    (lambda: losses.ProxyAnchorLoss(num_classes=4, embedding_size=6), "other embeddings"),
    (lambda: losses.SignalToNoiseRatioContrastiveLoss(), "SNRDistance"),
    (lambda: losses.ContrastiveLoss(distance=distances.LpDistance(normalize_embeddings=False)), "un-normalised"),
    (lambda: losses.ContrastiveLoss(embedding_regularizer=__import__(
        "pytorch_metric_learning.regularizers", fromlist=["LpRegularizer"]).LpRegularizer()), "regulariser"),
    (lambda: "not a loss", "pytorch-metric-learning loss"),
])
def test_from_pml_refuses_what_is_not_a_function_of_S(make, message):
    x, y = batch(6)
    with pytest.raises(ValueError, match=message):
        lv.from_pml(make())(lv.similarity(x).double(), y)


def test_from_pml_checks_its_input_like_every_lossviz_loss():
    fn = lv.from_pml(losses.MultiSimilarityLoss())
    with pytest.raises(ValueError, match="square"):
        fn(torch.rand(4, 3), torch.tensor([0, 0, 1, 1]))
    with pytest.raises(ValueError, match="positive pair"):
        fn(torch.eye(3), torch.tensor([0, 1, 2]))
