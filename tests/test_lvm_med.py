"""Graph matching (LVM-Med, reconstructed): the Hungarian solver against brute force over all
permutations, the black-box backward against its formula, the interpolation f_lam by finite
differences, the second-order proxy against loops over the edge affinities, NT-Xent on two views
against a loop and pytorch-metric-learning, bad inputs, the training loop and both panels."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

import lossviz as lv
from lossviz.papers import lvm_med as gm
from lossviz import train as T
from _util import drawn_artists, same_artists

F64 = torch.float64


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """Training and panels run on one torch thread, as in the notebooks (two burn CPU on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def rand_C(n: int, seed: int) -> torch.Tensor:
    return torch.rand(n, n, generator=torch.Generator().manual_seed(seed), dtype=F64) * 2 - 1


def perm_matrix(p, n=None) -> torch.Tensor:
    n = len(p) if n is None else n
    v = torch.zeros(n, n, dtype=F64)
    v[range(n), list(p)] = 1
    return v


def brute_argmax(C: torch.Tensor) -> torch.Tensor:
    """The permutation matrix maximising <C, v>, by trying all N! permutations."""
    n = C.shape[0]
    best = max(itertools.permutations(range(n)), key=lambda p: sum(float(C[i, p[i]]) for i in range(n)))
    return perm_matrix(best)


def brute_max(C: torch.Tensor) -> float:
    return float((brute_argmax(C) * C).sum())


def hamming_ref(v, P) -> float:
    n = v.shape[0]
    return sum(float(v[i, j]) * (1 - float(P[i, j])) + (1 - float(v[i, j])) * float(P[i, j])
               for i in range(n) for j in range(n))


# ------------------------------------------------------------------------------------------------
# The solver and the black-box gradient
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 2, 4, 6])
def test_solver_returns_the_best_permutation(n):
    for seed in range(5):
        C = rand_C(n, seed)
        v = gm.solve_matching(C)
        assert v.dtype == C.dtype and set(v.unique().tolist()) <= {0.0, 1.0}
        assert torch.equal(v.sum(0), torch.ones(n, dtype=F64)) and torch.equal(v.sum(1), torch.ones(n, dtype=F64))
        assert torch.equal(v, brute_argmax(C))


def test_solver_float32_and_accuracy():
    C = torch.eye(5) + 0.01 * rand_C(5, 0).float()
    assert gm.solve_matching(C).dtype == torch.float32
    assert gm.matching_accuracy(C) == 1.0
    assert gm.matching_accuracy(C[:, [1, 0, 2, 3, 4]]) == pytest.approx(0.6)


@pytest.mark.parametrize("margin", [0.0, 0.2, 0.5])
@pytest.mark.parametrize("lam", [0.3, 1.0, 5.0, 80.0])
@pytest.mark.parametrize("seed", range(4))
def test_blackbox_backward_matches_the_formula(lam, margin, seed):
    """Value and gradient against brute force over all permutations, on the margin-shifted costs
    C' = C - m P: loss = hamming(v(C'), P), dL/dC = (v(C') - v(C' - lam (1 - 2P))) / lam."""
    n = 5
    C = rand_C(n, seed).requires_grad_(True)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    for labels in (None, perm):
        C.grad = None
        loss = gm.gm_loss(C, labels, lam=lam, margin=margin)
        loss.backward()
        P = torch.eye(n, dtype=F64) if labels is None else perm_matrix(perm.tolist())
        shifted = C.detach() - margin * P
        v = brute_argmax(shifted)
        expected = (v - brute_argmax(shifted - lam * (1 - 2 * P))) / lam
        assert torch.equal(C.grad, expected)
        assert float(loss.detach()) == hamming_ref(v, P)


def test_margin_zero_is_the_bare_hamming_loss_and_the_default_is_bbgm():
    C = rand_C(6, 11).requires_grad_(True)
    gm.gm_loss(C, lam=2.0, margin=0.0).backward()
    assert torch.equal(C.grad, (brute_argmax(C.detach()) - brute_argmax(C.detach() + 4.0 * torch.eye(6, dtype=F64))) / 2.0)
    C.grad = None
    gm.gm_loss(C).backward()                                   # defaults: lam = 80, margin = 0.2
    P = torch.eye(6, dtype=F64)
    assert torch.equal(C.grad, (brute_argmax(C.detach() - 0.2 * P) - P) / 80.0)


