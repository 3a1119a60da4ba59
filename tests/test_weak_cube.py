"""Weak Cube R-CNN (lossviz.papers.weak_cube): the projection identity, every loss against a loop
written from its formula (values and gradients), the stacked training, panels and bad input."""

import math
import time

import numpy as np
import pytest
import torch

from lossviz.papers import weak_cube as WC
from _util import drawn_artists, same_artists

pytestmark = pytest.mark.usefixtures("one_thread")


def cubes(seed, n=6):
    g = torch.Generator().manual_seed(seed)
    center = torch.stack([torch.rand(n, generator=g, dtype=torch.float64) * 2 - 1,
                          torch.rand(n, generator=g, dtype=torch.float64) * 0.5,
                          3 + 4 * torch.rand(n, generator=g, dtype=torch.float64)], 1)
    dims = 0.3 + torch.rand(n, 3, generator=g, dtype=torch.float64)
    yaw = (torch.rand(n, generator=g, dtype=torch.float64) * 2 - 1) * math.pi
    cat = torch.randint(0, 4, (n,), generator=g)
    return center, dims, yaw, cat, g


def loop_box(c, d, yaw):
    """The tight box of the 8 corners, one cube, written out with the rotation matrix."""
    R = torch.stack([torch.stack([torch.cos(yaw), torch.zeros(()), torch.sin(yaw)]),
                     torch.tensor([0.0, 1.0, 0.0], dtype=c.dtype),
                     torch.stack([-torch.sin(yaw), torch.zeros(()), torch.cos(yaw)])]).to(c.dtype)
    us, vs = [], []
    for sx in (-0.5, 0.5):
        for sy in (-0.5, 0.5):
            for sz in (-0.5, 0.5):
                X = c + R @ (d * torch.tensor([sx, sy, sz], dtype=c.dtype))
                us.append(120 * X[0] / X[2] + 64)
                vs.append(120 * X[1] / X[2] + 48)
    return torch.stack([min(us), min(vs), max(us), max(vs)])


def loop_giou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    C = (max(a[2], b[2]) - min(a[0], b[0])) * (max(a[3], b[3]) - min(a[1], b[1]))
    return inter / union - (C - union) / C


def test_projected_box_matches_the_loop():
    center, dims, yaw, _, _ = cubes(0)
    box = WC.projected_box(center, dims, yaw)
    for i in range(len(yaw)):
        assert torch.allclose(box[i], loop_box(center[i], dims[i], yaw[i]), atol=1e-10)


@pytest.mark.parametrize("k", [0.5, 2.0, 3.0])
def test_property_scaling_centre_and_dims_leaves_the_box_unchanged(k):
    center, dims, yaw, _, _ = cubes(1)
    assert torch.allclose(WC.projected_box(k * center, k * dims, yaw), WC.projected_box(center, dims, yaw),
                          atol=1e-9)
    obj = WC.example_object()
    g = WC.ray_landscape(obj, torch.linspace(0.5, 3, 11), torch.linspace(-1, 1, 5))
    assert float((g["iou"] - g["iou"][:, :1]).abs().max()) < 1e-12            # a flat valley along k


def test_giou_and_iou_loss_match_the_loop_values_and_gradients():
    center, dims, yaw, _, g = cubes(2)
    gt = WC.projected_box(center, dims, yaw) + 3 * torch.randn(6, 4, generator=g, dtype=torch.float64)
    gt[:, 2:] = torch.maximum(gt[:, 2:], gt[:, :2] + 1)
    c1, c2 = center.clone().requires_grad_(True), center.clone().requires_grad_(True)
    ours = WC.iou_loss(WC.projected_box(c1, dims * 1.3, yaw), gt)
    ref = sum(1 - loop_giou(loop_box(c2[i], dims[i] * 1.3, yaw[i]), gt[i]) for i in range(6)) / 6
    ours.backward()
    ref.backward()
    assert torch.allclose(ours, ref, atol=1e-12) and torch.allclose(c1.grad, c2.grad, atol=1e-10)
    assert torch.allclose(WC.giou(gt, gt), torch.ones(6, dtype=torch.float64))
    far = gt + 1000
    assert bool((WC.giou(gt, far) < 0).all()) and bool((WC.box_iou(gt, far) == 0).all())


@pytest.mark.parametrize("m", [0.5, 1.0, 3.0])
def test_dims_hinge_matches_the_loop(m):
    _, dims, _, cat, _ = cubes(3, n=8)
    d1, d2 = dims.clone().requires_grad_(True), dims.clone().requires_grad_(True)
    ours = WC.dims_hinge_loss(d1, cat, sigma_mult=m)
    ref = 0
    for i in range(8):
        for j in range(3):
            zd = abs(d2[i, j] - WC.PRIOR_MU[cat[i], j]) / (m * WC.PRIOR_SIGMA[cat[i], j])
            ref = ref + max(zd - 1, torch.zeros((), dtype=torch.float64))
    ref = ref / 8
    ours.backward()
    ref.backward()
    assert torch.allclose(ours, ref, atol=1e-12) and torch.allclose(d1.grad, d2.grad, atol=1e-12)
    inside = WC.PRIOR_MU[cat] + 0.9 * m * WC.PRIOR_SIGMA[cat]
    assert float(WC.dims_hinge_loss(inside, cat, sigma_mult=m)) == 0.0                # no signal inside 1 sigma


