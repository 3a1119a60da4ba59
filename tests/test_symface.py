"""SymFace's symmetry loss (reconstructed) and its variants against loops written from the
formulas, the synthetic faces' symmetry checked numerically, the 3PSS frontness filter, bad
input, the training run and the two panels driven without a browser."""

import math
import socket

import numpy as np
import pytest
import torch

from lossviz.papers import symface as sy
from _util import drawn_artists, same_artists


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


# ---------------------------------------------------------------- loop references (float64)

def cos_ref(a, b):
    dot = sum(a[k] * b[k] for k in range(len(a)))
    return dot / (torch.sqrt(sum(a[k] ** 2 for k in range(len(a)))) * torch.sqrt(sum(b[k] ** 2 for k in range(len(b)))))


def symmetry_ref(zl, zr, rho, rho_min, weighted=True):
    """L = (1/n) sum_{rho_i >= rho_min} rho_i (1 - cos(zl_i, zr_i)), one face at a time."""
    total, n = 0.0, 0
    for i in range(len(rho)):
        if float(rho[i]) >= rho_min:
            n += 1
            total = total + (rho[i] if weighted else 1.0) * (1 - cos_ref(zl[i], zr[i]))
    return total / max(n, 1)


def infonce_ref(zl, zr, labels, rho, rho_min, tau):
    """NT-Xent over the kept halves: for each ordered pair (a, p) of distinct halves of the same
    person, -log e^{s_ap/T} / (e^{s_ap/T} + sum over halves n of other people e^{s_an/T});
    mean over those pairs."""
    halves = [(zl[i], int(labels[i])) for i in range(len(rho)) if float(rho[i]) >= rho_min]
    halves += [(zr[i], int(labels[i])) for i in range(len(rho)) if float(rho[i]) >= rho_min]
    terms = []
    for a, (za, ya) in enumerate(halves):
        negs = [cos_ref(za, zn) / tau for n, (zn, yn) in enumerate(halves) if yn != ya]
        for p, (zp, yp) in enumerate(halves):
            if p != a and yp == ya:
                s = cos_ref(za, zp) / tau
                terms.append(-(s - torch.logsumexp(torch.stack([s, *negs]), 0)))
    return sum(terms) / len(terms)


def arcface_halves_ref(cl, cr, labels, rho, rho_min, s, m):
    rows = [(c[i], int(labels[i])) for c in (cl, cr) for i in range(len(rho)) if float(rho[i]) >= rho_min]
    total = 0.0
    for c, y in rows:
        logits = [s * math.cos(math.acos(float(c[k])) + m) if k == y else s * float(c[k]) for k in range(len(c))]
        top = max(logits)
        total += -(logits[y] - top - math.log(sum(math.exp(v - top) for v in logits)))
    return total / len(rows)


def batch(seed, n=9, d=5, ids=3):
    g = torch.Generator().manual_seed(seed)
    zl = torch.randn(n, d, generator=g, dtype=torch.float64, requires_grad=True)
    zr = torch.randn(n, d, generator=g, dtype=torch.float64, requires_grad=True)
    rho = torch.rand(n, generator=g, dtype=torch.float64)
    labels = torch.randint(0, ids, (n,), generator=g)
    return zl, zr, rho, labels


# ---------------------------------------------------------------- the loss

