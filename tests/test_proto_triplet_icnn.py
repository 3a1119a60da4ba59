"""lossviz.papers.proto_triplet_icnn: ProtoNet CE, Proto-Triplet and the ICNN score against slow loops written from
the paper's formulas (values and gradients, float64), the episode sampler, the combination of
terms, evaluation, a tiny training run, bad input, and both panels driven without a browser.

pytorch-metric-learning has no prototype-based loss, so there is no library to compare with here."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

import lossviz as lv
from lossviz.papers import proto_triplet_icnn as fs
from _util import drawn_artists, same_artists

F64 = torch.float64

pytestmark = pytest.mark.usefixtures("one_thread")      # tests/conftest.py: one torch thread, empty cache


# ------------------------------------------------------------------------------------------------
# Slow references, one query / one point at a time
# ------------------------------------------------------------------------------------------------

def protonet_ref(D, y, T=1.0):
    total = 0.0
    for q in range(D.shape[0]):
        logits = [-(D[q, k] ** 2) / T for k in range(D.shape[1])]
        top = max(float(v.detach()) for v in logits)
        lse = top + torch.log(sum(torch.exp(v - top) for v in logits))
        total = total + lse - logits[int(y[q])]
    return total / D.shape[0]


def proto_triplet_ref(D, y, m=0.5):
    total = 0.0
    for q in range(D.shape[0]):
        own = D[q, int(y[q])]
        others = [D[q, k] for k in range(D.shape[1]) if k != int(y[q])]
        nearest = min(others, key=lambda t: float(t.detach()))
        total = total + torch.clamp(own - nearest + m, min=0)
    return total / D.shape[0]


def icnn_ref(P, y, T_=None, yT=None, k=4, ipc=None, drop_first=True):
    """The ICNN score, point by point, from the formulas of the paper's code (modified_score)."""
    if T_ is None:
        T_, yT = P, y
    M = T_.shape[0]
    reduced = k + 2 >= M
    k = M - 2 if reduced else k
    ipc = k + 1 if ipc is None else ipc
    rows = []
    for i in range(P.shape[0]):
        d = [torch.sqrt(((P[i] - T_[j]) ** 2).sum() + 1e-6) for j in range(M)]
        order = sorted(range(M), key=lambda j: float(d[j].detach()))
        order = order[1:ipc + 1] if drop_first else order[:ipc]
        rows.append([(d[j], int(yT[j]) == int(y[i])) for j in order])
    same_means = []
    for row in rows:
        diffs = [dd for dd, s in row if not s]
        delta = min(diffs, key=lambda t: float(t.detach())) if diffs else None
        r = [dd / delta if delta is not None else dd * 0 for dd, _ in row[:k]]
        biggest = max(r, key=lambda t: float(t.detach()))
        norm = biggest if float(biggest.detach()) > 1 else 1.0
        n = [v / norm for v in r]
        same = [n[j] for j in range(k) if row[j][1]]
        if same:
            same_means.append(sum(same) / len(same))
    lam_same = 1 - (sum(same_means) / len(same_means) if same_means else 0.0)
    all_diff = [row[j][0] for row in rows for j in range(k) if not row[j][1]]
    if all_diff:
        top = max(all_diff, key=lambda t: float(t.detach()))
        per = []
        for row in rows:
            b = [row[j][0] / top for j in range(k) if not row[j][1]]
            if b:
                per.append(sum(b) / len(b))
        lam_diff = sum(per) / len(per)
    else:
        lam_diff = 1.0
    gamma = 1.0 if reduced else sum(sum(s for _, s in row[:k]) / k for row in rows) / len(rows)
    return ((lam_same + lam_diff) / 2 + gamma) / 2


def random_distances(seed, Q=12, N=5):
    g = torch.Generator().manual_seed(seed)
    D = torch.rand(Q, N, generator=g, dtype=F64) * 2 + 0.05
    y = torch.randint(0, N, (Q,), generator=g)
    return D, y


def clustered(seed, way=4, per=5, dim=3, scale=1.5):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(way, dim, generator=g, dtype=F64) * scale
    y = torch.arange(way).repeat_interleave(per)
    y = y[torch.randperm(len(y), generator=g)]              # classes not contiguous
    return centres[y] + torch.randn(len(y), dim, generator=g, dtype=F64), y