def test_z_pseudo_full_and_pose_alignment_match_loops():
    center, dims, yaw, _, g = cubes(4, n=7)
    zp = center[:, 2] * (1 + 0.1 * torch.randn(7, generator=g, dtype=torch.float64))
    assert torch.allclose(WC.z_pseudo_loss(center[:, 2], zp), sum(abs(center[i, 2] - zp[i]) for i in range(7)) / 7)
    c2, d2, y2 = center.flip(0), dims.flip(0), yaw.flip(0)
    ref = sum(sum(abs(center[i, j] - c2[i, j]) + abs(dims[i, j] - d2[i, j]) for j in range(3)) / 7
              + (1 - math.cos(2 * (yaw[i] - y2[i]))) / 7 for i in range(7))
    assert torch.allclose(WC.full_supervision_loss(center, dims, yaw, c2, d2, y2), ref.double(), atol=1e-12)
    assert float(WC.full_supervision_loss(center, dims, yaw + math.pi, center, dims, yaw)) < 1e-12   # pi symmetry
    image = torch.tensor([0, 0, 1, 1, 1, 2, 3])                               # images 2 and 3: one object each
    y1 = yaw.clone().requires_grad_(True)
    ours = WC.pose_alignment_loss(y1, image)
    pairs = [(i, j) for i in range(7) for j in range(i + 1, 7) if image[i] == image[j]]
    y3 = yaw.clone().requires_grad_(True)
    ref = sum(1 - torch.cos(y3[i] - y3[j]).abs() for i, j in pairs) / len(pairs)
    ours.backward()
    ref.backward()
    assert torch.allclose(ours, ref) and torch.allclose(y1.grad, y3.grad)
    lone = WC.pose_alignment_loss(yaw.clone().requires_grad_(True), torch.arange(7))   # no pair at all: the guard
    assert float(lone.detach()) == 0.0 and lone.requires_grad


def test_yaw_error_is_modulo_pi():
    assert abs(float(WC.yaw_error(torch.tensor(math.pi + 0.1), torch.tensor(0.0))) - 0.1) < 1e-6
    assert abs(float(WC.yaw_error(torch.tensor(-0.2), torch.tensor(0.1))) - 0.3) < 1e-6


def test_decode_and_term_losses_agree_with_the_public_losses():
    world = WC.make_objects(0, n=16)
    g = torch.Generator().manual_seed(0)
    o = 0.3 * torch.randn(2, 16, 8, generator=g)
    center, dims, yaw = WC.decode(o, world["box"], world["cat"])
    assert torch.allclose(center[..., 2], torch.exp(o[..., 0] + 1.5))
    uv = WC.project(center)
    mid, half = (world["box"][:, :2] + world["box"][:, 2:]) / 2, (world["box"][:, 2:] - world["box"][:, :2]) / 2
    assert torch.allclose(uv, mid + o[..., 1:3] * half, atol=1e-3)               # the centre stays on its ray
    zp = WC.pseudo_depth(world["center"][:, 2], world["eps"])
    L = WC.term_losses(center, dims, yaw, world, zp, sigma_mult=1.0)
    for m in range(2):
        box = WC.projected_box(center[m], dims[m], yaw[m])
        want = [WC.iou_loss(box, world["box"]), WC.dims_hinge_loss(dims[m], world["cat"]),
                WC.z_pseudo_loss(center[m, :, 2], zp),
                WC.full_supervision_loss(center[m], dims[m], yaw[m], world["center"], world["dims"], world["yaw"])]
        assert torch.allclose(L[m], torch.stack(want), atol=1e-5)


def test_world_is_seeded_and_on_the_floor():
    a, b = WC.make_objects(3, n=50), WC.make_objects(3, n=50)
    assert all(torch.equal(a[k], b[k]) for k in a)
    bottom = a["center"][:, 1] + a["dims"][:, 1] / 2
    assert torch.allclose(bottom, torch.full_like(bottom, 1.2), atol=1e-5)
    assert bool((a["center"][:, 2] >= 2).all() and (a["center"][:, 2] <= 8).all())
    assert torch.allclose(a["box"], WC.projected_box(a["center"], a["dims"], a["yaw"]))


def test_term_gradients_which_term_pushes_what():
    obj = WC.example_object()
    g = WC.term_gradients(obj)
    assert g["iou"]["along the ray"] < 1e-9 and g["iou"]["z"] > 1e-3 and g["iou"]["yaw"] > 1e-3
    assert g["dims"]["z"] == 0 and g["dims"]["yaw"] == 0 and g["dims"]["dims"] > 0
    assert g["z"]["dims"] == 0 and g["z"]["yaw"] == 0 and abs(g["z"]["z"] - 1) < 1e-12
    inside = dict(obj, dims=WC.PRIOR_MU[obj["cat"]].clone())
    assert WC.term_gradients(inside, k=1.0)["dims"]["dims"] == 0.0                # the hinge is silent inside


