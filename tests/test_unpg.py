"""UNPG against a loop written from the paper's formula (values and gradients), the literal
concatenation of the official code, the loss's exact properties, bad input, training and panels."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import lossviz as lv
from lossviz import margins
from lossviz.papers import unpg
from _util import drawn_artists, same_artists


def unpg_ref(C, S, labels, *, s, m, w, kind):
    """Loss, dL/dS and dL/dC by loops: negatives a < b, sorted, quartiles by integer index, the kept
    pairs appended to every row's softmax; the gradients in closed form."""
    B, K = C.shape
    y = [int(v) for v in labels]
    negs = [(a, b) for a in range(B) for b in range(a + 1, B) if y[a] != y[b]]
    vals = sorted(float(S[a, b]) for a, b in negs)
    if negs and w != math.inf:
        q1, q3 = vals[int(0.25 * len(vals))], vals[int(0.75 * len(vals))]
        lo, hi = q1 - w * (q3 - q1), q3 + w * (q3 - q1)
    else:
        lo, hi = -math.inf, math.inf
    kept = [(a, b) for a, b in negs if lo <= float(S[a, b]) <= hi]
    total, dS, dC = 0.0, torch.zeros(B, B, dtype=torch.float64), torch.zeros(B, K, dtype=torch.float64)
    for i in range(B):
        theta = math.acos(float(C[i, y[i]]))
        psi, factor = {"arcface": (math.cos(theta + m), math.sin(theta + m) / math.sin(theta)),
                       "cosface": (math.cos(theta) - m, 1.0)}[kind]
        terms = [s * psi] + [s * float(C[i, k]) for k in range(K) if k != y[i]] + [s * float(S[a, b]) for a, b in kept]
        top = max(terms)
        lse = top + math.log(sum(math.exp(t - top) for t in terms))
        total += lse - s * psi
        for k in range(K):
            p = math.exp(s * (psi if k == y[i] else float(C[i, k])) - lse)
            dC[i, k] += s / B * ((p - 1) * factor if k == y[i] else p)
        for a, b in kept:
            dS[a, b] += s / B * math.exp(s * float(S[a, b]) - lse)
    return total / B, dS, dC