@pytest.mark.parametrize("m", [0.1, 0.3])
def test_margin_keeps_a_gradient_until_every_correct_pair_wins_by_m(m):
    """A matching that is right by less than m still gets a gradient; right by more than m, none."""
    n = 5
    base = 0.01 * rand_C(n, 3)
    for gap, expect_grad in ((0.5 * m, True), (1.5 * m, False)):
        C = (base + gap * torch.eye(n, dtype=F64)).requires_grad_(True)
        assert gm.matching_accuracy(C.detach()) == 1.0        # the bare matching is already right
        loss = gm.gm_loss(C, lam=80.0, margin=m)
        loss.backward()
        assert bool(C.grad.any()) == expect_grad and (float(loss.detach()) > 0) == expect_grad
        C.grad = None
        gm.gm_loss(C, lam=80.0, margin=0.0).backward()
        assert not C.grad.any()                               # without the margin: no gradient at all


@pytest.mark.parametrize("seed", range(4))
def test_large_lam_is_the_structured_hinge_gradient(seed):
    """In the perceptron regime (lam above half the range of C), lam * dL/dC is the gradient of the
    structured hinge loss max_v [<C, v> + m (N - <P, v>)] - <C, P>, computed here by autograd
    through a max over all N! permutation scores (an independent reference)."""
    n, m, lam = 5, 0.2, 80.0
    C = rand_C(n, seed).requires_grad_(True)
    gm.gm_loss(C, lam=lam, margin=m).backward()
    perms = [perm_matrix(p) for p in itertools.permutations(range(n))]
    P = torch.eye(n, dtype=F64)
    Cr = C.detach().clone().requires_grad_(True)
    scores = torch.stack([(Cr * v).sum() + m * (n - (P * v).sum()) for v in perms])
    (scores.max() - (Cr * P).sum()).backward()
    assert torch.equal(lam * C.grad, Cr.grad)


def test_blackbox_backward_with_any_incoming_gradient():
    """For any dL/dv (not only the Hamming loss's): (v(C) - v(C - lam dL/dv)) / lam."""
    for seed in range(5):
        C = rand_C(5, seed).requires_grad_(True)
        G = rand_C(5, 100 + seed)
        gm.match(C, lam=2.0).backward(G)
        expected = (brute_argmax(C.detach()) - brute_argmax(C.detach() - 2.0 * G)) / 2.0
        assert torch.equal(C.grad, expected)


def test_hamming_loss_and_its_gradient():
    v = perm_matrix([1, 0, 2, 3]).requires_grad_(True)
    loss = gm.hamming_loss(v)
    loss.backward()
    assert float(loss.detach()) == 4.0 == hamming_ref(v.detach(), torch.eye(4, dtype=F64))   # 2 wrong rows
    assert torch.equal(v.grad, 1 - 2 * torch.eye(4, dtype=F64))
    assert float(gm.hamming_loss(perm_matrix([1, 0, 2, 3]), torch.tensor([1, 0, 2, 3]))) == 0.0


def test_gradient_structure_on_random_problems():
    """{-1/lam, 0, +1/lam}; rows and columns sum to 0; <= 2 non-zeros per row; exactly 0 when the
    solver's matching of C - m I is the identity; a descent step never lowers the total correct affinity."""
    g = torch.Generator().manual_seed(0)
    perfect = 0
    for trial in range(800):
        n = 3 + trial % 6
        lam = float(torch.empty(1).uniform_(0.2, 100, generator=g))
        m = float(torch.empty(1).uniform_(0, 0.5, generator=g))
        C = (torch.rand(n, n, generator=g, dtype=F64) * 2 - 1 + 1.5 * (trial % 3) * torch.eye(n, dtype=F64))
        W = lv.pair_weights(gm.gm_loss, C, torch.arange(n), signed=True, lam=lam, margin=m)
        assert set((W * lam).round().unique().tolist()) <= {-1.0, 0.0, 1.0}
        assert torch.allclose(W.sum(0), torch.zeros(n, dtype=F64)) and torch.allclose(W.sum(1), torch.zeros(n, dtype=F64))
        assert int((W != 0).sum(1).max()) <= 2
        assert float(torch.diagonal(W).sum()) <= 0
        if gm.matching_accuracy(C - m * torch.eye(n, dtype=F64)) == 1.0:
            perfect += 1
            assert not W.any()
        else:
            assert W.any() or lam < 2                      # a large enough lam always sees the mistake
    assert 50 < perfect < 750


