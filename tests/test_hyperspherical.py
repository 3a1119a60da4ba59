"""Hyperspherical embedding for novel classes: imprinting against a loop written from the formula
(and the order of its two normalisations), the capacity bound against a numeric optimum, novel-class
accuracy on constructed cases, the training loop on a tiny problem, the panels, and bad input."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lossviz import data, margins
from lossviz.papers import hyperspherical as H
from lossviz import train as T

TINY = dict(dim=8, iters=30, eval_every=10, progress=False)


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)
    T.clear_cache()
    yield
    T.clear_cache()


# --- imprinting -----------------------------------------------------------------------------------

def imprint_ref(emb, labels):
    """w_c = mu_c / |mu_c|, mu_c = mean of e_i / |e_i| over class c: a loop over classes and samples."""
    rows = []
    for c in sorted(set(labels.tolist())):
        unit = [emb[i] / math.sqrt(float((emb[i] ** 2).sum())) for i in range(len(labels)) if int(labels[i]) == c]
        mu = sum(unit) / len(unit)
        rows.append(mu / math.sqrt(float((mu ** 2).sum())))
    return torch.stack(rows)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_imprint_equals_the_loop_reference(seed):
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(30, 5, generator=g, dtype=torch.float64) * torch.rand(30, 1, generator=g, dtype=torch.float64) * 10
    labels = torch.randint(0, 4, (30,), generator=g) * 3 + 1            # class ids need not be 0..C-1
    weights, classes = H.imprint(emb, labels)
    assert classes.tolist() == sorted(set(labels.tolist()))
    assert torch.allclose(weights, imprint_ref(emb, labels), atol=1e-12)
    assert torch.allclose(weights.norm(dim=1), torch.ones(len(classes), dtype=torch.float64))
    raw, _ = H.imprint(emb, labels, normalize=False)
    assert torch.allclose(raw[0], emb[labels == classes[0]].mean(0), atol=1e-12)


def test_imprinting_order_matters_unless_the_embeddings_are_unit_vectors():
    emb = torch.tensor([[1.0, 0.0], [0.0, 10.0]], dtype=torch.float64)   # one short, one long embedding
    labels = torch.tensor([0, 0])
    right, _ = H.imprint(emb, labels)                                     # normalise, average, normalise
    average_first = F.normalize(H.imprint(emb, labels, normalize=False)[0], dim=1)
    assert torch.allclose(right, torch.tensor([[1.0, 1.0]], dtype=torch.float64) / math.sqrt(2))
    assert float(right @ average_first.T) < 0.8                           # the long embedding pulled the mean
    unit = F.normalize(torch.randn(20, 4, dtype=torch.float64), dim=1)
    y = torch.arange(20) % 3
    assert torch.allclose(H.imprint(unit, y)[0], F.normalize(H.imprint(unit, y, normalize=False)[0], dim=1))


def test_imprint_rejects_bad_input():
    emb = torch.randn(4, 3)
    with pytest.raises(ValueError, match="integer class ids"):
        H.imprint(emb, torch.tensor([0.0, 1.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match="NaN or Inf"):
        H.imprint(torch.full((4, 3), float("nan")), torch.tensor([0, 1, 0, 1]))
    with pytest.raises(ValueError, match="all zeros"):
        H.imprint(torch.zeros(4, 3), torch.tensor([0, 1, 0, 1]))
    with pytest.raises(ValueError, match="2 dimensions"):
        H.imprint(torch.randn(4), torch.tensor([0, 1, 0, 1]))
    with pytest.raises(ValueError, match="at least one example"):
        H.imprint(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))


# --- the capacity bound ---------------------------------------------------------------------------

def test_capacity_bound_values_and_shapes():
    p_y, floor = H.capacity_bound(1.0, 8)
    assert floor == pytest.approx(math.log(1 + 7 * math.exp(-8 / 7)), rel=1e-12)
    assert (round(p_y, 2), round(floor, 2)) == (0.31, 1.17)
    for s, expected in ((3, 0.815), (5, 0.977), (10, 0.9999)):
        assert H.capacity_bound(s, 8)[0] == pytest.approx(expected, abs=5e-4)
    p, f = H.capacity_bound(np.array([1.0, 1000.0]), 10)
    assert p.shape == f.shape == (2,) and np.isfinite(f).all() and f[1] == pytest.approx(0.0, abs=1e-300)
    assert np.allclose(p, np.exp(-f))


@pytest.mark.parametrize("s,K", [(1.0, 3), (2.0, 5), (3.0, 4)])
def test_capacity_bound_equals_the_numeric_optimum(s, K):
    """Free unit weights and one unit feature per class, optimised by L-BFGS from a random start:
    the lowest class-balanced loss is the bound, reached on a regular simplex."""
    torch.manual_seed(0)
    U = torch.randn(K, K, dtype=torch.float64, requires_grad=True)   # class weights
    V = torch.randn(K, K, dtype=torch.float64, requires_grad=True)   # features, one per class
    opt = torch.optim.LBFGS([U, V], max_iter=500, tolerance_grad=1e-12, tolerance_change=1e-15,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = H.class_balanced_loss(F.normalize(V, dim=1) @ F.normalize(U, dim=1).T, torch.arange(K), s=s)
        loss.backward()
        return loss

    for _ in range(5):
        best = float(opt.step(closure).detach())
    floor = H.capacity_bound(s, K)[1]
    assert best == pytest.approx(floor, rel=1e-6)
    W = F.normalize(U.detach(), dim=1)
    off = (W @ W.T)[~torch.eye(K, dtype=torch.bool)]
    assert torch.allclose(off, torch.full_like(off, -1 / (K - 1)), atol=1e-3)   # a regular simplex


def test_no_features_beat_the_bound_but_an_unbalanced_batch_can():
    g = torch.Generator().manual_seed(1)
    K, s = 4, 2.0
    floor = H.capacity_bound(s, K)[1]
    for _ in range(200):
        W = F.normalize(torch.randn(K, 3, generator=g, dtype=torch.float64), dim=1)
        y = torch.cat([torch.arange(K), torch.randint(0, K, (8,), generator=g)])
        feats = F.normalize(W[y] + 0.3 * torch.randn(len(y), 3, generator=g, dtype=torch.float64), dim=1)
        assert float(H.class_balanced_loss(feats @ W.T, y, s=s)) >= floor
    # One class alone, its weight opposite the others: a plain batch mean below the bound.
    W = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [-1.0, 0.0]], dtype=torch.float64)
    cos = torch.tensor([[1.0, 0.0]] * 4, dtype=torch.float64) @ W.T
    assert float(margins.normface_loss(cos, torch.zeros(4, dtype=torch.long), s=1.0)) < H.capacity_bound(1.0, 3)[1]
    with pytest.raises(ValueError, match="every class"):
        H.class_balanced_loss(cos, torch.zeros(4, dtype=torch.long), s=1.0)


def test_capacity_bound_rejects_bad_input():
    with pytest.raises(ValueError, match="must be finite and > 0"):
        H.capacity_bound(0.0, 8)
    with pytest.raises(ValueError, match="must be finite and > 0"):
        H.capacity_bound(np.array([1.0, float("nan")]), 8)
    with pytest.raises(ValueError, match="integer >= 2"):
        H.capacity_bound(1.0, 1)
    with pytest.raises(ValueError, match="integer >= 2"):
        H.capacity_bound(1.0, 8.0)
    with pytest.raises(ValueError, match="outside"):
        H.class_balanced_loss(torch.full((2, 2), 3.0), torch.tensor([0, 1]), s=1.0)


# --- support / query and novel-class accuracy -----------------------------------------------------

def test_support_query_draws_shots_per_class_deterministically():
    labels = torch.arange(40) % 4
    support, query = H.support_query(labels, 3, seed=5)
    assert torch.bincount(labels[support]).tolist() == [3, 3, 3, 3]
    assert sorted(torch.cat([support, query]).tolist()) == list(range(40))
    again, _ = H.support_query(labels, 3, seed=5)
    other, _ = H.support_query(labels, 3, seed=6)
    assert torch.equal(support, again) and not torch.equal(support, other)
    with pytest.raises(ValueError, match="leave no query"):
        H.support_query(labels, 10)
    with pytest.raises(ValueError, match="shots must be an integer"):
        H.support_query(labels, 0)


def clusters(norms=(1.0, 1.0, 1.0, 1.0), degrees=(0, 90, 180, 270), n=12, seed=0):
    """Four tight 2-D clusters around unit directions at ``degrees``; class c scaled by norms[c]."""
    g = torch.Generator().manual_seed(seed)
    rad = torch.tensor(degrees, dtype=torch.float64) * math.pi / 180
    centres = torch.stack([rad.cos(), rad.sin()], dim=1)
    y = torch.arange(4).repeat_interleave(n)
    emb = (centres[y] + 0.05 * torch.randn(len(y), 2, generator=g, dtype=torch.float64)) * torch.tensor(norms)[y, None]
    return emb, y, centres


def test_novel_class_accuracy_joint_and_disjoint_on_separable_clusters():
    emb, y, centres = clusters()
    joint = H.novel_class_accuracy(emb, y, [3], shots=2, base_weights=centres[:3])
    assert joint["accuracy"] == joint["novel_accuracy"] == joint["base_accuracy"] == 1.0
    assert joint["classes"].tolist() == [0, 1, 2, 3] and joint["confusion"].sum() == len(y) - 4 * 2
    assert torch.equal(joint["weights"][:3], centres[:3])
    disjoint = H.novel_class_accuracy(emb, y, [2, 3], scenario="disjoint", shots=2)
    assert disjoint["classes"].tolist() == [2, 3] and disjoint["confusion"].sum() == 2 * (12 - 2)
    assert "base_accuracy" not in disjoint and disjoint["accuracy"] == 1.0
    every = H.novel_class_accuracy(emb, y, [3], shots=2)                  # no classifier: all imprinted
    assert every["accuracy"] == 1.0


def test_a_long_raw_mean_swallows_the_other_classes():
    emb, y, centres = clusters(norms=(1.0, 1.0, 1.0, 10.0), degrees=(0, 90, 180, 45))  # novel: 10x longer
    raw = H.novel_class_accuracy(emb, y, [3], shots=2, base_weights=centres[:3], normalize=False)
    cosine = H.novel_class_accuracy(emb, y, [3], shots=2, base_weights=centres[:3], normalize=True)
    assert cosine["accuracy"] == 1.0
    assert raw["novel_accuracy"] == 1.0 and raw["base_accuracy"] < 1.0
    assert raw["confusion"][0, 3] > 0 and raw["confusion"][1, 3] > 0      # its neighbours go to class 3
    assert raw["confusion"][2, 2] == 12 - 2                                # the class behind it is safe


def test_novel_class_accuracy_rejects_bad_input():
    emb, y, centres = clusters()
    with pytest.raises(ValueError, match="unknown scenario 'both'"):
        H.novel_class_accuracy(emb, y, [3], scenario="both")
    with pytest.raises(ValueError, match="classes present"):
        H.novel_class_accuracy(emb, y, [7])
    with pytest.raises(ValueError, match="classes present"):
        H.novel_class_accuracy(emb, y, [])
    with pytest.raises(ValueError, match=r"base_weights must be 3 x 2"):
        H.novel_class_accuracy(emb, y, [3], base_weights=centres)


# --- data -----------------------------------------------------------------------------------------

def test_novel_splits_are_registered_and_hold_base_classes_only_in_training():
    split = data.load("digits_8+2")
    assert sorted(set(split.y_train.tolist())) == list(range(8))
    assert sorted(set(split.y_test.tolist())) == list(range(10)) and H.novel_classes(split) == [8, 9]
    assert H.novel_classes(data.load("digits_5+5")) == [5, 6, 7, 8, 9]
    assert torch.equal(data.load("digits_8+2").x_train, split.x_train)   # deterministic
    with pytest.raises(ValueError, match="n_base must be"):
        data.digits_novel(10)


# --- training -------------------------------------------------------------------------------------

def test_training_records_history_and_keeps_the_weights_on_the_sphere():
    run = H.train_classifier("digits_8+2", s=10.0, **TINY)
    h, e = run.history, run.evals
    assert h["iter"].tolist() == list(range(1, 31))
    assert e["iter"].tolist() == [0, 10, 20, 30]
    assert h["norm_err"].max() < 1e-6 and h["max_logit"].max() <= 10.0 * (1 + 1e-6)
    assert e["train_loss"][-1] < e["train_loss"][0] and e["base_acc"][-1] > 0.5 and run.final("base_acc") > 0.5
    assert set(run.snapshots) == {0, 10, 20, 30} and run.snapshots[30].shape == (len(data.load("digits_8+2").y_train),)
    assert ((0 <= e["joint_acc"]) & (e["joint_acc"] <= 1)).all() and "disjoint_acc" in e
    assert torch.allclose(run.embed(data.load("digits_8+2").x_test).norm(dim=1), torch.ones(1), atol=1e-5)
    assert "joint acc" in repr(run)
    split = data.load("digits_8+2")
    assert -1 <= run.centre_cosine(split) < 1
    run.weight = H.imprint(run.embed(split.x_train), split.y_train)[0]   # weights in the middle of the clusters
    assert run.centre_cosine(split) == pytest.approx(1.0, abs=1e-6)


def test_training_is_cached_and_deterministic():
    a = H.train_classifier("digits_8+2", **TINY)
    assert H.train_classifier("digits_8+2", **TINY) is a
    T.clear_cache()
    b = H.train_classifier("digits_8+2", **TINY)
    assert b is not a and np.array_equal(a.history["loss"], b.history["loss"])


def test_projection_and_forward_normalisation_share_logits_not_gradients():
    """Same start and batch: the first loss agrees; the gradient through F.normalize is the
    tangent part (I - w w^T) g of the projected mode's gradient, so the runs then part."""
    p = H.train_classifier("digits_8+2", mode="project", **TINY)
    f = H.train_classifier("digits_8+2", mode="forward", **TINY)
    assert p.history["loss"][0] == pytest.approx(f.history["loss"][0], rel=1e-6)
    assert not np.allclose(p.history["loss"][5:], f.history["loss"][5:])
    assert f.history["norm_err"].max() > 1e-4                            # the raw W leaves the sphere
    g = torch.Generator().manual_seed(0)
    w = F.normalize(torch.randn(4, 3, generator=g, dtype=torch.float64), dim=1).requires_grad_(True)
    e, y = torch.randn(6, 3, generator=g, dtype=torch.float64), torch.tensor([0, 1, 2, 3, 0, 1])
    (g_raw,) = torch.autograd.grad(margins.normface_loss(F.normalize(e, dim=1) @ w.T, y, s=5.0), w)
    (g_fwd,) = torch.autograd.grad(margins.normface_loss(margins.cosine_logits(e, w), y, s=5.0), w)
    tangent = g_raw - (g_raw * w).sum(1, keepdim=True) * w
    assert torch.allclose(g_fwd, tangent, atol=1e-12) and not torch.allclose(g_fwd, g_raw)