def test_stacked_training_pairs_the_seeds_and_equals_a_run_alone():
    both = WC.train_configs(("iou", "full"), seeds=(0, 1), steps=20)
    alone = WC.train_configs(("full",), seeds=(1,), steps=20)
    assert both.scores["z_err"].shape == (2, 2)
    assert np.allclose(both.score("z_err", "full")[1], alone.scores["z_err"][0, 0], rtol=1e-4)
    assert WC.train_configs(("iou", "full"), seeds=(0, 1), steps=20) is both            # cached
    assert both.evals["iter"][0] == 0 and both.evals["iter"][-1] == 20
    assert both.scene["center"].shape == (2, 8, 3) and both.scene["z_test"].shape == (2, 2000)


def test_bad_input():
    center, dims, yaw, cat, _ = cubes(5, n=4)
    with pytest.raises(ValueError, match="same shape"):
        WC.projected_box(center, dims[:3], yaw)
    with pytest.raises(ValueError, match="dims must be > 0"):
        WC.projected_box(center, -dims, yaw)
    with pytest.raises(ValueError, match="in front of the camera"):
        WC.projected_box(center * torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64), dims, yaw)
    with pytest.raises(ValueError, match="NaN or Inf"):
        WC.z_pseudo_loss(center[:, 2] * math.nan, center[:, 2])
    with pytest.raises(ValueError, match="same shape"):
        WC.z_pseudo_loss(center[:, 2], center[:3, 2])
    with pytest.raises(ValueError, match="integer class ids"):
        WC.dims_hinge_loss(dims, cat.float())
    with pytest.raises(ValueError, match="sigma_mult"):
        WC.dims_hinge_loss(dims, cat, sigma_mult=0)
    with pytest.raises(ValueError, match=r"category ids must be in \[0, 4\)"):
        WC.dims_hinge_loss(dims, cat + 4)
    with pytest.raises(ValueError, match="u2 >= u1"):
        WC.giou(torch.tensor([[0.0, 0, -1, 1]]), torch.tensor([[0.0, 0, 1, 1]]))
    with pytest.raises(ValueError, match="N x 4"):
        WC.giou(torch.zeros(2, 3), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="k must be > 0"):
        WC.ray_landscape(WC.example_object(), [0.0, 1.0], [0.0])
    with pytest.raises(ValueError, match="unknown configuration"):
        WC.train_configs(("iou+depth",), seeds=(0,), steps=1)
    with pytest.raises(ValueError, match="not all 0"):
        WC.train_configs(((0, 0, 0, 0),), seeds=(0,), steps=1)
    with pytest.raises(ValueError, match="noise"):
        WC.train_configs(("iou",), seeds=(0,), steps=1, noise=2.0)


def test_landscape_panel_without_a_browser():
    panel = WC.landscape_panel()
    assert not panel.state["flat"] and abs(panel.state["k_best"] - 1) < 0.05
    drawn = drawn_artists(panel.fig)
    panel.controls["w_dims"].value = 0.0
    panel.controls["w_z"].value = 0.0
    assert panel.state["flat"]                                               # L_iou alone: flat along the ray
    panel.controls["w_z"].value = 5.0
    panel.controls["bias"].value = 1.2
    assert abs(panel.state["k_best"] - 1.2) < 0.05                           # a biased depth moves the whole cube
    start = time.perf_counter()
    panel.controls["sigma_mult"].value = 2.0
    panel.fig.canvas.draw()
    assert time.perf_counter() - start < 0.5
    assert same_artists(drawn, drawn_artists(panel.fig)), "the knobs move the artists, never rebuild them"


def test_training_panel_without_a_browser():
    panel = WC.training_panel(autorun=False, steps=20)
    assert "press <b>Train</b>" in panel.status.value
    panel.controls["full"].value = True
    panel.controls["iou"].value = False
    panel.controls["dims"].value = False
    panel.controls["z"].value = False
    result = panel.train()
    assert result.configs == ((0.0, 0.0, 0.0, 1.0),) and "z error" in panel.status.value
    panel.controls["full"].value = False                                     # nothing ticked: iou alone
    assert panel.train().configs == ((1.0, 0.0, 0.0, 0.0),)


def test_the_time_equalised_baseline_draws_from_its_labelled_subset():
    runs = WC.train_configs(("full", "full-eq"), seeds=(0,), steps=5)
    full, eq = runs.scores["z_err"][:, 0]
    assert np.isfinite([full, eq]).all() and full != eq                    # same seed, other batches
    assert WC.LABELLED["full-eq"] == 20000 // 11 and runs.params["n_train"] == 20000
    with pytest.raises(ValueError, match="n_train"):
        WC.train_configs(("full",), seeds=(0,), steps=1, n_train=0)


def test_training_panel_opens_with_the_values_asked_for():
    panel = WC.training_panel(autorun=False, steps=10, bias=1.3, noise=0.2, seed=2)
    assert (panel.controls["bias"].value, panel.controls["noise"].value, panel.controls["seed"].value) == (1.3, 0.2, 2)
    result = panel.train()
    assert result.params["bias"] == 1.3 and result.seeds == (2,)