def test_descent_step_raises_the_correct_affinities():
    C = rand_C(8, 3).requires_grad_(True)
    gm.gm_loss(C, lam=5.0).backward()
    stepped = C.detach() - 0.1 * C.grad
    assert float(torch.diagonal(stepped).sum()) > float(torch.diagonal(C.detach()).sum())
    assert gm.matching_accuracy(stepped) >= gm.matching_accuracy(C.detach())


def test_imle_noise():
    C = rand_C(6, 1).requires_grad_(True)
    gm.gm_loss(C, lam=3.0, noise=0.0).backward()
    bb = C.grad.clone()
    C.grad = None
    gm.gm_loss(C, lam=3.0, noise=0.0, generator=torch.Generator().manual_seed(0)).backward()
    assert torch.equal(C.grad, bb)
    grads = []
    for _ in range(2):
        C.grad = None
        v = gm.match(C, lam=3.0, noise=0.5, generator=torch.Generator().manual_seed(7))
        assert torch.equal(v.sum(0), torch.ones(6, dtype=F64))
        gm.hamming_loss(v).backward()
        grads.append(C.grad.clone())
    assert torch.equal(*grads)                          # seeded noise: reproducible


# ------------------------------------------------------------------------------------------------
# The interpolation f_lam
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("margin", [0.0, 0.2])
@pytest.mark.parametrize("seed", range(6))
def test_interpolation_is_differentiated_exactly_by_the_blackbox_gradient(seed, margin):
    n, lam, eps = 6, 1.5, 1e-6
    C = rand_C(n, seed).requires_grad_(True)
    gm.gm_loss(C, lam=lam, margin=margin).backward()
    for d in range(4):
        D = rand_C(n, 1000 * seed + d)
        fd = (float(gm.interpolated_loss(C.detach() + eps * D, lam=lam, margin=margin))
              - float(gm.interpolated_loss(C.detach() - eps * D, lam=lam, margin=margin))) / (2 * eps)
        assert fd == pytest.approx(float((C.grad * D).sum()), abs=1e-6)


@pytest.mark.parametrize("seed", range(6))
def test_interpolation_closed_form_bounds_and_limit(seed):
    n = 5
    C = rand_C(n, seed)
    P = torch.eye(n, dtype=F64)
    for lam in (0.1, 1.0, 4.0):
        f = float(gm.interpolated_loss(C, lam=lam, margin=0.0))
        closed = n + (brute_max(C) - brute_max(C - lam * (1 - 2 * P))) / lam
        assert f == pytest.approx(closed, abs=1e-10)
        low = hamming_ref(brute_argmax(C + 2 * lam * P), P)
        high = hamming_ref(brute_argmax(C), P)
        assert low - 1e-10 <= f <= high + 1e-10
    assert float(gm.interpolated_loss(C, lam=1e-7, margin=0.0)) == pytest.approx(hamming_ref(brute_argmax(C), P), abs=1e-6)
    assert float(gm.interpolated_loss(C, lam=1e-7, margin=0.3)) == pytest.approx(hamming_ref(brute_argmax(C - 0.3 * P), P), abs=1e-6)


def test_staircase_curves():
    C = rand_C(6, 0)
    out = gm.staircase(C, [0.5, 3.0], margin=0.2, ts=np.linspace(-1, 2, 31))
    assert out["L"][0] >= out["L"][-1] == 0 and set(np.unique(out["L"]) % 2) == {0}
    for lam in (0.5, 3.0):
        assert np.all(out[lam] <= out["L"] + 1e-9)          # f_lam never above the true loss
    assert np.abs(np.diff(out[3.0])).max() < np.abs(np.diff(out["L"])).max()   # smoother than the staircase
    bare = gm.staircase(C, [], margin=0.0, ts=np.linspace(-1, 2, 31) - 0.2)
    assert np.array_equal(bare["L"], out["L"])                # the margin shifts the staircase right by m
    eye = torch.eye(6, dtype=torch.float64)                   # the fast loop is the formula-level functions
    for k in (0, 9, 17, 30):
        t = out["t"][k]
        assert out["L"][k] == float(gm.hamming_loss(gm.solve_matching(C + (t - 0.2) * eye)))
        for lam in (0.5, 3.0):
            assert out[lam][k] == pytest.approx(float(gm.interpolated_loss(C + t * eye, lam=lam, margin=0.2)), abs=1e-12)