def test_at_scale_one_the_class_balanced_loss_stays_above_the_bound():
    run = H.train_classifier("digits_8+2", s=1.0, **TINY)
    assert (run.evals["train_loss"] >= H.capacity_bound(1.0, 8)[1]).all()
    assert ((0 < run.snapshots[30]) & (run.snapshots[30] < 1.0)).all()    # s (1 - p_y) < s = 1: nobody is done


def test_the_unnormalised_mode_keeps_raw_features_and_imprints_raw_means():
    run = H.train_classifier("digits_8+2", mode="none", **TINY)
    split = data.load("digits_8+2")
    assert not torch.allclose(run.embed(split.x_test).norm(dim=1), torch.ones(1), atol=1e-2)
    res = run.novel(split)
    assert torch.equal(res["weights"][:8], run.weight)
    assert not torch.allclose(res["weights"].norm(dim=1), torch.ones(1), atol=1e-2)


def test_train_classifier_rejects_bad_input():
    with pytest.raises(ValueError, match="unknown mode 'keras'"):
        H.train_classifier("digits_8+2", mode="keras", **TINY)
    with pytest.raises(ValueError, match=r"s \(the scale\) must be > 0"):
        H.train_classifier("digits_8+2", s=0.0, **TINY)
    with pytest.raises(ValueError, match="unknown dataset"):
        H.train_classifier("cifar", **TINY)
    with pytest.raises(ValueError, match="dim must be an integer"):
        H.train_classifier("digits_8+2", dim=0, iters=2)


