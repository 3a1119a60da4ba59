"""AnyLoss (lossviz.papers.anyloss): loop references in float64 for values and gradients, the
closed-form F1 gradient, the re-weighting identity, the baselines, hard scores against sklearn,
the stacked training, panels and bad input."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import lossviz as lv
from lossviz.papers import anyloss as M

pytestmark = pytest.mark.usefixtures("one_thread")


def batch(seed, n=24, pos=5):
    g = torch.Generator().manual_seed(seed)
    f = 2 * torch.randn(n, generator=g, dtype=torch.float64)
    y = torch.zeros(n, dtype=torch.long)
    y[torch.randperm(n, generator=g)[:pos]] = 1
    return f, y


def loop_loss(f, y, metric, L, beta=1.0, s=1e-5):
    """From the paper's formulas, one sample at a time."""
    tp = fn = fp = tn = 0.0
    for fi, yi in zip(f, y):
        p = 1 / (1 + torch.exp(-fi))
        a = p if L is None else 1 / (1 + torch.exp(-L * (p - 0.5)))
        if int(yi) == 1:
            tp, fn = tp + a, fn + (1 - a)
        else:
            fp, tn = fp + a, tn + (1 - a)
    if metric == "accuracy":
        m = (tp + tn) / len(f)
    elif metric in ("f1", "fbeta"):
        b2 = 1.0 if metric == "f1" else beta ** 2
        m = (1 + b2) * tp / ((1 + b2) * tp + b2 * fn + fp + s)
    else:
        tpr, tnr = tp / (tp + fn + s), tn / (tn + fp + s)
        m = (tpr + tnr) / 2 if metric == "bacc" else torch.sqrt(tpr * tnr)
    return 1 - m


@pytest.mark.parametrize("metric", M.METRICS)
@pytest.mark.parametrize("L", [None, 1.0, 10.0, 73.0])
def test_loss_and_gradients_match_the_loop(metric, L):
    f, y = batch(0 if L is None else int(L))
    f1, f2 = f.clone().requires_grad_(True), f.clone().requires_grad_(True)
    ours = M.anyloss(f1, y, metric=metric, L=L, beta=1.7)
    ref = loop_loss(f2, y, metric, L, beta=1.7)
    ours.backward()
    ref.backward()
    assert torch.allclose(ours, ref, atol=1e-12)
    assert torch.allclose(f1.grad, f2.grad, atol=1e-12)


def test_two_class_logits_give_the_same_loss_and_gradient():
    f, y = batch(1)
    z = torch.stack([0.3 * f, 1.3 * f], dim=1)                      # f = z_1 - z_0
    assert torch.allclose(M.anyloss(z, y), M.anyloss(f, y), atol=1e-14)
    G = lv.logit_weights(M.anyloss, z, y)
    Gf = lv.logit_weights(M.anyloss, M.two_class_logits(f), y)
    assert torch.allclose(G, Gf, atol=1e-14) and torch.allclose(G[:, 0], -G[:, 1], atol=1e-15)


@pytest.mark.parametrize("L", [5.0, 73.0])
def test_f1_gradient_closed_form(L):
    """d(1 - F1)/dA_i = -2 (D - TP)/D^2 (positives), +2 TP/D^2 (negatives), D = sum y + sum A + s;
    then dA/df = L A (1 - A) p (1 - p)."""
    f, y = batch(2, n=30, pos=6)
    f = 0.3 * f
    p = torch.sigmoid(f)
    A = torch.sigmoid(L * (p - 0.5))
    TP, D = (y * A).sum(), y.sum() + A.sum() + M.EPS
    dA = torch.where(y == 1, -2 * (D - TP) / D ** 2, 2 * TP / D ** 2)
    closed = dA * L * A * (1 - A) * p * (1 - p)
    G = lv.logit_weights(lambda z, t: M.anyloss(z, t, L=L), M.two_class_logits(f), y)[:, 1]
    assert torch.allclose(G, closed, atol=1e-14)


@pytest.mark.parametrize("n,n_pos", [(100, 5), (200, 10), (64, 32)])
def test_reweighting_identity_at_initialisation(n, n_pos):
    """All p = 1/2: positives get (sum y + FP)/TP = 1 + N/n_pos times the negatives' |dL/dz|; BCE 1."""
    y = torch.zeros(n, dtype=torch.long)
    y[:n_pos] = 1
    z = torch.zeros(n, 2, dtype=torch.float64)
    w = lv.sample_weights(M.anyloss, z, y)
    ratio = w[:n_pos].mean() / w[n_pos:].mean()
    assert abs(float(ratio) - (1 + n / n_pos + 2 * M.EPS / n_pos)) < 1e-9
    wb = lv.sample_weights(M.bce_loss, z, y)
    assert torch.allclose(wb, torch.full_like(wb, 0.5 / n))
    rel = lv.sample_weights(M.bce_loss, z, y, relative_to_ce=True)
    assert torch.allclose(rel, torch.full_like(rel, 1 / n))     # BCE is cross-entropy, mean over the batch