# ------------------------------------------------------------------------------------------------
# Graphs and affinities
# ------------------------------------------------------------------------------------------------

def views(n=7, d=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    z_s = torch.nn.functional.normalize(torch.randn(n, d, generator=g, dtype=F64), dim=1)
    z_t = torch.nn.functional.normalize(z_s + 0.3 * torch.randn(n, d, generator=g, dtype=F64), dim=1)
    return z_s, z_t


@pytest.mark.parametrize("k", [1, 3, None])
def test_neighbourhood_loop_reference(k):
    z, _ = views()
    n, tau_g = z.shape[0], 0.2
    A = gm.neighbourhood(z, k=k, tau_graph=tau_g)
    S = z @ z.T
    kk = n - 1 if k is None else k
    for i in range(n):
        others = sorted((j for j in range(n) if j != i), key=lambda j: -float(S[i, j]))[:kk]
        denom = sum(math.exp(float(S[i, j]) / tau_g) for j in others)
        for j in range(n):
            expected = math.exp(float(S[i, j]) / tau_g) / denom if j in others else 0.0
            assert float(A[i, j]) == pytest.approx(expected, abs=1e-12)


def test_second_order_proxy_against_edge_affinity_loops():
    z_s, z_t = views()
    n, beta = z_s.shape[0], 0.7
    A_s, A_t = gm.neighbourhood(z_s, k=3), gm.neighbourhood(z_t, k=3)
    C_v = gm.node_affinity(z_s, z_t)
    K = gm.edge_affinity(A_s, A_t)
    C = gm.affinity(z_s, z_t, beta=beta, k=3)
    for i in range(n):
        for j in range(n):
            second = sum(float(K[i, a, j, b]) * float(C_v[a, b]) for a in range(n) for b in range(n))
            assert float(C[i, j]) == pytest.approx(float(C_v[i, j]) + beta * second, abs=1e-12)
    # the same as the similarity of message-passed features (A z)
    assert torch.allclose(C, C_v + beta * (A_s @ z_s) @ (A_t @ z_t).T, atol=1e-12)
    # the QAP objective as a loop over edge pairs, and the proxy as "one v replaced by C_v"
    v = perm_matrix(torch.randperm(n, generator=torch.Generator().manual_seed(1)).tolist())
    quad = sum(float(K[i, a, j, b]) * float(v[i, j]) * float(v[a, b])
               for i in range(n) for a in range(n) for j in range(n) for b in range(n))
    assert float(gm.qap_objective(v, C_v, A_s, A_t, beta=beta)) == pytest.approx(float((C_v * v).sum()) + beta * quad)
    assert torch.equal(gm.affinity(z_s, z_t, beta=0.0), C_v)


def test_affinity_is_differentiable_end_to_end():
    z_s, z_t = (z.clone().requires_grad_(True) for z in views())
    loss = gm.gm_loss(gm.affinity(z_s, z_t, beta=0.5, k=2), lam=5.0)
    loss.backward()
    assert z_s.grad is not None and torch.isfinite(z_s.grad).all() and torch.isfinite(z_t.grad).all()


# ------------------------------------------------------------------------------------------------
# The InfoNCE baseline
# ------------------------------------------------------------------------------------------------

def nt_xent_views_ref(z_s, z_t, tau):
    """SimCLR's NT-Xent written as a loop from its formula: 2N anchors, one positive each."""
    z = torch.cat([z_s, z_t])
    n2 = z.shape[0]
    n = n2 // 2
    total = 0.0
    for a in range(n2):
        p = (a + n) % n2
        num = torch.exp(z[a] @ z[p] / tau)
        den = num + sum(torch.exp(z[a] @ z[m] / tau) for m in range(n2) if m not in (a, p))
        total = total - torch.log(num / den)
    return total / n2


@pytest.mark.parametrize("tau", [0.1, 0.2, 1.0])
def test_nt_xent_views_against_loop_and_pml(tau):
    from pytorch_metric_learning.losses import NTXentLoss

    x_s, x_t = (1.7 * z.clone().requires_grad_(True) for z in views(6, 3, seed=2))   # pml normalises itself
    z_s, z_t = (torch.nn.functional.normalize(x, dim=1) for x in (x_s, x_t))
    ours = gm.nt_xent_views(z_s @ z_t.T, z_s @ z_s.T, z_t @ z_t.T, tau=tau)
    g_ours = torch.autograd.grad(ours, [x_s, x_t], retain_graph=True)
    ref = nt_xent_views_ref(z_s, z_t, tau)
    g_ref = torch.autograd.grad(ref, [x_s, x_t])
    pml = NTXentLoss(temperature=tau)(torch.cat([x_s, x_t]), torch.arange(6).repeat(2))
    g_pml = torch.autograd.grad(pml, [x_s, x_t])
    for other, grads in ((ref, g_ref), (pml, g_pml)):
        assert float(ours.detach()) == pytest.approx(float(other.detach()), abs=1e-10)
        for a, b in zip(g_ours, grads):
            assert torch.allclose(a, b, atol=1e-10)


def test_infonce_weights_are_dense_and_gm_weights_sparse():
    z_s, z_t = views(10, 3, seed=4)
    C = gm.node_affinity(z_s, z_t)
    y = torch.arange(10)
    W_nce = lv.pair_weights(lambda C_, _y: gm.nt_xent_views(C_, z_s @ z_s.T, z_t @ z_t.T, tau=0.2), C, y, signed=True)
    W_gm = lv.pair_weights(gm.gm_loss, C, y, signed=True, lam=5.0)
    assert bool((torch.diagonal(W_nce) < 0).all()) and bool((W_nce[~torch.eye(10, dtype=bool)] > 0).all())
    assert int((W_gm != 0).sum()) <= 20


# ------------------------------------------------------------------------------------------------
# Bad input
# ------------------------------------------------------------------------------------------------

def test_bad_input():
    C = rand_C(4, 0)
    with pytest.raises(ValueError, match="must be square"):
        gm.solve_matching(rand_C(4, 0)[:3])
    with pytest.raises(ValueError, match="NaN or Inf"):
        gm.gm_loss(torch.full((3, 3), float("nan")))
    with pytest.raises(ValueError, match="λ"):
        gm.gm_loss(C, lam=0.0)
    with pytest.raises(ValueError, match="must be > 0"):
        gm.match(C, lam=-1.0)
    with pytest.raises(ValueError, match="noise"):
        gm.gm_loss(C, noise=-0.1)
    with pytest.raises(ValueError, match="margin"):
        gm.gm_loss(C, margin=-0.1)
    with pytest.raises(ValueError, match="margin"):
        gm.train_graph_matching("gm_1st", margin=-1)
    with pytest.raises(ValueError, match="permutation of 0..N-1"):
        gm.gm_loss(C, torch.tensor([0, 0, 1, 2]))
    with pytest.raises(ValueError, match="integer class ids"):
        gm.gm_loss(C, torch.tensor([0.0, 1.0, 2.0, 3.0]))
    z_s, z_t = views()
    with pytest.raises(ValueError, match="same shape"):
        gm.affinity(z_s, z_t[:5])
    with pytest.raises(ValueError, match="k \\(neighbours per node"):
        gm.neighbourhood(z_s, k=7)
    with pytest.raises(ValueError, match="tau_graph"):
        gm.affinity(z_s, z_t, tau_graph=0.0)
    with pytest.raises(ValueError, match="beta"):
        gm.affinity(z_s, z_t, beta=-0.5)
    with pytest.raises(ValueError, match="at least 2 images"):
        gm.node_affinity(z_s[:1], z_t[:1])
    with pytest.raises(ValueError, match="temperature"):
        gm.nt_xent_views(C, C, C, tau=0.0)
    with pytest.raises(ValueError, match="S_s"):
        gm.nt_xent_views(C, C[:3, :3], C)
    with pytest.raises(ValueError, match="unknown loss"):
        gm.train_graph_matching("hungarian")
    with pytest.raises(ValueError, match="iters"):
        gm.train_graph_matching("gm_1st", iters=0)
    with pytest.raises(ValueError, match="lam"):
        gm.train_graph_matching("gm_1st", lam=0)


# ------------------------------------------------------------------------------------------------
# Data, evaluation, training, panels
# ------------------------------------------------------------------------------------------------

def test_signal_views_are_seeded_augmentations():
    x = torch.randn(5, 40, generator=torch.Generator().manual_seed(0))
    a = gm.signal_views(x, torch.Generator().manual_seed(1))
    b = gm.signal_views(x, torch.Generator().manual_seed(1))
    assert all(torch.equal(p, q) for p, q in zip(a, b)) and a[0].shape == (5, 40)
    assert not torch.equal(a[0], a[1])


def test_view_batch_is_deterministic():
    a, b = gm.view_batch(8), gm.view_batch(8)
    assert torch.equal(a[0], b[0]) and a[0].shape == (8, 32) and a[0].dtype == F64
    assert torch.allclose(a[0].norm(dim=1), torch.ones(8, dtype=F64))


def test_train_graph_matching_records_and_caches():
    T.clear_cache()
    run = gm.train_graph_matching("gm_2nd", iters=12, eval_every=6, progress=False)
    assert list(run.evals["iter"]) == [0, 6, 12] and len(run.history["loss"]) == 12
    assert set(run.history) >= {"iter", "loss", "train_match", "nnz"}
    assert np.all(run.history["nnz"] <= 2 * 64) and np.all(run.history["loss"] % 2 == 0)
    assert np.allclose(run.history["loss"], 2 * 64 * (1 - run.history["train_match"]))
    assert 0 <= run.evals["view_match"][-1] <= 1 and "GM-2nd" in repr(run)
    assert set(run.scores) == {"knn_init", "knn"} and 0.1 < run.scores["knn_init"] < 0.9
    assert run.params["margin"] == 0.2 and run.params["lam"] == 80.0           # BB-GM's knobs by default
    assert gm.train_graph_matching("gm_2nd", iters=12, eval_every=6, progress=False, margin=0.0) is not run
    assert gm.train_graph_matching("gm_2nd", iters=12, eval_every=6, progress=False) is run
    assert gm.train_graph_matching("gm_2nd", iters=12, eval_every=6, progress=False, tau=0.9) is run   # tau: not a GM knob
    nce = gm.train_graph_matching("infonce", iters=6, eval_every=6, progress=False)
    assert np.all(nce.history["nnz"] == 64 * 64) and np.all(np.isfinite(nce.history["loss"]))


def test_matching_panel_redraws_on_every_knob():
    z_s, z_t = gm.view_batch(12)
    panel = gm.matching_panel(z_s, z_t, lam=5.0, beta=0.0, k=3)
    img = panel.fig.axes[1].images[0]
    drawn = drawn_artists(panel.fig)
    assert panel.state["nnz"] <= 2 * 12 and torch.equal(panel.state["C"], gm.node_affinity(z_s, z_t))
    before = panel.state["W_gm"].clone()
    panel.controls["lam"].value = 0.05                     # tiny lam: the perturbation rarely changes anything
    assert panel.state["nnz"] <= int((before != 0).sum())
    assert np.allclose(np.abs(img.get_array()).max(), 0 if panel.state["nnz"] == 0 else 1 / 0.05)
    W_nce = panel.state["W_nce"].clone()
    panel.controls["tau"].value = 0.9
    assert not torch.equal(W_nce, panel.state["W_nce"])
    C = panel.state["C"].clone()
    panel.controls["beta"].value = 1.0
    assert not torch.equal(C, panel.state["C"])
    panel.controls["k"].value = 5
    assert f"{panel.state['wrong']} of 12" in panel.state["status"]
    panel.controls["lam"].value = 1e6                      # clamped by the slider (BB-GM's 80 inside)
    assert panel.controls["lam"].value == pytest.approx(200)
    panel.controls["margin"].value = 0.0
    nnz_bare, wrong = panel.state["nnz"], panel.state["wrong"]
    assert nnz_bare == 2 * wrong and panel.state["thin"] == 0 # perceptron regime: 2 entries per wrong row
    panel.controls["margin"].value = 0.5
    assert panel.state["nnz"] == 2 * (wrong + panel.state["thin"]) >= nnz_bare
    assert panel.state["wrong"] == wrong                   # the matching shown is the bare one
    assert same_artists(drawn, drawn_artists(panel.fig)), "the knobs move the artists, never rebuild them"


def test_training_panel_trains_on_press():
    T.clear_cache()
    panel = gm.training_panel(iters=8)
    first = panel.state["result"]
    assert first.params["loss"] == "gm_1st" and "GM-1st" in panel.state["status"]
    panel.controls["loss"].value = "infonce"
    assert panel.state["stale"]
    again = panel.train()
    assert again.params["loss"] == "infonce" and len(panel.fig.axes[0].lines) >= 1