def test_novel_benchmark_compares_every_method_on_the_same_queries():
    tab = H.novel_benchmark("digits_8+2", seeds=(0,), dim=8, iters=10)
    assert list(tab) == ["normalised softmax", "unnormalised softmax", "triplet", "untrained network", "raw pixels"]
    assert all(v.shape == (1,) and 0 <= v[0] <= 1 for v in tab.values())
    novel = H.novel_benchmark("digits_8+2", seeds=(0,), dim=8, iters=10, metric="novel_accuracy")
    split = data.load("digits_8+2")
    pixels = H.novel_class_accuracy(split.x_test, split.y_test, [8, 9], seed=0)
    assert novel["raw pixels"][0] == pixels["novel_accuracy"] and tab["raw pixels"][0] == pixels["accuracy"]
    with pytest.raises(ValueError, match="unknown metric 'recall'"):
        H.novel_benchmark("digits_8+2", metric="recall")


def test_novel_benchmark_evaluations_do_not_change_the_training():
    every_step = H.novel_benchmark("digits_8+2", seeds=(1,), dim=8, iters=10, eval_every=2)
    ends_only = H.novel_benchmark("digits_8+2", seeds=(1,), dim=8, iters=10)
    assert all(np.array_equal(every_step[k], ends_only[k]) for k in every_step)