def test_amplifier_limits():
    p = torch.linspace(0, 1, 10001, dtype=torch.float64)
    far = (p - 0.5).abs() > 0.05
    step = (p > 0.5).double()
    assert float((M.amplify(p, 500) - step)[far].abs().max()) < 1e-3
    assert abs(float(M.amplify(torch.tensor(0.45, dtype=torch.float64), 73)) - 0.0253) < 5e-4
    assert float(M.amplify(torch.tensor(0.5), 73)) == 0.5
    cm = M.soft_confusion(torch.tensor([3.0, -3.0, 0.5, -0.5]), torch.tensor([1, 1, 0, 0]), L=2000)
    assert torch.allclose(torch.stack(list(cm)), torch.tensor([1.0, 1.0, 1.0, 1.0]), atol=1e-6)


def test_soft_confusion_conserves_the_class_counts():
    f, y = batch(3)
    for L in (None, 2.0, 73.0):
        cm = M.soft_confusion(f, y, L=L)
        assert torch.allclose(cm.tp + cm.fn, y.sum().double()) and torch.allclose(cm.tn + cm.fp, (1 - y).sum().double())


def test_baselines():
    f, y = batch(4)
    assert torch.allclose(M.bce_loss(f, y), F.binary_cross_entropy_with_logits(f, y.double()))
    n1 = float(y.sum())
    n0 = len(y) - n1
    loop = sum((n0 / len(y) if int(t) else n1 / len(y)) * -math.log(float(torch.sigmoid(v)) if int(t) else
                                                                   1 - float(torch.sigmoid(v))) for v, t in zip(f, y))
    assert abs(float(M.wbce_loss(f, y)) - loop / len(y)) < 1e-10


def test_hard_scores_match_sklearn():
    from sklearn.metrics import balanced_accuracy_score, f1_score

    f, y = batch(5, n=200, pos=20)
    s = M.hard_scores(f, y)
    pred = (f >= 0).long().numpy()
    assert abs(float(s["f1"]) - f1_score(y.numpy(), pred)) < 1e-12
    assert abs(float(s["bacc"]) - balanced_accuracy_score(y.numpy(), pred)) < 1e-12
    stacked = M.hard_scores(torch.stack([f, -f]), torch.stack([y, y]))
    assert stacked["f1"].shape == (2,) and float(stacked["f1"][0]) == float(s["f1"])
    assert float(M.hard_scores(torch.full((5,), -1.0), torch.tensor([1, 0, 0, 0, 0]))["f1"]) == 0.0


def test_a_batch_without_positives_gives_f1_no_gradient():
    f = torch.randn(10, dtype=torch.float64, requires_grad=True)
    loss = M.anyloss(f, torch.zeros(10, dtype=torch.long))
    loss.backward()
    assert float(loss.detach()) == 1.0 and bool((f.grad == 0).all())


def test_metric_values_of_a_hard_matrix():
    cm = M.Confusion(*(torch.tensor(v, dtype=torch.float64) for v in (80.0, 10.0, 4.0, 6.0)))
    assert abs(float(M.metric_value(cm, "f1", eps=0)) - 12 / 26) < 1e-12
    assert abs(float(M.metric_value(cm, "bacc", eps=0)) - (0.6 + 80 / 90) / 2) < 1e-12
    assert abs(float(M.metric_value(cm, "gmean", eps=0)) - math.sqrt(0.6 * 80 / 90)) < 1e-12
    assert abs(float(M.metric_value(cm, "accuracy")) - 0.86) < 1e-12
    assert abs(float(M.metric_value(cm, "fbeta", beta=2, eps=0)) - 5 * 6 / (5 * 6 + 4 * 4 + 10)) < 1e-12