def batch(seed, b=10, k=6, d=4, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(b, d, generator=g, dtype=dtype)
    W = torch.randn(k, d, generator=g, dtype=dtype)
    y = torch.randint(0, k, (b,), generator=g)
    return margins.cosine_logits(emb, W), lv.similarity(emb), y


@pytest.mark.parametrize("kind", unpg.KINDS)
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("s,m,w", [(8.0, 0.3, 1.5), (30.0, 0.5, 0.0), (64.0, 0.2, math.inf), (16.0, 0.0, 0.5)])
def test_values_and_gradients_equal_the_loop_reference(kind, seed, s, m, w):
    C, S, y = batch(seed)
    knobs = dict(s=s, m=m, w=w, kind=kind)
    ref, dS, dC = unpg_ref(C, S, y, **knobs)
    assert float(unpg.unpg_loss(C, S, y, **knobs)) == pytest.approx(ref, rel=1e-10, abs=1e-10)
    got = unpg.unpg_weights(C, S, y, **knobs)
    assert torch.allclose(got.S, dS, rtol=1e-9, atol=1e-14)
    assert torch.allclose(got.C, dC, rtol=1e-9, atol=1e-14)


def test_one_column_equals_the_literal_concatenation_of_the_official_code():
    """Appending logsumexp(s S^n') once = appending the sorted, filtered S^n' to every row."""
    g = torch.Generator().manual_seed(5)
    emb = torch.randn(32, 6, generator=g, dtype=torch.float64, requires_grad=True)
    W = torch.randn(9, 6, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 9, (32,), generator=g)
    s, m, w = 30.0, 0.3, 1.5

    def literal():
        f = F.normalize(emb, dim=1)
        C, S = f @ F.normalize(W, dim=1).T, f @ f.T
        sn = S[(y[:, None] != y[None, :]).triu(1)]
        ordered = torch.sort(sn)[0]
        L = ordered.numel()
        q1, q3 = ordered[int(0.25 * L)], ordered[int(0.75 * L)]
        sn_prime = ordered[(ordered <= q3 + w * (q3 - q1)) & (ordered >= q1 - w * (q3 - q1))]
        logits = torch.cat([margins.margin_logits(C, y, s=s, m=m), s * torch.ones(32, 1, dtype=S.dtype) * sn_prime], 1)
        return F.cross_entropy(logits, y), logits.shape[1]

    ref, width = literal()
    ours = unpg.unpg_loss(margins.cosine_logits(emb, W), lv.similarity(emb), y, s=s, m=m, w=w)
    logits = unpg.unpg_logits(margins.cosine_logits(emb, W), lv.similarity(emb), y, s=s, m=m, w=w)
    assert logits.shape[1] == 9 + 1 < width
    assert float(ours.detach()) == pytest.approx(float(ref.detach()), rel=1e-12)
    g_ref = torch.autograd.grad(ref, (emb, W))
    g_ours = torch.autograd.grad(ours, (emb, W))
    for a, b in zip(g_ours, g_ref):
        assert torch.allclose(a, b, atol=1e-12)


def test_quartiles_are_the_official_integer_index_not_interpolated():
    values = torch.tensor([7.0, 0.0, 9.0, 3.0, 1.0, 5.0, 2.0, 8.0, 6.0, 4.0])   # L = 10
    win = unpg.whisker_window(values, 0.0)
    assert (float(win.q1), float(win.q3)) == (2.0, 7.0)                        # sorted[2], sorted[7]
    assert (float(torch.quantile(values, 0.25)), float(torch.quantile(values, 0.75))) == (2.25, 6.75)
    assert float(unpg.index_quantile(values, 0.25)) == 2.0
    win = unpg.whisker_window(values, 0.2)                                       # IQR 5: [1, 8]
    assert (float(win.lo), float(win.hi)) == (1.0, 8.0)
    assert unpg.whisker_window(values, math.inf).hi == math.inf


@pytest.mark.parametrize("q", [0.0, 0.25, 0.5, 0.75, 0.99])
def test_order_statistics_equal_indexing_the_sorted_values_with_ties(q):
    values = torch.randint(0, 7, (101,), generator=torch.Generator().manual_seed(3)).double()
    assert float(unpg.index_quantile(values, q)) == float(values.sort().values[int(q * 101)])
    win = unpg.whisker_window(values, 1.0)
    ordered = values.sort().values
    assert (float(win.q1), float(win.q3)) == (float(ordered[101 // 4]), float(ordered[(3 * 101) // 4]))


def test_face_data_appends_identity_independent_noise_to_the_clean_identities():
    clean, noisy = lv.data.load("ids"), unpg.face_data()
    assert noisy.x_train.shape == (3600, 32 + unpg.NOISE_DIMS) and noisy.x_test.shape == (1200, 32 + unpg.NOISE_DIMS)
    assert torch.equal(noisy.x_train[:, :32], clean.x_train) and torch.equal(noisy.x_test[:, :32], clean.x_test)
    assert torch.equal(noisy.y_train, clean.y_train) and torch.equal(noisy.y_test, clean.y_test)
    noise = noisy.x_train[:, 32:].double()
    assert abs(float(noise.mean())) < 0.03 and abs(float(noise.std()) - unpg.NOISE_SCALE) < 0.03
    class_means = torch.stack([noise[noisy.y_train == k].mean(0) for k in range(300)])
    assert float(class_means.var(0).mean()) == pytest.approx(1 / 12, rel=0.15)   # as for noise: var / 12 per class
    assert unpg.face_data() is noisy and torch.equal(unpg.face_data(seed=1).x_train[:, :32], clean.x_train)
    assert not torch.equal(unpg.face_data(seed=1).x_train, noisy.x_train)
    assert torch.equal(unpg.face_data(0).x_train, clean.x_train)
    assert torch.equal(unpg.face_data(4, 2.0).x_test[:, 32:] / 2, unpg.face_data(4, 1.0).x_test[:, 32:])
    # the nuisance features drown the raw cosine: verification of unseen identities falls a long way
    assert lv.metrics.tar_at_far(noisy.x_test, noisy.y_test, 1e-2) < lv.metrics.tar_at_far(clean.x_test, clean.y_test, 1e-2) - 0.2


@pytest.mark.parametrize("seed", range(4))
def test_kept_count_is_non_decreasing_in_w_and_a_huge_w_keeps_every_pair(seed):
    _, S, y = batch(seed, b=48, k=12, d=5)
    ws = [0.0, 0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 1e3, math.inf]
    counts = unpg.kept_counts(S, y, ws)
    n_neg = int(unpg.negative_pairs(y).sum())
    assert list(counts) == sorted(counts)
    assert counts[-2] == counts[-1] == n_neg and counts[0] < n_neg


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_weights_are_exactly_zero_off_the_kept_pairs_and_equal_the_closed_form(dtype):
    C, S, y = batch(7, b=40, k=8, d=4, dtype=dtype)
    s = 30.0
    kept = unpg.kept_pairs(S, y, w=0.5)
    neg = unpg.negative_pairs(y)
    wts = unpg.unpg_weights(C, S, y, s=s, m=0.3, w=0.5)
    assert 0 < int(kept.sum()) < int(neg.sum())
    assert bool((wts.S[~kept] == 0).all())                 # filtered pairs, positives, diagonal, lower triangle
    assert bool((wts.S[lv.pair_masks(y)[0]] == 0).all()) and bool((wts.S[kept] > 0).all())
    p = unpg.unpg_logits(C, S, y, s=s, m=0.3, w=0.5).softmax(dim=1)[:, -1:]  # each row's mass on all kept pairs
    share = torch.softmax(s * S[kept], dim=0)                                 # ... split as e^{sv}
    closed = s / len(y) * (p * share).sum(dim=0)                              # (s/B) sum_i p_iv
    assert torch.allclose(wts.S[kept], closed, rtol=1e-5, atol=1e-6)
    via_gpw = lv.pair_weights(lambda S_, y_: unpg.unpg_loss(C, S_, y_, s=s, m=0.3, w=0.5), S, y, signed=True)
    assert torch.allclose(via_gpw, wts.S)


def test_a_batch_of_one_identity_is_plain_arcface():
    C, S, _ = batch(3, b=8)
    y = torch.full((8,), 2)
    assert not unpg.kept_pairs(S, y).any()
    assert torch.equal(unpg.unpg_loss(C, S, y, s=30.0, m=0.3), margins.margin_softmax_loss(C, y, s=30.0, m=0.3))
    assert torch.equal(unpg.unpg_weights(C, S, y, s=30.0, m=0.3).S, torch.zeros_like(S))
    with pytest.raises(ValueError, match="S\\^n is empty"):
        unpg.whisker_window(torch.zeros(0), 1.5)


def test_gradients_through_the_embeddings_pass_gradcheck():
    g = torch.Generator().manual_seed(4)
    emb = torch.randn(6, 3, generator=g, dtype=torch.float64, requires_grad=True)
    W = torch.randn(3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    for kind in unpg.KINDS:
        assert torch.autograd.gradcheck(
            lambda e, w: unpg.unpg_loss(margins.cosine_logits(e, w), lv.similarity(e), y, s=8.0, m=0.3, w=0.5, kind=kind),
            (emb, W))


def test_negative_mass_and_target_probability_sum_to_one():
    C, S, y = batch(2, b=20)
    proxy, batch_ = unpg.negative_mass(C, S, y, s=16.0, m=0.3)
    target = unpg.unpg_logits(C, S, y, s=16.0, m=0.3).softmax(1).gather(1, y[:, None]).mean()
    assert proxy > 0 and batch_ > 0 and proxy + batch_ + float(target) == pytest.approx(1.0)


@pytest.mark.parametrize("call,match", [
    (lambda C, S, y: unpg.unpg_loss(C, S[:, :-1], y), "B x B"),
    (lambda C, S, y: unpg.unpg_loss(C[:-1], S[:-1, :-1], y), "labels must have shape"),
    (lambda C, S, y: unpg.unpg_loss(C, S, y.double()), "integer class ids"),
    (lambda C, S, y: unpg.unpg_loss(C, S, y, w=-1.0), "w \\(the whisker width"),
    (lambda C, S, y: unpg.unpg_loss(C, S, y, s=0.0), "s \\(the scale\\) must be > 0"),
    (lambda C, S, y: unpg.unpg_loss(C, S * float("nan"), y), "NaN"),
    (lambda C, S, y: unpg.unpg_loss(C, 3 * S, y), "L2-normalised"),
    (lambda C, S, y: unpg.unpg_loss(C, S, y, kind="normface"), "unknown kind 'normface'"),
    (lambda C, S, y: unpg.index_quantile(S.reshape(-1), 1.0), "q must be in"),
    (lambda C, S, y: unpg.train_faces(batch=1), "batch must be an integer >= 2"),
    (lambda C, S, y: unpg.train_faces(kind="sphereface"), "unknown kind 'sphereface'"),
    (lambda C, S, y: unpg.train_faces(noise_dims=-1), "noise_dims must be an integer >= 0"),
    (lambda C, S, y: unpg.face_data(16, -1.0), "noise_scale"),
])
def test_bad_input_gets_a_clear_error(call, match):
    C, S, y = batch(0)
    with pytest.raises(ValueError, match=match):
        call(C, S, y)


def test_training_is_deterministic_cached_and_records_what_it_says(one_thread):
    kw = dict(iters=20, eval_every=10, seed=1, progress=False)
    a = unpg.train_faces(unpg=True, cache=False, **kw)
    b = unpg.train_faces(unpg=True, cache=False, **kw)
    assert np.array_equal(a.history["loss"], b.history["loss"]) and a.tar(1e-2) == b.tar(1e-2)
    assert list(a.evals["iter"]) == [0, 10, 20] and len(a.history["loss"]) == 20
    assert np.all((a.history["kept"] > 0) & (a.history["kept"] <= 1)) and list(a.history["kept_iter"]) == [10, 20]
    assert a.params["noise_dims"] == unpg.NOISE_DIMS and a.net[0].in_features == 32 + unpg.NOISE_DIMS
    first = unpg.train_faces(unpg=False, **kw)
    assert unpg.train_faces(unpg=False, **kw) is first
    assert first.name == "ArcFace" and a.name == "ArcFace + UNPG" and "TAR@1e-2" in repr(a)
    C, S, y = a.view(*unpg.probe_batch())
    assert C.shape == (128, 300) and S.shape == (128, 128)
    assert unpg.mismatch(C, S, y) == (a.evals["p99_batch"][-1], a.evals["p99_proxy"][-1])


def test_explore_panel_redraws_on_every_knob():
    C, S, y = batch(1, b=40, k=8, d=4)
    panel = unpg.explore_panel(C, S, y, s=30.0, w=0.0)
    drawn = drawn_artists(panel.fig)
    kept = [panel.state["kept"]]
    for w in (0.5, 1.5, 3.0):
        panel.controls["w"].value = w
        kept.append(panel.state["kept"])
    assert kept == sorted(kept) and kept[0] < kept[-1]
    assert panel.state["kept"] == int(unpg.kept_pairs(S, y, w=3.0).sum())
    before = panel.state["weights"].S.clone()
    panel.controls["s"].value = 16.0
    assert not torch.equal(before, panel.state["weights"].S)
    panel.controls["filter"].value = False
    assert panel.state["kept"] == int(unpg.negative_pairs(y).sum()) and panel.state["knobs"]["w"] == math.inf
    panel.controls["kind"].value = "cosface"
    assert panel.state["knobs"]["kind"] == "cosface" and "kept" in panel.status.value
    assert same_artists(drawn, drawn_artists(panel.fig)), "the knobs move the artists, never rebuild them"


def test_training_panel_trains_caches_and_flags_stale_settings(one_thread):
    panel = unpg.training_panel(iters=10, autorun=False)
    assert panel.state["status"].startswith("press")
    base, run = panel.train()
    assert run.params["unpg"] and not base.params["unpg"] and run.params["iters"] == 10
    assert "TAR@1e-2" in panel.status.value and len(panel.fig.axes[1].lines) == 2
    panel.controls["w"].value = 3.0
    assert panel.state["stale"]
    assert panel.train()[1].params["w"] == 3.0
    panel.controls["w"].value = 1.5
    assert panel.train()[1] is run                       # a setting already trained: from the cache