def test_the_untrained_control_is_the_classifiers_starting_network():
    split = data.load("digits_8+2")
    torch.manual_seed(3)                                          # what the Trainer of train_classifier does
    start, _ = H._network(split.x_train, 8, 8, "project")
    state = torch.get_rng_state()
    control = H._untrained(split.x_train, 8, 3)
    assert torch.equal(torch.get_rng_state(), state)              # the global RNG is left alone
    with torch.no_grad():
        assert torch.equal(control(split.x_test), start.eval()(split.x_test))
    tab = H.novel_benchmark("digits_8+2", seeds=(3,), dim=8, iters=2)
    expected = H.novel_class_accuracy(control(split.x_test), split.y_test, [8, 9], seed=3)["accuracy"]
    assert tab["untrained network"][0] == expected


def drawn(fig) -> list:
    """The artists in a panel's axes: a pure-maths panel moves these on a change, never replaces them."""
    return [a for ax in fig.axes for a in (*ax.lines, *ax.collections, *ax.patches, *ax.images, *ax.texts)]


def test_bound_panel_redraws_on_every_control():
    panel = H.bound_panel(s=10.0, K=8)
    artists = drawn(panel.fig)
    assert panel.state["p_y"] == pytest.approx(H.capacity_bound(10.0, 8)[0])
    panel.controls["s"].value = 1.0
    assert panel.state["p_y"] == pytest.approx(H.capacity_bound(1.0, 8)[0])
    w = panel.state["weights"]
    assert w.shape == (8,) and float(w.sum()) == pytest.approx(0.0, abs=1e-12) and float(w[0]) < 0
    panel.controls["K"].value = 20
    assert panel.state["weights"].shape == (20,) and "K = 20" in panel.state["status"]
    panel.controls["s"].value = 1000.0                                          # clamped by the slider
    assert panel.controls["s"].value == pytest.approx(64.0)
    per_sample = panel.state["per_sample"]                  # s (1 - p_y) as the target cosine goes -1 -> 1
    assert float(per_sample[0]) == pytest.approx(64.0, rel=1e-6) and float(per_sample[-1]) < 1e-6
    assert drawn(panel.fig) == artists                    # moved in place, nothing rebuilt
    assert sum(bar.get_visible() for bar in panel.fig.axes[1].patches) == 20


def test_training_panel_trains_caches_and_draws_the_circle():
    panel = H.training_panel("digits_8+2", dim=8, iters=20)
    first = panel.state["result"]
    assert 0 <= panel.state["joint"]["accuracy"] <= 1 and not panel.state["stale"]
    panel.controls["shots"].value = 3
    assert panel.state["stale"]
    assert panel.train() is first                                    # only the imprinting changed
    assert panel.state["joint"]["confusion"].sum() == len(data.load("digits_8+2").y_test) - 10 * 3
    panel.controls["dim"].value = 2
    two = panel.train()
    assert two.params["dim"] == 2 and len(panel.fig.axes[2].patches) > 10   # the class sectors


def test_sphere_view_needs_two_dimensions():
    import matplotlib.figure

    run = H.train_classifier("digits_8+2", **TINY)
    ax = matplotlib.figure.Figure().subplots()
    with pytest.raises(ValueError, match="2-D"):
        H.sphere_view(ax, run, data.load("digits_8+2"))