@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("rho_min", [0.0, 0.3, 0.7])
@pytest.mark.parametrize("weighted", [True, False])
def test_cosine_loss_values_and_gradients_equal_the_loop(seed, rho_min, weighted):
    zl, zr, rho, _ = batch(seed)
    got = sy.symmetry_loss(zl, zr, rho, rho_min=rho_min, weighted=weighted)
    ref = symmetry_ref(zl, zr, rho, rho_min, weighted)
    assert float(got.detach()) == pytest.approx(float(ref.detach()), abs=1e-12)
    g_got = torch.autograd.grad(got, (zl, zr))
    g_ref = torch.autograd.grad(ref, (zl, zr))
    for a, b in zip(g_got, g_ref):
        assert torch.allclose(a, b, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("tau", [0.1, 0.5])
def test_infonce_variant_equals_the_loop(seed, tau):
    zl, zr, rho, labels = batch(seed)
    got = sy.symmetry_loss(zl, zr, rho, rho_min=0.2, labels=labels, variant="infonce", tau=tau)
    ref = infonce_ref(zl, zr, labels, rho, 0.2, tau)
    assert float(got.detach()) == pytest.approx(float(ref.detach()), rel=1e-10)
    for a, b in zip(torch.autograd.grad(got, (zl, zr)), torch.autograd.grad(ref, (zl, zr))):
        assert torch.allclose(a, b, atol=1e-10)


@pytest.mark.parametrize("seed", [0, 1])
def test_arcface_on_halves_equals_the_loop(seed):
    g = torch.Generator().manual_seed(seed)
    cl, cr = (torch.rand(8, 4, generator=g, dtype=torch.float64) * 1.8 - 0.9 for _ in range(2))
    labels, rho = torch.randint(0, 4, (8,), generator=g), torch.rand(8, generator=g, dtype=torch.float64)
    got = sy.half_arcface_loss(cl, cr, labels, rho, rho_min=0.4, s=16.0, m=0.3)
    assert float(got) == pytest.approx(arcface_halves_ref(cl, cr, labels, rho, 0.4, 16.0, 0.3), rel=1e-10)


def test_pull_weights_are_rho_over_n_on_kept_faces_and_nothing_else():
    """The GPW view: dL/dc_i = -rho_i / n for kept faces, 0 otherwise; no pair is pushed."""
    zl, zr, rho, labels = batch(5, n=10)
    rho_min = 0.4
    S = sy.similarity(torch.cat([zl, zr]).detach())
    Wt = sy.half_pair_weights(S, torch.cat([labels, labels]), rho=rho, rho_min=rho_min)
    keep = rho >= rho_min
    expected = torch.where(keep, -rho / keep.sum(), torch.zeros_like(rho))
    assert torch.allclose(Wt.diagonal(offset=10), expected / 2, atol=1e-15)
    assert torch.equal(Wt, Wt.T), "half of the pull on each of the two entries of S"
    off = Wt.clone()
    off.diagonal(offset=10).zero_()
    off.diagonal(offset=-10).zero_()
    assert int(keep.sum()) >= 1 and bool((off == 0).all())
    push = sy.half_pair_weights(S, torch.cat([labels, labels]), rho=rho, rho_min=rho_min, variant="infonce")
    assert float(push.clamp(min=0).sum()) > 0, "InfoNCE pushes other people's halves apart"


def test_frontness_filter_gives_no_gradient_to_turned_faces():
    zl, zr, rho, _ = batch(7)
    rho_min = float(rho.median())
    loss = sy.symmetry_loss(zl, zr, rho, rho_min=rho_min)
    gl, gr = torch.autograd.grad(loss, (zl, zr))
    dropped = rho < rho_min
    assert bool(dropped.any()) and bool((gl[dropped] == 0).all()) and bool((gr[dropped] == 0).all())
    assert bool((gl[~dropped].abs().sum(1) > 0).all())


@pytest.mark.parametrize("variant", ["cosine", "infonce"])
def test_no_face_kept_gives_zero_not_nan(variant):
    zl, zr, rho, labels = batch(8)
    loss = sy.symmetry_loss(zl, zr, rho * 0.5, rho_min=0.9, labels=labels, variant=variant)
    (gl,) = torch.autograd.grad(loss, (zl,), allow_unused=True)
    assert float(loss.detach()) == 0.0 and (gl is None or bool((gl == 0).all()))
    cl = torch.rand(9, 3, dtype=torch.float64)
    assert float(sy.half_arcface_loss(cl, cl, labels, rho * 0.5, rho_min=0.9)) == 0.0


@pytest.mark.parametrize("backbone", ["mlp", "cnn"])
@pytest.mark.parametrize("fill", sy.FILLS)
def test_symmetric_faces_give_zero_loss_for_any_network(backbone, fill):
    """The exact check: x equal to its mirror image -> x_L == x_R' -> L_rho = 0."""
    x = sy.face_templates(6, seed=3)
    assert torch.equal(x, sy.mirror(x))
    xl, xr = sy.split_halves(x, fill=fill)
    assert torch.equal(xl, xr)
    for seed in (0, 1):
        torch.manual_seed(seed)
        net = sy.face_net(backbone)
        zl, zr = net(xl), net(xr)
        assert torch.equal(zl, zr), "identical inputs, identical embeddings, bit for bit"
        # 1 - cos(z, z) is 0 up to float32 rounding
        assert float(sy.symmetry_loss(zl, zr, torch.ones(6), rho_min=0.5).detach()) < 1e-6
    xl_nm, xr_nm = sy.split_halves(x, mirror=False, fill=fill)
    assert not torch.equal(xl_nm, xr_nm), "without the mirror the halves do not correspond"


# ---------------------------------------------------------------- halves, frontness

def test_split_halves_completes_each_half_by_its_mirror_image():
    """The default: x_L = [left | mirror(left)], x_R' = [mirror(right) | right], two symmetric faces."""
    x = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(2, 3, 4)
    xl, xr = sy.split_halves(x)
    assert xl.shape == xr.shape == x.shape
    assert torch.equal(xl, x[..., [0, 1, 1, 0]]) and torch.equal(xr, x[..., [3, 2, 2, 3]])
    assert torch.equal(xl, sy.mirror(xl)) and torch.equal(xr, sy.mirror(xr)), "both views are symmetric faces"
    _, xr_plain = sy.split_halves(x, mirror=False)
    assert torch.equal(xr_plain, x[..., [2, 3, 3, 2]])


def test_split_halves_cuts_mirrors_and_pads():
    x = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(2, 3, 4)
    xl, xr = sy.split_halves(x, fill="zero")
    assert xl.shape == xr.shape == x.shape
    assert torch.equal(xl[..., :2], x[..., :2]) and bool((xl[..., 2:] == 0).all())
    assert torch.equal(xr[..., 0], x[..., 3]) and torch.equal(xr[..., 1], x[..., 2]) and bool((xr[..., 2:] == 0).all())
    _, xr_plain = sy.split_halves(x, mirror=False, fill="zero")
    assert torch.equal(xr_plain[..., :2], x[..., 2:])
    xl_big, _ = sy.split_halves(x, fill="resize")
    assert torch.equal(xl_big[..., 0], x[..., 0]) and torch.equal(xl_big[..., 1], x[..., 0])


def frontness_ref(el, er, n, d_max):
    D = abs((el + er) / 2 - n) / abs(er - el)
    return min(max(1 - D / d_max, 0.0), 1.0)


def test_frontness_equals_the_formula():
    g = np.random.default_rng(0)
    el, er, n = g.uniform(1, 4, 50), g.uniform(7, 10, 50), g.uniform(4, 7, 50)
    for d_max in (1 / 6, 0.3):
        got = sy.frontness(torch.tensor(el), torch.tensor(er), torch.tensor(n), d_max=d_max)
        ref = [frontness_ref(a, b, c, d_max) for a, b, c in zip(el, er, n)]
        assert np.allclose(got.numpy(), ref, atol=1e-12)
    assert float(sy.frontness(3.0, 9.0, 6.0)) == 1.0 and float(sy.frontness(3.0, 9.0, 7.0)) == 0.0


# ---------------------------------------------------------------- the synthetic faces

def test_faces_are_symmetric_per_identity_and_the_nuisances_are_not():
    clean = sy.make_faces(20, 6, nuisance=0.0, noise=0.0, landmark_noise=0.0, seed=1)
    centred = clean.shift == 0
    assert torch.equal(clean.x[centred], sy.mirror(clean.x[centred])), "a centred clean face is exactly symmetric"
    assert not torch.equal(clean.x[~centred], sy.mirror(clean.x[~centred])), "a shifted face is not"
    assert torch.equal(clean.rho, (clean.shift == 0).float()), "rho = 1 if centred, else 0"
    nuis = sy.make_faces(20, 6, nuisance=1.0, noise=0.0, seed=1)
    r = sy.mirror_correlation(nuis.x[nuis.shift == 0])
    assert float(r.max()) < 1 - 1e-3, "one-sided nuisances break the symmetry of every image"
    ramp = sy.lighting_ramp(torch.tensor([-1, 1]), torch.tensor([1.0, 0.5]))
    half = sy.SIZE // 2
    assert bool((ramp[0, :, half:] == 0).all()) and float(ramp[0, 0, 0]) == 1.0
    assert bool((ramp[1, :, :half] == 0).all()) and float(ramp[1, 0, -1]) == 0.5


def test_faces_shapes_determinism_split_and_share_of_frontal_images(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("the faces must be generated offline")

    monkeypatch.setattr(socket, "socket", no_network)
    a, b, c = sy.faces(seed=0), sy.faces(seed=0), sy.faces(seed=1)
    assert a.train.x.shape == (2000, 12, 12) and a.test.x.shape == (1000, 12, 12)
    assert a.train.x.dtype == torch.float32 and a.train.y.dtype == torch.int64
    assert torch.equal(a.train.x, b.train.x) and not torch.equal(a.train.x, c.train.x)
    assert not set(a.train.y.tolist()) & set(a.test.y.tolist()), "verification is on unseen people"
    share = float((a.train.shift == 0).float().mean())
    assert 0.28 < share < 0.39
    kept = a.train.rho >= 0.5
    assert torch.equal(kept, a.train.shift == 0), "rho_min = 0.5 keeps exactly the centred faces"
    assert torch.equal(a.templates, a.templates.flip(-1))


def test_mirror_test_equal_rates_for_symmetric_centres():
    f = sy.make_faces(10, 8, seed=2)
    rates = sy.mirror_test(f.x, f.y, centres=sy.face_templates(10, seed=2))
    assert all(r == rm for r, rm in rates.values()) and max(r for r, _ in rates.values()) > 0


# ---------------------------------------------------------------- measures

def test_spread_equals_the_pair_loop():
    g = torch.Generator().manual_seed(0)
    z, y = torch.randn(12, 4, generator=g, dtype=torch.float64), torch.tensor([0, 1, 2] * 4)
    intra, inter = [], []
    for i in range(12):
        for j in range(i + 1, 12):
            (intra if y[i] == y[j] else inter).append(1 - float(cos_ref(z[i], z[j])))
    got = sy.spread(z, y)
    assert got["intra"] == pytest.approx(np.mean(intra), abs=1e-12)
    assert got["inter"] == pytest.approx(np.mean(inter), abs=1e-12)


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize("call,match", [
    (lambda z, r, y: sy.symmetry_loss(z, z[:-1], r), "same shape"),
    (lambda z, r, y: sy.symmetry_loss(z, z, r[:-1]), r"rho must have shape \(9,\)"),
    (lambda z, r, y: sy.symmetry_loss(z, z, r + 1.5), r"rho \(frontness\) must lie in \[0, 1\]"),
    (lambda z, r, y: sy.symmetry_loss(z, z, torch.ones(9, dtype=torch.long)), "floating point"),
    (lambda z, r, y: sy.symmetry_loss(z, z, r, rho_min=1.5), r"rho_min \(the frontness threshold\) must be in \[0, 1\]"),
    (lambda z, r, y: sy.symmetry_loss(z * float("nan"), z, r), "NaN or Inf"),
    (lambda z, r, y: sy.symmetry_loss(z, z, r, variant="infonce"), "needs labels"),
    (lambda z, r, y: sy.symmetry_loss(z, z, r, labels=y.double(), variant="infonce"), "integer class ids"),
    (lambda z, r, y: sy.symmetry_loss(z, z, r, variant="mse"), "variant must be 'cosine' or 'infonce'"),
    (lambda z, r, y: sy.symmetry_loss(z, z, r, labels=y, variant="infonce", tau=0), "tau"),
    (lambda z, r, y: sy.half_pair_loss(torch.zeros(3, 3), torch.zeros(3, dtype=torch.long), rho=r), "2n x 2n"),
    (lambda z, r, y: sy.split_halves(torch.zeros(2, 4, 5)), "width must be even"),
    (lambda z, r, y: sy.split_halves(torch.zeros(2, 4, 4), fill="crop"), "unknown fill 'crop'"),
    (lambda z, r, y: sy.frontness(3.0, 3.0, 3.0), "eye distance 0"),
    (lambda z, r, y: sy.frontness(3.0, 9.0, 6.0, d_max=0), "d_max"),
    (lambda z, r, y: sy.make_faces(0), "n_ids must be an integer >= 1"),
    (lambda z, r, y: sy.make_faces(3, nuisance=-1), "nuisance"),
    (lambda z, r, y: sy.faces(n_train=300), "n_train must be an integer"),
    (lambda z, r, y: sy.face_net("resnet"), "unknown backbone 'resnet'"),
    (lambda z, r, y: sy.train_symface(variant="mse"), "unknown variant 'mse'"),
    (lambda z, r, y: sy.train_symface(w_sym=-1), "w_sym"),
    (lambda z, r, y: sy.spread(z, torch.zeros(9, dtype=torch.long)), "both same-label and different-label"),
])
def test_bad_input_raises_a_clear_error(call, match):
    zl, _, rho, labels = batch(0)
    with pytest.raises(ValueError, match=match):
        call(zl.detach(), rho, labels)


# ---------------------------------------------------------------- training and panels

def test_training_runs_is_cached_and_pulls_the_halves_together():
    base = sy.train_symface(w_sym=0.0, iters=40, eval_every=20, progress=False)
    sym = sy.train_symface(w_sym=1.0, iters=40, eval_every=20, progress=False)
    assert sy.train_symface(w_sym=1.0, iters=40, eval_every=20, progress=False) is sym
    assert list(sym.evals["iter"]) == [0, 20, 40] and len(sym.history["arcface"]) == 40
    assert list(sym.history["sym_iter"]) == list(range(10, 41, 10))
    assert 0 <= sym.tar <= 1 and sym.cross_half_cos.ndim == 1 and len(sym.half_cos_after) == 1000
    assert sym.scores["half_disparity"] < base.scores["half_disparity"]
    assert set(sym.scores) >= {"tar", "tar_before", "intra", "inter", "half_intra", "half_inter", "light_sensitivity"}
    assert sym.params["fill"] == "mirror", "halves enter as mirror-completed faces by default"


def test_symmetry_panel_redraws_with_the_knobs():
    torch.manual_seed(0)
    panel = sy.symmetry_panel(sy.face_net(), w_sym=1.0, rho_min=0.5)
    drawn = drawn_artists(panel.fig)
    kept = int(panel.state["keep"].sum())
    assert 0 < kept < len(panel.state["keep"]) and panel.state["push"] == 0
    keep, rho = panel.state["keep"], panel.state["rho"].double()
    assert torch.allclose(panel.state["pull"][keep], rho[keep] / kept) and bool((panel.state["pull"][~keep] == 0).all())
    panel.controls["rho_min"].value = 0.0
    assert int(panel.state["keep"].sum()) == len(panel.state["keep"])
    panel.controls["variant"].value = "infonce"
    assert panel.state["push"] > 0
    panel.controls["w_sym"].value = 0.0
    assert float(panel.state["W"].abs().sum()) == 0.0 and panel.state["loss"] == 0.0
    panel.controls["w_sym"].value = 5.0
    assert panel.controls["w_sym"].value == 2.0, "the slider clamps w_sym to its range"
    panel.controls["nuisance"].value = 0.5
    panel.controls["mirror"].value = False
    assert same_artists(drawn, drawn_artists(panel.fig)), "the knobs move the artists, never rebuild them"


def test_training_panel_trains_the_setting_and_its_baseline():
    panel = sy.training_panel(iters=20)
    r = panel.state["result"]
    assert r["run"].params["w_sym"] == 1.0 and r["base"].params["w_sym"] == 0.0
    assert "TAR@FAR=1e-2" in panel.state["status"] and not panel.state["stale"]
    panel.controls["rho_min"].value = 0.0
    assert panel.state["stale"]
    panel.train()
    assert panel.state["result"]["run"].params["rho_min"] == 0.0
    assert panel.state["result"]["base"].params["rho_min"] == 0.0