def test_bad_input():
    f, y = batch(6)
    with pytest.raises(ValueError, match="NaN or Inf"):
        M.anyloss(f * math.nan, y)
    with pytest.raises(ValueError, match=r"shape \(B, 2\)"):
        M.anyloss(torch.zeros(4, 3), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="integer class ids"):
        M.anyloss(f, y.double())
    with pytest.raises(ValueError, match="0 \\(negative\\) or 1"):
        M.anyloss(f, y * 2)
    with pytest.raises(ValueError, match="shape \\(24,\\)"):
        M.anyloss(f, y[:5])
    with pytest.raises(ValueError, match="L \\(the amplification\\) must be > 0"):
        M.anyloss(f, y, L=0)
    with pytest.raises(ValueError, match="unknown metric 'auc'"):
        M.anyloss(f, y, metric="auc")
    with pytest.raises(ValueError, match="beta"):
        M.anyloss(f, y, metric="fbeta", beta=0)
    with pytest.raises(ValueError, match="no sample"):
        M.anyloss(torch.zeros(0), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="unknown loss 'focal'"):
        M.train_anyloss("focal")
    with pytest.raises(ValueError, match="unknown task"):
        M.train_anyloss("bce", task="cifar")
    with pytest.raises(ValueError, match="each once"):
        M.train_anyloss("bce", seeds=(0, 0))
    with pytest.raises(ValueError, match="pos_rate"):
        M.task_data("gauss", pos_rate=0.7)


def test_stacked_members_are_independent():
    a, b = M.StackedMLP([0, 1, 2], (10, 64, 64)), M.StackedMLP([2], (10, 64, 64))
    for wa, wb in zip(a.weights, b.weights):
        assert torch.equal(wa[2], wb[0])
    x = torch.randn(3, 7, 10)
    assert torch.allclose(a(x)[2], b(x[2:]), atol=1e-6)


def test_training_is_paired_cached_and_learns():
    kw = dict(epochs=2, seeds=(0, 1), progress=False)
    run = M.train_anyloss("any_f1", **kw)
    assert M.train_anyloss("any_f1", **kw) is run                                   # cached
    alone = M.train_anyloss("any_f1", epochs=2, seeds=(1,), progress=False, cache=False)
    assert abs(float(alone.scores["f1"][0]) - float(run.scores["f1"][1])) < 1e-4     # seed 1 alone = in the stack
    assert run.evals["f1"].shape == (3, 2) and list(run.evals["epoch"]) == [0, 1, 2]
    assert np.isfinite(run.history["loss"]).all() and ((0 <= run.history["pos_share"]) & (run.history["pos_share"] <= 1)).all()
    bce = M.train_anyloss("bce", **kw)
    assert bce.history["loss"][-5:].mean() < bce.history["loss"][:5].mean()
    assert run.history["pos_share"].mean() > bce.history["pos_share"].mean()        # the re-weighting, in training


def drawn_artists(fig) -> list:
    return [a for ax in fig.axes for group in (ax.lines, ax.collections, ax.images, ax.patches) for a in group]


def test_weights_panel_without_a_browser():
    panel = M.weights_panel()
    drawn = drawn_artists(panel.fig)
    assert panel.state["ratio"] > 5                                                 # calibrated logits: positives weigh more
    panel.controls["model"].value = "init"
    assert abs(panel.state["ratio"] - 21) < 1.0                                     # 1 + N/n_pos, 200 samples, 10 positive
    panel.controls["metric"].value = "accuracy"
    assert panel.state["ratio"] < 1.5 and panel.controls["beta"].layout.display == "none"
    panel.controls["metric"].value = "fbeta"
    assert panel.controls["beta"].layout.display is None
    panel.controls["L"].value = 150.0
    panel.controls["pos_rate"].value = 0.2
    assert int(panel.state["labels"].sum()) == 40
    assert len(drawn) == len(drawn_artists(panel.fig)) and all(a is b for a, b in zip(drawn, drawn_artists(panel.fig)))


def test_training_panel():
    panel = M.training_panel(autorun=False, epochs=10)
    assert "press <b>Train</b>" in panel.status.value
    panel.controls["loss"].value = "any_bacc"
    assert panel.controls["beta"].layout.display == "none"
    runs = panel.train()
    assert list(runs) == ["bce", "wbce", "any_bacc"] and all(len(r.scores["f1"]) == 8 for r in runs.values())
    assert "Any-BAcc" in panel.status.value


def test_bayes_logits_are_the_posterior_log_odds():
    """log p(y=1|x)/p(y=0|x) from the two Gaussian densities and the prior, for the two-Gaussian task."""
    x = torch.randn(50, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    pi, delta = 0.05, 2.0
    log_pos = -0.5 * ((x[:, 0] - delta) ** 2 + x[:, 1] ** 2) + math.log(pi)
    log_neg = -0.5 * (x[:, 0] ** 2 + x[:, 1] ** 2) + math.log(1 - pi)
    assert torch.allclose(M.bayes_logits(x, pos_rate=pi, delta=delta), log_pos - log_neg, atol=1e-12)
    limit = M.calibrated_scores(seeds=(0, 1))
    assert limit["f1"].shape == (2,) and (0.3 < limit["f1"]).all() and (limit["f1"] < 0.6).all()