def grad_of(fn, x):
    leaf = x.detach().clone().requires_grad_(True)
    value = fn(leaf)
    (g,) = torch.autograd.grad(value, leaf)
    return value.detach(), g


def check_against(fn, ref, x, *, grad_atol=1e-12):
    """``fn`` and the slow ``ref`` agree on ``x``, in value and gradient; returns the gradient."""
    v, g = grad_of(fn, x)
    v_ref, g_ref = grad_of(ref, x)
    assert torch.allclose(v, v_ref, atol=1e-12), (float(v), float(v_ref))
    assert torch.allclose(g, g_ref, atol=grad_atol), float((g - g_ref).abs().max())
    return g


# ------------------------------------------------------------------------------------------------
# ProtoNet CE and Proto-Triplet
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("temp", [0.3, 1.0, 4.0])
def test_protonet_loss_matches_loop_and_closed_form_gradient(seed, temp):
    D, y = random_distances(seed)
    g = check_against(lambda d: fs.protonet_loss(d, y, T=temp), lambda d: protonet_ref(d, y, temp), D)
    p = torch.softmax(-D ** 2 / temp, dim=1)
    closed = (p - torch.nn.functional.one_hot(y, D.shape[1])) / len(y) * (-2 * D / temp)
    assert torch.allclose(g, closed, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("m", [0.0, 0.5, 1.3])
def test_proto_triplet_matches_loop_and_has_two_weights_per_active_query(seed, m):
    D, y = random_distances(seed)
    g = check_against(lambda d: fs.proto_triplet_loss(d, y, m=m), lambda d: proto_triplet_ref(d, y, m), D)
    act = fs.active_queries(D, y, m)
    Q = len(y)
    assert torch.equal((g != 0).sum(1), 2 * act.long())          # two entries per active query, none else
    assert torch.allclose(g[act].gather(1, y[act, None]), torch.full((int(act.sum()), 1), 1 / Q, dtype=F64))
    assert torch.allclose(g[act].sum(1), torch.zeros(int(act.sum()), dtype=F64))   # the other one is -1/Q
    assert torch.allclose(lv.pair_weights(fs.proto_triplet_loss, D, y, signed=True, m=m), g)


def test_proto_triplet_from_embeddings_against_its_definition():
    z_s, y_s, z_q, y_q = fs.toy_episode(5, 2, 3, scale=1.0, dim=4, seed=3)
    c = fs.prototypes(z_s, y_s)
    for k in range(5):
        assert torch.allclose(c[k], z_s[y_s == k].mean(0))
    D = fs.distances(z_q, c)
    assert torch.allclose(D, torch.cdist(z_q, c).pow(2).add(1e-6).sqrt(), atol=1e-12)
    assert fs.episode_accuracy(D, y_q) == pytest.approx(float((D.argmin(1) == y_q).double().mean()))


def test_zero_distance_keeps_a_finite_gradient():
    z_q = torch.zeros(2, 3, dtype=F64, requires_grad=True)
    c = torch.tensor([[0.0, 0, 0], [1.0, 0, 0]], dtype=F64)
    loss = fs.proto_triplet_loss(fs.distances(z_q, c), torch.tensor([0, 0]), m=2.0)
    loss.backward()
    assert torch.isfinite(z_q.grad).all()


# ------------------------------------------------------------------------------------------------
# ICNN
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("k,ipc", [(4, None), (2, None), (3, 6), (4, 5)])
def test_icnn_score_matches_loop_values_and_gradients(seed, k, ipc):
    P, y = clustered(seed)
    g = check_against(lambda p: fs.icnn_score(p, y, k=k, ipc=ipc), lambda p: icnn_ref(p, y, k=k, ipc=ipc), P,
                      grad_atol=1e-10)
    assert bool((g != 0).any())


@pytest.mark.parametrize("drop_first", [True, False])
def test_icnn_queries_against_a_target_set_and_the_dropped_first_neighbour(drop_first):
    z_s, y_s, z_q, y_q = fs.toy_episode(4, 3, 4, scale=1.0, dim=3, seed=1)
    check_against(lambda q: fs.icnn_score(q, y_q, z_s, y_s, k=3, drop_first=drop_first),
                  lambda q: icnn_ref(q, y_q, z_s, y_s, k=3, drop_first=drop_first), z_q, grad_atol=1e-10)
    nb = fs.icnn_neighbours(z_q, y_q, z_s, y_s, k=3, drop_first=drop_first)
    nearest = torch.cdist(z_q, z_s).argmin(1)
    assert torch.equal(nb.index[:, 0] == nearest, torch.full((len(y_q),), not drop_first))


def test_icnn_reduced_k_sets_gamma_to_one():
    P, y = clustered(0, way=2, per=2)                  # 4 points: k = 4 is reduced to 2
    nb = fs.icnn_neighbours(P, y, k=4)
    assert nb.reduced and nb.k == 2 and nb.D.shape[1] == 3
    assert float(fs.icnn_terms(nb.D, nb.same, k=nb.k, reduced=True)["gamma"]) == 1.0
    assert float(fs.icnn_score(P, y)) == pytest.approx(float(icnn_ref(P, y)), abs=1e-12)


def test_icnn_one_shot_support_set_has_no_same_class_neighbours():
    z = torch.randn(5, 4, dtype=F64, generator=torch.Generator().manual_seed(0))
    terms = fs.icnn_terms(*_nb(z, torch.arange(5)), k=3, reduced=False)
    assert float(terms["lam_same"]) == 1.0 and float(terms["gamma"]) == 0.0


def _nb(P, y, **kw):
    nb = fs.icnn_neighbours(P, y, **kw)
    return nb.D, nb.same


def test_icnn_properties_range_scale_purity_and_invariance():
    g = torch.Generator().manual_seed(0)
    P = torch.randn(50, 16, generator=g, dtype=F64)
    scores = [float(fs.icnn_score(P, torch.randint(0, 5, (50,), generator=g), ipc=10)) for _ in range(20)]
    assert 0 <= min(scores) and max(scores) <= 1
    # classes pulled apart with the spread fixed: the score rises
    centres = torch.randn(5, 16, generator=g, dtype=F64)
    noise = torch.randn(50, 16, generator=g, dtype=F64) * 0.3
    y = torch.arange(5).repeat_interleave(10)
    curve = [float(fs.icnn_score(s * centres[y] + noise, y, ipc=10)) for s in (0.1, 0.5, 1, 3, 10)]
    assert all(b > a for a, b in itertools.pairwise(curve)), curve
    # tight, well separated classes of >= k + 1 points: score 1
    assert float(fs.icnn_score(50 * centres[y] + noise * 1e-3, y, ipc=10)) == pytest.approx(1.0, abs=1e-4)
    # every part is a ratio or a count: scaling the embedding changes nothing
    Z = centres[y] + noise
    assert float(fs.icnn_score(7.0 * Z, y, ipc=10)) == pytest.approx(float(fs.icnn_score(Z, y, ipc=10)), abs=1e-6)


def test_icnn_weights_are_sparse_and_gamma_has_no_gradient():
    P, y = clustered(2, way=4, per=6, dim=2, scale=1.0)
    nb, grad, terms = fs.icnn_weights(P, y, k=3, ipc=6)
    assert set(terms) == {"lam_same", "lam_diff", "gamma", "score"}
    allowed = torch.zeros_like(grad, dtype=torch.bool)
    allowed[:, :nb.k] = True
    diff = ~nb.same
    has = diff.any(1)
    first_diff = torch.where(diff, torch.arange(nb.D.shape[1]), nb.D.shape[1]).min(1).values
    allowed[has, first_diff[has]] = True                      # delta_i's column, possibly beyond k
    assert not bool((grad[~allowed] != 0).any())
    assert bool((grad[:, nb.k:] != 0).any()) or bool((first_diff[has] < nb.k).all())
    leaf = nb.D.clone().requires_grad_(True)
    gamma = fs.icnn_terms(leaf, nb.same, k=nb.k)["gamma"]
    assert not gamma.requires_grad                            # a count: no gradient


def test_icnn_loss_is_minus_log_score_and_finite_without_different_neighbours():
    P, y = clustered(1)
    assert torch.allclose(fs.icnn_loss(P, y), -torch.log(fs.icnn_score(P, y)))
    y_one = torch.zeros(len(y), dtype=torch.long)         # a single class: no different-class neighbour
    t = fs.icnn_terms(*_nb(P, y_one), k=4)
    assert float(t["lam_diff"]) == 1.0 and float(t["score"]) == pytest.approx(1 - float(1 - t["lam_same"]) / 4)
    assert math.isfinite(float(fs.icnn_loss(P, y_one)))


# ------------------------------------------------------------------------------------------------
# Episodes, combination, evaluation
# ------------------------------------------------------------------------------------------------

def test_episode_sampler_shapes_determinism_and_disjoint_sets():
    labels = np.repeat(np.arange(8), 12)
    a, b = fs.EpisodeSampler(labels, 5, 2, 3, seed=4), fs.EpisodeSampler(labels, 5, 2, 3, seed=4)
    for _ in range(5):
        e, f = a.sample(), b.sample()
        assert torch.equal(e.support, f.support) and torch.equal(e.query, f.query)
        assert e.support.shape == (10,) and e.query.shape == (15,)
        assert not set(e.support.tolist()) & set(e.query.tolist())
        assert torch.equal(e.y_support, torch.arange(5).repeat_interleave(2))
        assert torch.equal(torch.as_tensor(labels)[e.support], e.classes[e.y_support])
        assert torch.equal(torch.as_tensor(labels)[e.query], e.classes[e.y_query])
        assert len(set(e.classes.tolist())) == 5


def test_episode_index_is_vectorised_deterministic_and_class_consistent():
    labels = np.repeat(np.arange(6), 20)
    s, q = fs.episode_index(labels, way=4, shot=2, query=5, episodes=50, seed=3)
    s2, q2 = fs.episode_index(labels, way=4, shot=2, query=5, episodes=50, seed=3)
    assert torch.equal(s, s2) and torch.equal(q, q2) and s.shape == (50, 8) and q.shape == (50, 20)
    ls, lq = torch.as_tensor(labels)[s].reshape(50, 4, 2), torch.as_tensor(labels)[q].reshape(50, 4, 5)
    assert bool((ls == ls[:, :, :1]).all()) and bool((lq == ls[:, :, :1]).all())
    for e in range(50):
        assert len(set(s[e].tolist()) | set(q[e].tolist())) == 28
        assert len(set(ls[e, :, 0].tolist())) == 4


def test_fewshot_accuracy_equals_one_episode_at_a_time():
    z, y = clustered(0, way=5, per=15, dim=4, scale=0.8)
    s, q = fs.episode_index(y.numpy(), way=5, shot=2, query=4, episodes=20, seed=1)
    acc = fs.fewshot_accuracy(z, y, shot=2, index=(s, q))
    for e in range(20):
        D = fs.distances(z[q[e]], fs.prototypes(z[s[e]], torch.arange(5).repeat_interleave(2)))
        assert acc[e] == pytest.approx(fs.episode_accuracy(D, torch.arange(5).repeat_interleave(4)))
    assert np.array_equal(acc, fs.fewshot_accuracy(z, y, way=5, shot=2, query=4, episodes=20, seed=1))
    assert fs.ci95(acc) == pytest.approx(1.96 * acc.std() / math.sqrt(20))


def test_margin_curve_episode_stats_and_projection_agree_with_fewshot_accuracy():
    z, y = clustered(3, way=5, per=15, dim=4, scale=0.8)
    acc = fs.fewshot_accuracy(z, y, shot=2, query=4, episodes=30, seed=7)
    curve = fs.margin_curve(z, y, [0.0, 0.5, 100.0], shot=2, query=4, episodes=30, seed=7)
    active, hinge = curve["active"], curve["hinge"]
    assert active[0] == pytest.approx(1 - acc.mean()) and active[0] <= active[1] <= active[2] == 1.0
    assert 0 <= hinge[0] <= hinge[1] < hinge[2]
    # at a margin every query violates, the mean hinge is m - (mean lead) = m + d_own - d_wrong
    assert hinge[2] == pytest.approx(100.0 + curve["d_own"] - curve["d_wrong"], abs=1e-6)
    stats = fs.episode_stats(z, y, shot=2, query=4, episodes=30, seed=7)
    assert stats["acc"] == pytest.approx(acc.mean()) and 0 <= stats["score"] <= 1 and stats["pt"] > 0
    s, q = fs.episode_index(y.numpy(), shot=2, query=4, episodes=1, seed=7)
    p_s, y_s, p_q, y_q, D = fs.project_episode(z, s[0], q[0], shot=2)
    assert p_s.shape == (10, 2) and p_q.shape == (20, 2)
    assert torch.allclose(D, fs.distances(z[q[0]], fs.prototypes(z[s[0]], y_s)))
    assert fs.episode_accuracy(D, y_q) == pytest.approx(acc[0])


def test_margin_curve_hinge_is_the_area_under_the_active_fraction_and_the_pt_loss():
    z, y = clustered(4, way=5, per=15, dim=4, scale=0.8)
    ms = np.linspace(0, 1.5, 301)
    curve = fs.margin_curve(z, y, ms, shot=1, query=4, episodes=20, seed=3)
    area = np.concatenate([[0], np.cumsum((curve["active"][1:] + curve["active"][:-1]) / 2 * np.diff(ms))])
    assert np.abs(curve["hinge"] - curve["hinge"][0] - area).max() < 5e-3
    # the mean hinge at m is the Proto-Triplet loss at m, averaged over the same episodes
    s, q = fs.episode_index(y.numpy(), shot=1, query=4, episodes=20, seed=3)
    lab = torch.arange(5)
    pt = np.mean([float(fs.proto_triplet_loss(fs.distances(z[q[e]], fs.prototypes(z[s[e]], lab)),
                                              lab.repeat_interleave(4), m=0.5)) for e in range(20)])
    assert curve["hinge"][100] == pytest.approx(pt, abs=1e-9)


def test_noisy_identities_append_pure_noise_to_the_identities():
    split = fs.noisy_identities(n_noise=8, noise_std=2.0, n_ids=40, n_per_id=6, n_train=30)
    base = lv.data.identities(40, 6, n_train=30)
    assert split.x_train.shape == (180, 40) and split.x_test.shape == (60, 40)
    assert torch.equal(split.x_train[:, :32], base.x_train) and torch.equal(split.y_test, base.y_test)
    noise = torch.cat([split.x_train[:, 32:], split.x_test[:, 32:]])
    assert abs(float(noise.std()) - 2.0) < 0.2 and abs(float(noise.mean())) < 0.2
    again = fs.noisy_identities(n_noise=8, noise_std=2.0, n_ids=40, n_per_id=6, n_train=30)
    assert torch.equal(again.x_test, split.x_test)                         # deterministic
    assert fs.load_fewshot("ids_noisy") is fs.load_fewshot("ids_noisy")     # built once
    assert fs.load_fewshot("ids_noisy").x_train.shape == (6000, 64)
    assert fs.load_fewshot("digits_zero_shot").name == lv.data.load("digits_zero_shot").name


def test_toy_episode_shapes_determinism_and_scale():
    a = fs.toy_episode(4, 2, 3, scale=1.0, seed=5)
    b = fs.toy_episode(4, 2, 3, scale=3.0, seed=5)
    assert a[0].shape == (8, 2) and a[2].shape == (12, 2) and torch.equal(a[3], torch.arange(4).repeat_interleave(3))
    assert torch.equal(a[0], fs.toy_episode(4, 2, 3, scale=1.0, seed=5)[0])
    c_a, c_b = fs.prototypes(a[0], a[1]), fs.prototypes(b[0], b[1])
    assert torch.cdist(c_b, c_b).sum() > torch.cdist(c_a, c_a).sum()


def test_episode_loss_is_the_mean_of_the_selected_terms():
    z_s, y_s, z_q, y_q = fs.toy_episode(5, 1, 5, scale=1.0, dim=3, seed=0)
    total, parts, D = fs.episode_loss(z_s, y_s, z_q, y_q, terms=fs.COMBOS["CE+PT+ICNN"])
    assert torch.allclose(total, (parts["cross"] + parts["prototriplet"] + parts["fullicnn"]) / 3)
    assert torch.allclose(parts["fullicnn"], fs.icnn_loss(torch.cat([z_s, z_q]), torch.cat([y_s, y_q]), ipc=6))
    assert torch.allclose(parts["prototriplet"], fs.proto_triplet_loss(D, y_q))
    w_total, _, _ = fs.episode_loss(z_s, y_s, z_q, y_q, terms=("cross", "prototriplet"), weights=(1, 3))
    assert torch.allclose(w_total, (parts["cross"] + 3 * parts["prototriplet"]) / 4)
    _, more, _ = fs.episode_loss(z_s, y_s, z_q, y_q, terms=("suppicnn", "queryicnn"), query_protos=True)
    c = fs.prototypes(z_s, y_s)
    assert torch.allclose(more["queryicnn"], fs.icnn_loss(z_q, y_q, c, torch.arange(5)))
    assert torch.allclose(more["suppicnn"], fs.icnn_loss(z_s, y_s))


# ------------------------------------------------------------------------------------------------
# Bad input
# ------------------------------------------------------------------------------------------------

def test_bad_input_gives_clear_errors():
    D, y = random_distances(0)
    with pytest.raises(ValueError, match="NaN or Inf"):
        fs.protonet_loss(D.clone().fill_(math.nan), y)
    with pytest.raises(ValueError, match="integer class ids"):
        fs.proto_triplet_loss(D, y.double())
    with pytest.raises(ValueError, match="T .temperature. must be > 0"):
        fs.protonet_loss(D, y, T=0)
    with pytest.raises(ValueError, match="m .margin. must be >= 0"):
        fs.proto_triplet_loss(D, y, m=-0.1)
    with pytest.raises(ValueError, match="at least 2 classes"):
        fs.proto_triplet_loss(D[:, :1], torch.zeros(len(y), dtype=torch.long))
    with pytest.raises(ValueError, match=r"episode labels in \[0, 5\)"):
        fs.protonet_loss(D, y + 5)
    with pytest.raises(ValueError, match="each at least once"):
        fs.prototypes(torch.randn(4, 2), torch.tensor([0, 0, 2, 2]))
    with pytest.raises(ValueError, match="same embedding dimension"):
        fs.distances(torch.randn(3, 2), torch.randn(3, 4))
    with pytest.raises(ValueError, match="at least 3 points"):
        fs.icnn_score(torch.randn(2, 2), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="Lower ipc"):
        fs.icnn_score(torch.randn(6, 2), torch.tensor([0, 0, 0, 1, 1, 1]), k=2, ipc=6)
    with pytest.raises(ValueError, match="boolean mask"):
        fs.icnn_terms(torch.rand(4, 3), torch.ones(4, 3), k=2)
    with pytest.raises(ValueError, match="target_labels are needed"):
        fs.icnn_score(torch.randn(5, 2), torch.arange(5), torch.randn(5, 2))
    with pytest.raises(ValueError, match="terms must be distinct names"):
        fs.episode_loss(*fs.toy_episode(seed=0), terms=("cross", "icnn"))
    with pytest.raises(ValueError, match="one weight per term"):
        fs.episode_loss(*fs.toy_episode(seed=0), terms=("cross",), weights=(1, 2))
    with pytest.raises(ValueError, match="way must be <= 3"):
        fs.EpisodeSampler(np.repeat(np.arange(3), 10), way=5)
    with pytest.raises(ValueError, match="exceeds the smallest class"):
        fs.EpisodeSampler(np.repeat(np.arange(5), 4), way=5, shot=1, query=4)
    with pytest.raises(ValueError, match="shot must be an integer >= 1"):
        fs.EpisodeSampler(np.repeat(np.arange(5), 4), shot=0)


# ------------------------------------------------------------------------------------------------
# Training and panels
# ------------------------------------------------------------------------------------------------

TINY = dict(data="digits_zero_shot", way=5, test_way=5, iters=6, eval_every=3, test_episodes=10, progress=False)


def test_train_fewshot_records_caches_and_is_deterministic():
    run = fs.train_fewshot(fs.COMBOS["CE+PT+ICNN"], **TINY)
    assert set(run.history) >= {"iter", "loss", "cross", "prototriplet", "fullicnn", "train_acc", "active"}
    assert np.isfinite(run.history["loss"]).all() and list(run.evals["iter"]) == [0, 3, 6]
    assert run.test_acc.shape == (10,) and 0 <= run.acc <= 1 and run.z_test.shape == (896, 16)
    assert run.scores == {"acc": run.test_acc.mean(), "ci95": fs.ci95(run.test_acc)}
    assert run.evals["acc"][-1] == run.acc and not run.net.training
    assert fs.train_fewshot(fs.COMBOS["CE+PT+ICNN"], **TINY) is run           # cached
    again = fs.train_fewshot(fs.COMBOS["CE+PT+ICNN"], cache=False, **TINY)
    assert np.array_equal(again.history["loss"], run.history["loss"]) and np.array_equal(again.test_acc, run.test_acc)
    assert "test 5-way acc" in repr(run)


def test_train_fewshot_draws_a_new_task_each_episode_and_pairs_runs_by_seed():
    kw = dict(way=10, shot=1, iters=5, eval_every=5, test_episodes=5, progress=False)
    a, b = fs.train_fewshot(("cross",), seed=3, **kw), fs.train_fewshot(("prototriplet",), seed=3, **kw)
    assert a.params["data"] == "ids_noisy" and a.z_test.shape == (2000, 16)
    assert torch.equal(a.z_test_before, b.z_test_before)                 # same seed: same initial network
    assert a.evals["acc"][0] == b.evals["acc"][0]                          # and the same test episodes
    s, _ = fs.episode_index(fs.load_fewshot("ids_noisy").y_train.numpy(), way=10, shot=1, query=5, episodes=5, seed=3)
    classes = [frozenset(fs.load_fewshot("ids_noisy").y_train[row].tolist()) for row in s]
    assert len(set(classes)) == 5                                          # five episodes, five different tasks


def test_knobs_panel_redraws_on_each_knob():
    panel = fs.knobs_panel()
    drawn = drawn_artists(panel.fig)
    G0 = panel.state["G"].clone()
    panel.controls["m"].value = 2.0
    assert panel.state["active"] == 1.0 and not torch.equal(G0, panel.state["G"])
    panel.controls["w_pt"].value = 0.0                       # CE alone: dense weights
    G = panel.state["G"]
    z_s, y_s, z_q, y_q = fs.toy_episode(5, 1, 4, scale=1.0, seed=0)
    D = fs.distances(z_q, fs.prototypes(z_s, y_s))
    assert bool((G != 0).all())
    assert torch.allclose(G, lv.pair_weights(fs.protonet_loss, D, y_q, signed=True, T=1.0))
    low = panel.state["icnn"]["score"]
    panel.controls["scale"].value = 10 ** panel.controls["scale"].max
    assert panel.state["icnn"]["score"] > low
    panel.controls["k"].value = 2
    assert "ICNN score" in panel.status.value and panel.redraws >= 5
    assert same_artists(drawn, drawn_artists(panel.fig)), "the knobs move the artists, never rebuild them"


def test_training_panel_trains_compares_with_ce_and_wires_the_button():
    panel = fs.training_panel(data="digits_zero_shot", iters=4, eval_every=2, test_episodes=5, way=5, test_way=5)
    assert panel.state["result"]["combo"] == "CE+PT" and "vs CE" in panel.state["status"]
    button = next(c for c in panel._layout[0].children if isinstance(c, fs_button_type()))
    assert button._click_handlers.callbacks
    panel.controls["combo"].value = "CE+ICNN"
    assert panel.state["stale"]
    result = panel.train()
    assert result["run"].params["terms"] == ("cross", "fullicnn") and not panel.state["stale"]
    assert len(panel.fig.axes[0].lines) == 2


def fs_button_type():
    import ipywidgets

    return ipywidgets.Button
