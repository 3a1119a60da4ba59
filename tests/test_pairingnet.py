"""lossviz.papers.pairingnet (PairingNet): torn photos, the matching and searching losses against loop
references written from the formulas (values and gradients, float64), metrics, runs and panels."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import lossviz as lv
from lossviz.papers import pairingnet as fr
from _util import value_and_grad
from _util import drawn_artists, same_artists

pytestmark = pytest.mark.usefixtures("one_thread")   # one torch thread, an empty result cache

IMAGE = np.random.default_rng(0).random((48, 72, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def small_sets():
    tiles = fr.tear_tiles(fr.photo("flower"), limit=5, seed=3)
    return fr.fragment_set(tiles[:3], name="test-train"), fr.fragment_set(tiles[3:], name="test-test")


# --------------------------------------------------------------------------- tearing


def test_photo_is_bundled_rgb_in_unit_range():
    im = fr.photo("china", scale=4)
    assert im.shape == (106, 160, 3) and im.dtype == np.float32 and 0 <= im.min() and im.max() <= 1
    with pytest.raises(ValueError, match="unknown photo"):
        fr.photo("lena")
    with pytest.raises(ValueError, match="scale must be an integer"):
        fr.photo("china", scale=0)


def test_tear_is_deterministic_and_seed_dependent():
    a, b, c = fr.tear(IMAGE, seed=1), fr.tear(IMAGE, seed=1), fr.tear(IMAGE, seed=2)
    assert all(np.array_equal(x, y) for x, y in zip(a.contours, b.contours))
    assert not np.allclose(a.contours[0][:5], c.contours[0][:5])
    assert a.n_fragments == 6 and a.pairs.tolist() == [[0, 1], [0, 3], [1, 2], [1, 4], [2, 5], [3, 4], [4, 5]]


@pytest.mark.parametrize("seed", range(4))
def test_matches_are_the_same_points_walked_backwards(seed):
    t = fr.tear(IMAGE, seed=seed, noise=0.0)
    for (a, b), m in zip(t.pairs, t.matches):
        assert np.allclose(t.contours[a][m[:, 0]], t.contours[b][m[:, 1]], atol=1e-9)
        na, nb = len(t.contours[a]), len(t.contours[b])
        assert set(np.diff(m[:, 0]) % na) == {1} and set(np.diff(m[:, 1]) % nb) == {nb - 1}
    noisy = fr.tear(IMAGE, seed=seed, noise=0.1)
    gaps = [np.hypot(*(noisy.contours[a][m[:, 0]] - noisy.contours[b][m[:, 1]]).T).max()
            for (a, b), m in zip(noisy.pairs, noisy.matches)]
    assert 0 < max(gaps) < 1.0


def _segments_cross(p1, p2, q1, q2):
    d = lambda a, b, c: (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
    return d(p1, p2, q1) * d(p1, p2, q2) < 0 and d(q1, q2, p1) * d(q1, q2, p2) < 0


@pytest.mark.parametrize("seed", range(3))
def test_contours_are_simple_clockwise_and_tile_the_image(seed):
    t = fr.tear(IMAGE, seed=seed)
    for c in t.contours:
        n = len(c)
        crossings = sum(_segments_cross(c[i], c[(i + 1) % n], c[j], c[(j + 1) % n])
                        for i in range(n) for j in range(i + 2, n) if (j + 1) % n != i)
        assert crossings == 0
        x, y = c[:, 0], c[:, 1]
        assert 0.5 * np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y) > 0   # clockwise on screen (y down)
    labels = t.labels()
    assert labels.min() == 0 and set(np.unique(labels)) == set(range(6))


def test_tear_rejects_bad_input():
    with pytest.raises(ValueError, match="h x w x 3"):
        fr.tear(IMAGE[..., 0])
    with pytest.raises(ValueError, match="rows must be an integer"):
        fr.tear(IMAGE, rows=0)
    with pytest.raises(ValueError, match="at least 2 fragments"):
        fr.tear(IMAGE, rows=1, cols=1)
    with pytest.raises(ValueError, match="neighbouring cuts may cross"):
        fr.tear(IMAGE, jitter=0.5)
    with pytest.raises(ValueError, match="too small"):
        fr.tear(IMAGE[:8, :8])
    with pytest.raises(ValueError, match="spacing must be > 0"):
        fr.tear(IMAGE, spacing=0)


def test_tiles_do_not_overlap_and_fragment_set_is_consistent():
    im = fr.photo("flower", scale=2)
    tiles = fr.tear_tiles(im, size=(48, 72))
    assert len(tiles) == (im.shape[0] // 48) * (im.shape[1] // 72)
    assert np.array_equal(tiles[1].image, im[:48, 72:144])
    fs = fr.fragment_set(tiles[:3], window=2)
    assert fs.x.shape[0] == 18 and fs.x.shape[2] == 5 * fr.N_CHANNELS
    assert torch.equal(fs.adjacency, fs.adjacency.T) and not fs.adjacency.diagonal().any()
    assert bool((fs.colour[fs.pairs[:, 0]] != fs.colour[fs.pairs[:, 1]]).all())   # checkerboard
    gt = fs.gt_masks([0, 8])
    assert gt[0].sum() == len(fs.matches[0]) and gt[1, fs.matches[8][0, 0], fs.matches[8][0, 1]]
    assert fs.fragment(7) == (tiles[1], 1)
    with pytest.raises(ValueError, match="at least one tear"):
        fr.fragment_set([])


def test_partner_sees_the_mirror_of_a_point_window():
    """Away from a cut's ends, the partner's window is the mirror image (reversed, angles negated)."""
    big = np.random.default_rng(1).random((96, 144, 3)).astype(np.float32)
    t = fr.tear(big, seed=5, noise=0.0, rough=0.0)
    fs = fr.fragment_set([t], window=2)
    k = len(fr.ANGLE_SCALES)
    for e, (a, b) in enumerate(t.pairs):
        m = fs.matches[e][5:-5]
        assert len(m) >= 5
        xa, xb = fs.x[a, m[:, 0]], fs.x[b, m[:, 1]]
        mirrored = fr.mirror(xa).reshape(len(m), -1, fr.N_CHANNELS)
        assert torch.allclose(mirrored[..., :k], xb.reshape(len(m), -1, fr.N_CHANNELS)[..., :k], atol=1e-4)
    assert torch.equal(fr.mirror(fr.mirror(fs.x)), fs.x)


# --------------------------------------------------------------------------- loop references


def mpi_ref(S, M, tau, positives="sum_prob"):
    rows = []
    for i in range(S.shape[0]):
        z = [S[i, j] / tau for j in range(S.shape[1])]
        denom = sum(torch.exp(v) for v in z)
        p = [torch.exp(v) / denom for v in z]
        pos = [j for j in range(S.shape[1]) if M[i, j]]
        if positives == "sum_prob":
            rows.append(-torch.log(sum(p[j] for j in pos)))
        else:
            rows.append(sum(-torch.log(p[j]) for j in pos) / len(pos))
    return sum(rows) / len(rows)


def dual_softmax_ref(S, tau, valid=None):
    n, m = S.shape
    z = [[(S[i, j] / tau if valid is None or valid[i, j] else torch.tensor(-1e9, dtype=S.dtype)) for j in range(m)]
         for i in range(n)]
    out = torch.zeros(n, m, dtype=S.dtype)
    rows = [sum(torch.exp(z[i][j] - max(z[i])) for j in range(m)) for i in range(n)]
    cols = [sum(torch.exp(z[i][j] - max(z[k][j] for k in range(n))) for i in range(n)) for j in range(m)]
    P = []
    for i in range(n):
        P.append([torch.exp(z[i][j] - max(z[i])) / rows[i]
                  * torch.exp(z[i][j] - max(z[k][j] for k in range(n))) / cols[j]
                  * (1.0 if valid is None or valid[i, j] else 0.0) for j in range(m)])
    return torch.stack([torch.stack(r) for r in P]) + out


def focal_ref(P, gt, alpha, gamma, scale, valid=None):
    terms = []
    for i in range(P.shape[0]):
        for j in range(P.shape[1]):
            if valid is not None and not valid[i, j]:
                continue
            p = P[i, j]
            if gt[i, j]:
                terms.append(-alpha * (1 - p) ** gamma * torch.log(p + 1e-9))
            else:
                terms.append(-(1 - alpha) * p ** gamma * torch.log(1 - p + 1e-9))
    return scale * sum(terms) / len(terms)


def _fit_mask(g, a, n):
    M = torch.rand(a, n, generator=g) < 0.3
    M[torch.arange(a), torch.randint(0, n, (a,), generator=g)] = True
    return M


@pytest.mark.parametrize("positives", ["sum_prob", "mean_log"])
@pytest.mark.parametrize("trial", range(3))
def test_multi_positive_infonce_matches_loop(positives, trial):
    g = torch.Generator().manual_seed(trial)
    S = torch.rand(5, 7, generator=g, dtype=torch.float64) * 2 - 1
    M = _fit_mask(g, 5, 7)
    for tau in (0.12, 0.5, 1.0):
        v, grad = value_and_grad(fr.multi_positive_infonce, S, M, tau=tau, positives=positives)
        v_ref, grad_ref = value_and_grad(lambda s, m, tau: mpi_ref(s, m, tau, positives), S, M, tau=tau)
        assert torch.allclose(v, v_ref, atol=1e-10) and torch.allclose(grad, grad_ref, atol=1e-10)


def test_multi_positive_infonce_weights_closed_form():
    """dl/dS_ij = (softmax_ij - M_ij q_ij) / (tau A): the positives share the pull by probability."""
    g = torch.Generator().manual_seed(4)
    S = torch.rand(6, 9, generator=g, dtype=torch.float64) * 2 - 1
    M = _fit_mask(g, 6, 9)
    tau = 0.2
    W = lv.pair_weights(fr.multi_positive_infonce, S, M, signed=True, tau=tau)
    p = torch.softmax(S / tau, dim=1)
    q = torch.where(M, p, 0.0) / torch.where(M, p, 0.0).sum(1, keepdim=True)
    assert torch.allclose(W, (p - q) / (tau * 6), atol=1e-12)
    W_mean = lv.pair_weights(fr.multi_positive_infonce, S, M, signed=True, tau=tau, positives="mean_log")
    share = M / M.sum(1, keepdim=True)
    assert torch.allclose(W_mean, (p - share) / (tau * 6), atol=1e-12)


def test_one_positive_per_row_is_cross_entropy():
    g = torch.Generator().manual_seed(1)
    S = torch.rand(8, 8, generator=g, dtype=torch.float64) * 2 - 1
    target = torch.randperm(8, generator=g)
    M = F.one_hot(target, 8).bool()
    for tau in (0.05, 0.12, 1.0):
        assert abs(float(fr.multi_positive_infonce(S, M, tau=tau) - F.cross_entropy(S / tau, target))) < 1e-12


def test_mean_log_form_is_supcon():
    """SupCon (lossviz.supcon_loss) scores each anchor against the batch minus itself; give every row
    its own far-away self column and the two agree."""
    g = torch.Generator().manual_seed(2)
    A, N = 4, 9
    S = torch.rand(A, N, generator=g, dtype=torch.float64) * 2 - 1
    col_labels = torch.randint(0, A + 2, (N,), generator=g)
    col_labels[:A] = torch.arange(A)                       # every row has at least one positive
    M = col_labels[None, :] == torch.arange(A)[:, None]
    S_ext = torch.cat([S, torch.full((A, A), -1e4, dtype=torch.float64)], dim=1)
    labels = torch.cat([col_labels, torch.arange(A)])
    ref = lv.supcon_loss(S_ext, labels, tau=0.3, anchors=N + torch.arange(A))
    assert abs(float(fr.multi_positive_infonce(S, M, tau=0.3, positives="mean_log") - ref)) < 1e-10
    assert float(fr.multi_positive_infonce(S, M, tau=0.3)) <= float(ref) + 1e-12   # Jensen: sum_prob is lower


def test_multi_positive_infonce_bad_input_and_empty_rows():
    S = torch.zeros(3, 4, dtype=torch.float64)
    M = torch.zeros(3, 4, dtype=torch.bool)
    M[0, 1] = M[2, 2] = True
    with pytest.raises(ValueError, match=r"1 row\(s\) of M have no positive"):
        fr.multi_positive_infonce(S, M)
    with lv.validation(False):
        loss = fr.multi_positive_infonce(S, M, tau=0.5)       # the empty row is left out
        assert torch.isfinite(loss) and abs(float(loss) - math.log(4)) < 1e-12
        assert torch.isfinite(lv.pair_weights(fr.multi_positive_infonce, S, M)).all()
    with pytest.raises(ValueError, match="must be a boolean mask"):
        fr.multi_positive_infonce(S, M.double())
    with pytest.raises(ValueError, match="must have the shape"):
        fr.multi_positive_infonce(S, M[:2])
    with pytest.raises(ValueError, match="tau .* must be > 0"):
        fr.multi_positive_infonce(S, M | True, tau=0)
    with pytest.raises(ValueError, match="unknown positives"):
        fr.multi_positive_infonce(S, M | True, positives="max")
    with pytest.raises(ValueError, match="NaN or Inf"):
        fr.multi_positive_infonce(S.fill_diagonal_(math.nan), M | True)


def test_searching_loss_is_cross_plus_half_the_intra_terms():
    g = torch.Generator().manual_seed(3)
    g_s, g_t = torch.randn(5, 8, generator=g, dtype=torch.float64), torch.randn(6, 8, generator=g, dtype=torch.float64)
    M = _fit_mask(g, 5, 6)
    s, t = F.normalize(g_s, dim=1), F.normalize(g_t, dim=1)
    cross = fr.multi_positive_infonce(s @ t.T, M, tau=0.12)
    intra_s = fr.multi_positive_infonce(s @ s.T, torch.eye(5, dtype=torch.bool), tau=0.12)
    intra_t = fr.multi_positive_infonce(t @ t.T, torch.eye(6, dtype=torch.bool), tau=0.12)
    assert torch.allclose(fr.searching_loss(g_s, g_t, M), cross + 0.5 * (intra_s + intra_t) / 2, atol=1e-12)
    assert torch.allclose(fr.searching_loss(g_s, g_t, M, intra_weight=0), cross, atol=1e-12)
    with pytest.raises(ValueError, match="same width"):
        fr.searching_loss(g_s, g_t[:, :4], M)
    with pytest.raises(ValueError, match="intra_weight must be >= 0"):
        fr.searching_loss(g_s, g_t, M, intra_weight=-1)


def test_triplet_search_loss_matches_loop():
    g = torch.Generator().manual_seed(5)
    S = torch.rand(6, 7, generator=g, dtype=torch.float64) * 2 - 1
    M = _fit_mask(g, 6, 7)
    M[3] = True                                             # a row without negatives is left out
    value = fr.triplet_search_loss(S, M, margin=1.0, generator=torch.Generator().manual_seed(9))
    u = torch.rand(S.shape, generator=torch.Generator().manual_seed(9))
    terms = []
    for i in range(6):
        pos = [j for j in range(7) if M[i, j]]
        neg = [j for j in range(7) if not M[i, j]]
        if pos and neg:
            p, n = max(pos, key=lambda j: u[i, j]), max(neg, key=lambda j: u[i, j])
            terms.append(max(0.0, (2 - 2 * float(S[i, p])) - (2 - 2 * float(S[i, n])) + 1.0))
    assert abs(float(value) - sum(terms) / len(terms)) < 1e-12
    with pytest.raises(ValueError, match="margin must be >= 0"):
        fr.triplet_search_loss(S, M, margin=-1)


# --------------------------------------------------------------------------- matching


@pytest.mark.parametrize("trial", range(3))
def test_dual_softmax_matches_loop_with_padding(trial):
    g = torch.Generator().manual_seed(trial)
    S = torch.randn(5, 6, generator=g, dtype=torch.float64) * 3
    valid = torch.ones(5, 6, dtype=torch.bool)
    valid[4:, :] = False
    valid[:, 5:] = False
    for tau in (1.0, 4.0):
        P = fr.dual_softmax(S, valid, tau=tau)
        assert torch.allclose(P, dual_softmax_ref(S, tau, valid), atol=1e-12)
        assert (P[~valid] == 0).all() and (P.sum(0) <= 1 + 1e-12).all() and (P.sum(1) <= 1 + 1e-12).all()
    batch = fr.dual_softmax(torch.stack([S, S * 2]), torch.stack([valid, valid]), tau=2.0)
    assert torch.allclose(batch[1], fr.dual_softmax(S * 2, valid, tau=2.0))


def test_padding_with_minus_inf_would_give_nan():
    """Why PAD is a large finite number: a fully padded row under -inf is 0/0."""
    S = torch.randn(3, 3, dtype=torch.float64)
    valid = torch.ones(3, 3, dtype=torch.bool)
    valid[2] = False
    z = S.masked_fill(~valid, -math.inf)
    assert torch.isnan(torch.softmax(z, -1) * torch.softmax(z, -2)).any()
    assert torch.isfinite(fr.dual_softmax(S, valid)).all()


@pytest.mark.parametrize("alpha,gamma", [(0.55, 8.0), (0.5, 2.0), (0.25, 0.0), (0.75, 0.5)])
def test_matching_loss_matches_loop(alpha, gamma):
    g = torch.Generator().manual_seed(int(gamma * 10))
    S = torch.randn(6, 5, generator=g, dtype=torch.float64) * 4
    gt = torch.zeros(6, 5, dtype=torch.bool)
    gt[torch.arange(5), torch.arange(5).flip(0)] = True
    valid = torch.ones(6, 5, dtype=torch.bool)
    valid[5] = False
    knobs = dict(tau_m=2.0, alpha=alpha, gamma=gamma, scale=400.0)
    v, grad = value_and_grad(lambda s, gt_: fr.matching_loss(s, gt_, valid=valid, **knobs), S, gt)
    v_ref, grad_ref = value_and_grad(
        lambda s, gt_: focal_ref(dual_softmax_ref(s, 2.0, valid), gt_, alpha, gamma, 400.0, valid), S, gt)
    assert torch.allclose(v, v_ref, atol=1e-9) and torch.allclose(grad, grad_ref, atol=1e-9)
    assert (grad[~valid] == 0).all()


def test_focal_with_gamma_zero_is_weighted_cross_entropy():
    g = torch.Generator().manual_seed(0)
    P = torch.rand(4, 4, generator=g, dtype=torch.float64) * 0.9 + 0.05
    gt = torch.eye(4, dtype=torch.bool)
    bce = F.binary_cross_entropy(P, gt.double(), reduction="none")
    ref = 400 * torch.where(gt, 0.5 * bce, 0.5 * bce).mean()
    assert abs(float(fr.focal_matching_loss(P, gt, alpha=0.5, gamma=0.0) - ref)) < 1e-6   # the 1e-9 inside the logs


def test_focal_bad_input():
    P = torch.full((3, 3), 0.1, dtype=torch.float64)
    gt = torch.eye(3, dtype=torch.bool)
    with pytest.raises(ValueError, match="no valid correspondence"):
        fr.focal_matching_loss(P, torch.zeros_like(gt))
    with pytest.raises(ValueError, match="probabilities in \\[0, 1\\]"):
        fr.focal_matching_loss(P * 20, gt)
    with pytest.raises(ValueError, match="alpha .* must be in \\[0, 1\\]"):
        fr.focal_matching_loss(P, gt, alpha=1.5)
    with pytest.raises(ValueError, match="gamma must be >= 0"):
        fr.focal_matching_loss(P, gt, gamma=-1)
    with pytest.raises(ValueError, match="gt must be a boolean mask"):
        fr.focal_matching_loss(P, gt.double())
    with pytest.raises(ValueError, match="one fragment pair"):
        fr.focal_matching_loss(P[0], gt[0])
    with pytest.raises(ValueError, match="tau .* must be > 0"):
        fr.matching_loss(P, gt, tau_m=0)


def test_float16_is_computed_in_float32():
    S = torch.randn(4, 4).half() * 30
    P = fr.dual_softmax(S, tau=0.1)
    assert P.dtype == torch.float32 and torch.isfinite(P).all()


# --------------------------------------------------------------------------- metrics


def test_search_scores_on_hand_made_pool():
    A = torch.zeros(4, 4, dtype=torch.bool)
    A[0, 1] = A[1, 0] = A[2, 3] = A[3, 2] = True
    G = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.2, 1.0]])
    assert fr.search_scores(G, A, ks=(1, 2)) == {"recall_at_1": 1.0, "pair_recall_at_1": 1.0,
                                                 "recall_at_2": 1.0, "pair_recall_at_2": 1.0}
    bad = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1], [0.1, 0.9]])
    assert fr.search_scores(bad, A, ks=(1,))["recall_at_1"] == 0.0
    with pytest.raises(ValueError, match="k must be an integer"):
        fr.search_scores(G, A, ks=(4,))


def test_match_scores_and_mutual_nearest():
    P = torch.tensor([[0.6, 0.1], [0.3, 0.25]])
    gt = torch.tensor([[True, False], [False, True]])
    assert fr.match_scores(P, gt, threshold=0.2) == pytest.approx({"precision": 2 / 3, "recall": 1.0, "f1": 0.8})
    assert fr.mutual_nearest(P).tolist() == [[True, False], [False, False]]


def test_large_dual_softmax_entries_are_mutual_nearest_neighbours():
    """P_ij > 0.5 needs both softmax factors > 0.5, i.e. j is i's best and i is j's best."""
    g = torch.Generator().manual_seed(0)
    S = torch.randn(200, 30, 30, generator=g, dtype=torch.float64) * 4
    P = fr.dual_softmax(S)
    big = P > 0.5
    assert int(big.sum()) > 100 and bool(fr.mutual_nearest(S)[big].all())


def test_search_head_pools_only_the_real_contour_points():
    """Padding never reaches the embedding: the head's mean- and max-pool equal a masked pool written
    out (max over the real points only), and changing the padded features changes nothing."""
    g = torch.Generator().manual_seed(0)
    head = fr.SearchHead(6, 5)
    f = torch.randn(4, 7, 6, generator=g, dtype=torch.float64)
    head = head.double()
    valid = torch.ones(4, 7, dtype=torch.bool)
    valid[1, 5:] = valid[3, 2:] = False
    h = head.points(f)
    rows = [torch.cat([h[i, valid[i]].mean(0), h[i, valid[i]].max(0).values]) for i in range(4)]
    expected = F.normalize(head.head(torch.stack(rows)), dim=1)
    assert torch.allclose(head(f, valid), expected, atol=1e-12)
    f2 = torch.where(valid[..., None], f, 1e3)
    assert torch.allclose(head(f2, valid), head(f, valid), atol=1e-12)


# --------------------------------------------------------------------------- runs and panels


def test_runs_learn_are_cached_and_deterministic(small_sets):
    train, test = small_sets
    m = fr.train_matching(train, test, iters=16, eval_every=8, pairs=8, progress=False)
    assert m is fr.train_matching(train, test, iters=16, eval_every=8, pairs=8, progress=False)
    again = fr.train_matching(train, test, iters=16, eval_every=8, pairs=8, progress=False, cache=False)
    assert np.array_equal(m.history["loss"], again.history["loss"]) and list(m.evals["iter"]) == [0, 8, 16]
    assert m.before["f1"] == m.evals["f1"][0] and m.after["f1"] == m.evals["f1"][-1]
    assert m.history["loss"][-5:].mean() < m.history["loss"][:5].mean()
    s = fr.train_search(train, test, m, iters=10, eval_every=5, tears=2, progress=False)
    assert set(s.after) == {"recall_at_1", "pair_recall_at_1", "recall_at_5", "pair_recall_at_5"}
    assert s.model(test.x, test.valid).shape == (len(test), 32)
    tri = fr.train_search(train, test, m, loss="triplet", iters=5, tears=2, progress=False)
    assert "tau" not in tri.params and tri.params["margin"] == 1.0
    with pytest.raises(ValueError, match="unknown loss"):
        fr.train_search(train, test, m, loss="ms")


def test_seed_curves_use_method_colours_never_the_pair_colours(small_sets):
    from lossviz import plots

    train, test = small_sets
    m = fr.train_matching(train, test, iters=4, pairs=8, progress=False)
    runs = {name: [fr.train_search(train, test, m, iters=4, eval_every=2, tears=2, seed=s, progress=False, **knobs)
                   for s in range(2)] for name, knobs in (("InfoNCE τ=0.12", dict(loss="infonce")),
                                                         ("triplet", dict(loss="triplet")))}
    fig, ax = plots.new_figure(1)
    fr.seed_curves(ax[0, 0], runs, "recall_at_1", baseline=0.1)
    lines = ax[0, 0].lines
    assert len(lines) == 2 * (2 + 1) + 1                                    # 2 seeds and a mean per loss, a baseline
    mean = lines[2].get_ydata()
    assert np.allclose(mean, np.mean([r.evals["recall_at_1"] for r in runs["InfoNCE τ=0.12"]], axis=0))
    assert set(fr.method_colors().values()).isdisjoint({plots.POS_COLOR, plots.NEG_COLOR})
    assert {line.get_color() for line in lines}.isdisjoint({plots.POS_COLOR, plots.NEG_COLOR})


def test_baselines_have_the_right_shapes(small_sets):
    _, test = small_sets
    assert fr.handcrafted_descriptor(test).shape == (len(test), 12)
    S = fr.handcrafted_similarity(test, [0, 1])
    _, _, valid, _ = fr.match_batch(test, [0, 1])
    assert S.shape == valid.shape and (S <= 0).all()


def test_panels_redraw_when_a_control_moves(small_sets):
    train, test = small_sets
    m = fr.train_matching(train, test, iters=5, pairs=8, progress=False)
    S, gt = fr.pair_similarity(test, 0, m.model)
    S_hand, gt_hand = fr.pair_similarity(test, 0)
    assert torch.equal(gt, gt_hand) and S_hand.shape == S.shape and (S_hand <= 0).all()
    panel = fr.matching_panel(S, gt)
    drawn = drawn_artists(panel.fig)
    before = panel.state["W"].clone()
    panel.controls["gamma"].value = 0.0
    assert not torch.equal(before, panel.state["W"]) and "F1" in panel.state["status"]
    panel.controls["tau_m"].value = 1000.0                       # clamped to the slider's range
    assert panel.controls["tau_m"].value == 16.0
    assert same_artists(drawn, drawn_artists(panel.fig)), "the knobs move the artists, never rebuild them"
    s, t, M = fr.search_step_batch(test, torch.tensor([0, 1]))
    g = torch.randn(len(s) + len(t), 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    Sst = F.normalize(g[:len(s)], dim=1) @ F.normalize(g[len(s):], dim=1).T
    sp = fr.search_panel(Sst, M)
    drawn = drawn_artists(sp.fig)
    w1 = sp.state["W"].clone()
    sp.controls["positives"].value = "mean_log"
    assert not torch.equal(w1, sp.state["W"])
    sp.controls["row"].value = 2
    assert sp.redraws == 3
    assert same_artists(drawn, drawn_artists(sp.fig)), "the knobs move the artists, never rebuild them"


def test_training_panel_trains_on_press(small_sets):
    train, test = small_sets
    panel = fr.training_panel(train, test, iters=5)
    assert 0 <= panel.state["f1"] <= 1 and not panel.state["stale"]
    panel.controls["gamma"].value = 2.0
    assert panel.state["stale"]
    panel.train()
    assert panel.state["result"][0].params["gamma"] == 2.0 and not panel.state["stale"]
