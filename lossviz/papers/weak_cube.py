r"""Weak Cube R-CNN (Hansen, Wanzeck, Papadopoulos, SCIA 2025): losses that stand in for missing 3D
labels, in a pinhole world small enough to train on a CPU in seconds.

A monocular 3D detector predicts a cube (centre, dimensions, yaw) for every object.  With only a 2D
box as label the cube is under-determined: scaling the centre *and* the dimensions by any k > 0
leaves the projected box unchanged (:func:`projected_box`), so the 2D-box loss has an exactly flat
valley along the camera ray.  Weak Cube R-CNN breaks it with losses that borrow the missing
information: a pseudo-depth from a frozen depth network, size priors per category, ground and
alignment priors on the rotation.

* The geometry: :func:`cube_corners`, :func:`project`, :func:`projected_box` (camera of
  :data:`CAMERA`: focal length 120, 128 x 96 image, 1.2 m above the floor; x right, y down, z ahead).
* The losses, per instance and averaged over the batch: :func:`giou` / :func:`iou_loss`
  (1 - GIoU of the ground-truth box and the tight box of the 8 projected corners),
  :func:`dims_hinge_loss` (max(|d - mu| / sigma - 1, 0) for each of w, h, l),
  :func:`z_pseudo_loss` (L1 to a pseudo-depth), :func:`pose_alignment_loss` (1 - |cos| between the
  yaws of object pairs in one image), and the fully supervised :func:`full_supervision_loss`.
* The experiment: :func:`make_objects` (the synthetic scenes), :func:`lifters` and
  (:func:`decode`), :func:`train_configs` (every configuration and seed trained at once as one
  batched stack of MLPs, cached with :func:`lossviz.train.memo`).
* The pictures: :func:`ray_landscape` and :func:`landscape_figure`, :func:`term_gradients` and
  :func:`gradient_bars`, :func:`bev_view`, :func:`error_bars`, :func:`curves`, and the panels
  :func:`landscape_panel` (pure maths) and :func:`training_panel` (a Train button).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from .. import checks, plots
from .. import train as T
from ..models import StackedClassifier

#: The pinhole camera: focal length (px), image size (px), principal point, height above the floor (m).
CAMERA = dict(f=120.0, width=128, height=96, cx=64.0, cy=48.0, cam_height=1.2)
#: Size priors (w, h, l) in metres per category, and their spread sigma = 0.15 mu.
CATEGORIES = ("chair", "table", "sofa", "cabinet")
PRIOR_MU = torch.tensor([[0.5, 0.9, 0.5], [1.0, 0.75, 0.6], [2.0, 0.9, 0.9], [0.45, 1.8, 0.6]], dtype=torch.float64)
PRIOR_SIGMA = 0.15 * PRIOR_MU
#: The official loss weights (``cubercnn/config/config.py``); pose_ground is x0.1 without a ground map.
OFFICIAL_WEIGHTS = {"iou": 1.0, "dims": 20.0, "z_pseudo_gt_patch": 1.0, "depth": 1.0, "pose_alignment": 7.0,
                    "pose_ground": 20.0, "segmentation": 2.5}
#: The terms the miniature trains with, in the order of a weight vector.
TERMS = ("iou", "dims", "z", "full")
#: The four configurations of the spec's table, as weights on (iou, dims, z pseudo, full supervision).
CONFIGS = {"iou": (1.0, 0.0, 0.0, 0.0), "iou+dims": (1.0, 20.0, 0.0, 0.0), "iou+dims+z": (1.0, 20.0, 1.0, 0.0),
           "full": (0.0, 0.0, 0.0, 1.0), "full-eq": (0.0, 0.0, 0.0, 1.0)}
#: Labelled training objects per configuration (default all 20 000).  "full-eq" is the paper's
#: time-equalised baseline: 3D boxes take about 11x longer to annotate than 2D boxes, so it gets the
#: 3D labels of 20 000 / 11 objects (the first ones) and the same number of steps.
LABELLED = {"full-eq": 20000 // 11}
NAMES = {"iou": "iou only", "iou+dims": "iou + dims", "iou+dims+z": "iou + dims + z pseudo",
         "full": "full 3D supervision", "full-eq": "full 3D, time-equalised (1/11)"}
COLORS = {"iou": "#E69F00", "iou+dims": "#CC79A7", "iou+dims+z": "#009E73", "full": "#0072B2",
          "full-eq": "#56B4E9", "truth": "#000000"}
TERM_COLORS = {"iou": "#E69F00", "dims": "#CC79A7", "z": "#009E73", "full": "#0072B2", "total": "#000000"}


# ------------------------------------------------------------------------------------------------
# Geometry
# ------------------------------------------------------------------------------------------------

def _check_cube(center, dims, yaw):
    center = checks.as_float_tensor(center, "center (x, y, z in metres, ... x 3)", torch.as_tensor(center).ndim)
    dims = checks.as_float_tensor(dims, "dims (w, h, l in metres, ... x 3)", torch.as_tensor(dims).ndim)
    yaw = checks.as_float_tensor(yaw, "yaw (radians)", torch.as_tensor(yaw).ndim)
    if center.shape[-1:] != (3,) or dims.shape != center.shape or yaw.shape != center.shape[:-1]:
        raise ValueError(f"center and dims must be ... x 3 with the same shape and yaw the shape without the 3; got "
                         f"{tuple(center.shape)}, {tuple(dims.shape)}, {tuple(yaw.shape)}")
    if checks.validation_enabled() and bool((dims <= 0).any()):
        raise ValueError("dims must be > 0 (a cube has positive width, height and length)")
    return center, dims, yaw


def cube_corners(center, dims, yaw) -> torch.Tensor:
    r"""The 8 corners (... x 8 x 3) of cubes with centre (x, y, z), dimensions (w, h, l) and yaw
    theta about the vertical (camera y) axis: :math:`X = c + R_y(\theta)\,(\pm w/2, \pm h/2, \pm l/2)`."""
    center, dims, yaw = _check_cube(center, dims, yaw)
    signs = torch.tensor([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)],
                         dtype=center.dtype, device=center.device) / 2
    local = dims[..., None, :] * signs                                      # ... x 8 x 3
    c, s = torch.cos(yaw)[..., None], torch.sin(yaw)[..., None]
    x = c * local[..., 0] + s * local[..., 2]                               # R_y = [[c, 0, s], [0, 1, 0], [-s, 0, c]]
    z = -s * local[..., 0] + c * local[..., 2]
    return center[..., None, :] + torch.stack([x, local[..., 1], z], dim=-1)


def project(points, camera: dict = CAMERA) -> torch.Tensor:
    """Pinhole projection u = f x / z + cx, v = f y / z + cy of ... x 3 points in front of the camera."""
    points = checks.as_float_tensor(points, "points (... x 3)", torch.as_tensor(points).ndim)
    if checks.validation_enabled() and bool((points[..., 2] <= 0).any()):
        raise ValueError("every point must be in front of the camera (z > 0); parametrise z as exp(.)")
    z = points[..., 2]
    return torch.stack([camera["f"] * points[..., 0] / z + camera["cx"],
                        camera["f"] * points[..., 1] / z + camera["cy"]], dim=-1)


def projected_box(center, dims, yaw, camera: dict = CAMERA) -> torch.Tensor:
    """The tight 2D box (... x 4: u1, v1, u2, v2, pixels) around the 8 projected corners.  Its min
    and max are differentiable through the extreme corners only.  Scaling ``center`` and ``dims`` by
    the same k > 0 leaves it unchanged: every corner moves along its own camera ray."""
    uv = project(cube_corners(center, dims, yaw), camera)
    return torch.cat([uv.amin(dim=-2), uv.amax(dim=-2)], dim=-1)


# ------------------------------------------------------------------------------------------------
# The losses
# ------------------------------------------------------------------------------------------------

def _check_boxes(a, b):
    a = checks.as_float_tensor(a, "boxes (N x 4: u1, v1, u2, v2)", 2)
    b = checks.as_float_tensor(b, "boxes (N x 4: u1, v1, u2, v2)", 2)
    if a.shape != b.shape or a.shape[-1] != 4:
        raise ValueError(f"both box sets must be N x 4 (u1, v1, u2, v2); got {tuple(a.shape)} and {tuple(b.shape)}")
    if checks.validation_enabled() and bool(((a[:, 2:] < a[:, :2]) | (b[:, 2:] < b[:, :2])).any()):
        raise ValueError("a box needs u2 >= u1 and v2 >= v1")
    return a, b


def giou(a, b) -> torch.Tensor:
    r"""Generalised IoU of paired boxes (N x 4 each): :math:`\mathrm{IoU} - |C \setminus (A \cup B)| / |C|`,
    C the smallest box enclosing A and B.  In [-1, 1]; 1 only for identical boxes."""
    return _giou(*_check_boxes(a, b))


def _giou(a, b, iou_only: bool = False):
    lo, hi = torch.maximum(a[..., :2], b[..., :2]), torch.minimum(a[..., 2:], b[..., 2:])
    inter = (hi - lo).clamp(min=0).prod(-1)
    area = lambda x: (x[..., 2:] - x[..., :2]).prod(-1)                    # noqa: E731
    union = area(a) + area(b) - inter
    iou = inter / union
    if iou_only:
        return iou
    enclose = (torch.maximum(a[..., 2:], b[..., 2:]) - torch.minimum(a[..., :2], b[..., :2])).prod(-1)
    return iou - (enclose - union) / enclose


def iou_loss(box_pred, box_gt) -> torch.Tensor:
    r""":math:`L_{iou} = \mathrm{mean}_i\,(1 - \mathrm{GIoU}(b_i, \hat b_i))` (weight 1 in the paper)."""
    return (1 - giou(box_pred, box_gt)).mean()


def box_iou(a, b) -> torch.Tensor:
    """Plain IoU of paired boxes (N x 4), the evaluation's 2D score."""
    return _giou(*_check_boxes(a, b), iou_only=True)


def _check_cat(category, n: int) -> torch.Tensor:
    return checks.check_labels(category, n, torch.device("cpu"))


def dims_hinge_loss(dims, category, *, sigma_mult: float = 1.0, mu=PRIOR_MU, sigma=PRIOR_SIGMA) -> torch.Tensor:
    r"""The size prior: for each of w, h, l, :math:`z_d = |d - \mu_{cat}| / (m\,\sigma_{cat})` and the
    hinge :math:`\max(z_d - 1, 0)`, summed over the three and averaged over the batch (the paper weighs
    each by 20).  Zero inside one prior standard deviation: no signal there.  ``sigma_mult`` is m."""
    dims = checks.as_float_tensor(dims, "dims (N x 3)", 2)
    if dims.shape[-1] != 3:
        raise ValueError(f"dims must be N x 3 (w, h, l); got {tuple(dims.shape)}")
    category = _check_cat(category, len(dims))
    m = checks.positive(sigma_mult, "sigma_mult (the prior sigma multiplier)")
    if checks.validation_enabled() and bool(((category < 0) | (category >= len(mu))).any()):
        raise ValueError(f"category ids must be in [0, {len(mu)})")
    mu, sigma = mu.to(dims)[category], sigma.to(dims)[category] * m
    return ((dims - mu).abs() / sigma - 1).clamp(min=0).sum(-1).mean()


def z_pseudo_loss(z, z_pseudo) -> torch.Tensor:
    r""":math:`L_z = \mathrm{mean}_i |z_i - \tilde z_i|` with :math:`\tilde z` the pseudo-depth (in the
    paper, the median of Depth Anything's map inside the box; ``F.l1_loss``, which equals the official
    smooth-L1 with beta = 0)."""
    z = checks.as_float_tensor(z, "z (N,)", 1)
    z_pseudo = checks.as_float_tensor(z_pseudo, "z_pseudo (N,)", 1)
    if z.shape != z_pseudo.shape:
        raise ValueError(f"z and z_pseudo must have the same shape; got {tuple(z.shape)} and {tuple(z_pseudo.shape)}")
    return F.l1_loss(z, z_pseudo)


def pose_alignment_loss(yaw, image) -> torch.Tensor:
    r"""Objects in a room share axes: the mean over the pairs (i, j), i < j, of objects in one image of
    :math:`1 - |\cos(\theta_i - \theta_j)|` (weight 7 in the paper; for yaw-only rotations the angle
    between R_i and R_j is the yaw difference).  Images with a single object give no pair: the guard
    returns a zero that keeps the graph, never the NaN of an empty mean."""
    yaw = checks.as_float_tensor(yaw, "yaw (N,)", 1)
    image = checks.check_labels(image, len(yaw), yaw.device)
    same = (image[:, None] == image[None, :]).triu(diagonal=1)
    if not bool(same.any()):
        return yaw.sum() * 0
    terms = 1 - torch.cos(yaw[:, None] - yaw[None, :]).abs()
    return terms[same].mean()


def full_supervision_loss(center, dims, yaw, center_t, dims_t, yaw_t) -> torch.Tensor:
    r"""The fully supervised baseline: L1 on the centre and on the dimensions plus
    :math:`1 - \cos(2\Delta\theta)` on the yaw (period pi: a cuboid turned by pi is the same cuboid)."""
    center, dims, yaw = _check_cube(center, dims, yaw)
    center_t, dims_t, yaw_t = _check_cube(center_t, dims_t, yaw_t)
    if center.shape != center_t.shape:
        raise ValueError(f"prediction and target shapes differ: {tuple(center.shape)} and {tuple(center_t.shape)}")
    return (F.l1_loss(center, center_t) * 3 + F.l1_loss(dims, dims_t) * 3
            + (1 - torch.cos(2 * (yaw - yaw_t))).mean())


def yaw_error(yaw, yaw_t, period: float = math.pi) -> torch.Tensor:
    """|yaw - yaw_t| modulo ``period`` (pi for a cuboid, pi/2 when w = l), in [0, period / 2]."""
    d = torch.remainder(torch.as_tensor(yaw) - torch.as_tensor(yaw_t), period)
    return torch.minimum(d, period - d)


# ------------------------------------------------------------------------------------------------
# The synthetic world and the lifter
# ------------------------------------------------------------------------------------------------

def make_objects(seed: int, n: int = 22000, camera: dict = CAMERA) -> dict:
    """``n`` objects (the first 20 000 train, the rest test) of a seeded pinhole world: category
    uniform over 4, dims ~ N(mu, (0.15 mu)^2), standing on the floor 1.2 m below the camera,
    z ~ U[2, 8] m, x = z U(-0.35, 0.35), uniform yaw; ``box`` the tight box of the projected corners,
    ``eps`` the standard normal draw of the pseudo-depth noise.  float32."""
    checks.integer(n, "n", 1)
    g = torch.Generator().manual_seed(int(seed))
    cat = torch.randint(0, 4, (n,), generator=g)
    dims = (PRIOR_MU[cat] + PRIOR_SIGMA[cat] * torch.randn(n, 3, generator=g, dtype=torch.float64)).clamp(min=0.05)
    z = 2 + 6 * torch.rand(n, generator=g, dtype=torch.float64)
    x = z * (0.7 * torch.rand(n, generator=g, dtype=torch.float64) - 0.35)
    y = camera["cam_height"] - dims[:, 1] / 2
    yaw = (2 * torch.rand(n, generator=g, dtype=torch.float64) - 1) * math.pi
    center = torch.stack([x, y, z], 1)
    box = projected_box(center, dims, yaw, camera)
    eps = torch.randn(n, generator=g, dtype=torch.float64)
    out = dict(cat=cat, center=center, dims=dims, yaw=yaw, box=box, eps=eps)
    return {k: v.float() if v.is_floating_point() else v for k, v in out.items()}


def pseudo_depth(z, eps, *, noise: float = 0.08, bias: float = 1.0) -> torch.Tensor:
    """The stand-in for a frozen depth network: z (1 + noise eps) * bias, the factor kept >= 0.2."""
    return z * (1 + noise * eps).clamp(min=0.2) * bias


def lifter_input(box, cat, camera: dict = CAMERA) -> torch.Tensor:
    """The lifter's 8 inputs: the box corners as ray slopes ((u - cx) / f, (v - cy) / f), x 2, and
    the category one-hot."""
    c = torch.tensor([camera["cx"], camera["cy"]] * 2, dtype=box.dtype)
    return torch.cat([2 * (box - c) / camera["f"], F.one_hot(cat, 4).to(box.dtype)], dim=-1)


def decode(o, box, cat, camera: dict = CAMERA):
    """The lifter's 8 outputs as a cube: z = exp(o0 + 1.5); the projected centre = box centre +
    (o1, o2) half box sizes, back-projected at depth z; dims = mu_cat exp(0.3 o3..5) (a log-residual
    around the prior); yaw = atan2(o6, o7).  Returns (center, dims, yaw)."""
    z = torch.exp(o[..., 0] + 1.5)
    mid, half = (box[..., :2] + box[..., 2:]) / 2, (box[..., 2:] - box[..., :2]) / 2
    uv = mid + o[..., 1:3] * half
    x = (uv[..., 0] - camera["cx"]) * z / camera["f"]
    y = (uv[..., 1] - camera["cy"]) * z / camera["f"]
    dims = PRIOR_MU.to(o)[cat] * torch.exp(0.3 * o[..., 3:6])
    yaw = torch.atan2(o[..., 6], o[..., 7])
    return torch.stack([x, y, z], -1), dims, yaw


def lifters(n_models: int | list = 1):
    """``n_models`` lifter MLPs 8-128-128-8 (ReLU) as one batched stack (``lossviz.models``); a list
    of seeds initialises copy i as ``torch.manual_seed(seeds[i])`` would."""
    seeds = list(range(n_models)) if isinstance(n_models, int) else list(n_models)
    return StackedClassifier(seeds, in_dim=8, hidden=128, n_classes=8)


# ------------------------------------------------------------------------------------------------
# Training: every configuration and seed as one stack
# ------------------------------------------------------------------------------------------------

@dataclass(repr=False)
class CubeRuns(T.Run):
    """Configurations x seeds trained as one stack.  ``scores[key]`` is a C x S array (z_err,
    dims_err, iou2d, yaw_err on the 2000 test objects); ``evals`` the same keys, C x S per
    evaluation (``evals["iter"]``); ``history["loss"]`` the mean total loss; ``scene`` the first
    seed's predictions (C x n_show) and truth for a bird's-eye view."""

    configs: tuple = ()
    seeds: tuple = ()
    scene: dict = field(default_factory=dict)

    def score(self, key: str, config: str) -> np.ndarray:
        """One configuration's ``key`` over the seeds."""
        return self.scores[key][self.configs.index(config)]

    def __repr__(self) -> str:
        rows = [f"{c}: z err {self.score('z_err', c).mean():.3f}, dims err {self.score('dims_err', c).mean():.3f} m, "
                f"2D IoU {self.score('iou2d', c).mean():.3f}" for c in self.configs]
        return f"CubeRuns({len(self.seeds)} seed(s); " + "; ".join(rows) + ")"


def train_configs(configs=("iou", "iou+dims", "iou+dims+z", "full"), seeds=range(8), *, steps: int = 600, noise: float = 0.08,
                  bias: float = 1.0, sigma_mult: float = 1.0, lr: float = 1e-3, batch_size: int = 128,
                  n_train: int = 20000, n_show: int = 8, progress=False) -> CubeRuns:
    """Train one lifter per (configuration, seed), all at once (cached by every parameter).

    ``configs``: names of :data:`CONFIGS` or 4-tuples of weights on (iou, dims, z pseudo, full).
    Seed s gives every configuration the same objects, initial network and batches (paired runs).
    The stack's copies share no parameter and Adam works element by element, so this is the same
    computation as training each alone.  Adam (lr 1e-3), batch 128, ``steps`` steps, batches drawn
    from the first ``n_train`` of the 20 000 training objects.  A configuration with fewer labelled
    objects (:data:`LABELLED`) takes the seed's batch indices modulo its count."""
    configs = tuple(c if isinstance(c, str) else tuple(float(w) for w in c) for c in configs)
    for c in configs:
        if isinstance(c, str):
            checks.choice(c, "configuration", CONFIGS)
        elif len(c) != len(TERMS) or min(c) < 0 or max(c) == 0:
            raise ValueError(f"a configuration is a name of CONFIGS or {len(TERMS)} weights >= 0 on {TERMS}, "
                             f"not all 0; got {c}")
    seeds = tuple(int(s) for s in seeds)
    if not configs or not seeds:
        raise ValueError("train_configs needs at least one configuration and one seed")
    checks.integer(steps, "steps", 1)
    checks.integer(n_train, "n_train", 1, 20000)
    checks.fraction(noise, "noise (pseudo-depth noise, a fraction of z)")
    checks.positive(bias, "bias (pseudo-depth scale)")
    checks.positive(sigma_mult, "sigma_mult")
    params = dict(configs=configs, seeds=seeds, steps=steps, noise=float(noise), bias=float(bias),
                  sigma_mult=float(sigma_mult), lr=float(lr), batch_size=batch_size, n_train=n_train,
                  n_show=n_show)
    return T.memo("weak_cube.train_configs", params, lambda: _train(progress=progress, **params))


def _train(configs, seeds, steps, noise, bias, sigma_mult, lr, batch_size, n_train, n_show, progress) -> CubeRuns:
    C, S = len(configs), len(seeds)
    W = torch.tensor([CONFIGS[c] if isinstance(c, str) else c for c in configs], dtype=torch.float32)
    W = W.repeat_interleave(S, 0)                                              # (C S) x 4, config-major
    worlds = [make_objects(s) for s in seeds]
    data = {k: torch.stack([w[k] for w in worlds]) for k in worlds[0]}        # S x N x ...
    train = {k: v[:, :n_train] for k, v in data.items()}
    test = {k: v[:, 20000:] for k, v in data.items()}
    z_ps = pseudo_depth(train["center"][..., 2], train["eps"], noise=noise, bias=bias)
    x_train, x_test = lifter_input(train["box"], train["cat"]), lifter_input(test["box"], test["cat"])
    net = lifters([s for _ in configs for s in seeds])
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    gens = [torch.Generator().manual_seed(1000 + s) for s in seeds]
    rows = torch.arange(S).repeat(C)[:, None]                                  # each model's seed
    n_lab = torch.tensor([min(LABELLED.get(c, n_train), n_train) if isinstance(c, str) else n_train
                          for c in configs]).repeat_interleave(S)[:, None]

    def stack(t):                                     # S x ... -> (C S) x ..., the same data for every config
        return t.repeat((C,) + (1,) * (t.ndim - 1))

    def predict(x, box, cat):
        return decode(net(stack(x)), stack(box), stack(cat))

    def step(_it):
        idx = stack(torch.stack([torch.randint(0, n_train, (batch_size,), generator=g) for g in gens])) % n_lab
        batch = {k: v[rows, idx] for k, v in train.items()}
        center, dims, yaw = decode(net(x_train[rows, idx]), batch["box"], batch["cat"])
        per_term = term_losses(center, dims, yaw, batch, z_ps[rows, idx], sigma_mult)
        loss = (W * per_term).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": loss / (C * S)}

    def scores():
        with torch.no_grad():
            center, dims, yaw = predict(x_test, test["box"], test["cat"])
            return {k: v.view(C, S).numpy().astype(float) for k, v in
                    evaluate(center, dims, yaw, {k: stack(v) for k, v in test.items()}).items()}

    evals = {"iter": []}
    start = time.process_time()
    with checks.validation(False):
        def timed(it):
            out = step(it)
            if it % 100 == 0 or it == steps:
                evals["iter"].append(it)
                for k, v in scores().items():
                    evals.setdefault(k, []).append(v)
            return out
        evals["iter"].append(0)
        for k, v in scores().items():
            evals.setdefault(k, []).append(v)
        history = T.loop(timed, steps, desc="lifters", progress=progress, every=10)
        with torch.no_grad():
            center, dims, yaw = predict(x_test, test["box"], test["cat"])
    seconds = time.process_time() - start
    evals = {k: np.asarray(v) for k, v in evals.items()}
    final = {k: v[-1] for k, v in evals.items() if k != "iter"}
    first = slice(0, None, S)                                                  # seed seeds[0] of every config
    scene = dict(center=center[first, :n_show].numpy(), dims=dims[first, :n_show].numpy(),
                 yaw=yaw[first, :n_show].numpy(), z_test=center[first, :, 2].numpy(),
                 truth={k: v[0, :n_show].numpy() for k, v in test.items()}, z_true=test["center"][0, :, 2].numpy())
    names = {"configs": configs, "seeds": seeds, "steps": steps, "noise": noise, "bias": bias, "sigma_mult": sigma_mult,
             "n_train": n_train}
    return CubeRuns(names, history, evals, final, seconds, configs=configs, seeds=seeds, scene=scene)


def term_losses(center, dims, yaw, batch: dict, z_pseudo, sigma_mult: float = 1.0) -> torch.Tensor:
    """The four training terms (iou, dims hinge, z pseudo, full supervision) of every model of a stack:
    ``center``, ``dims`` M x B x 3, ``yaw`` M x B; ``batch`` the ground truth (cat, center, dims, yaw,
    box), M x B x ... or B x ... (shared); ``z_pseudo`` M x B or B.  Returns M x 4, each term averaged
    over the batch (unweighted: the weights multiply them)."""
    M, B = yaw.shape
    gt = {k: batch[k].expand(M, B, 3 + (k == "box")) for k in ("center", "dims", "box")}
    gt.update({k: batch[k].expand(M, B) for k in ("cat", "yaw")})
    box = projected_box(center.reshape(-1, 3), dims.reshape(-1, 3), yaw.reshape(-1))
    l_iou = (1 - _giou(box, gt["box"].reshape(-1, 4))).view(M, B).mean(1)
    mu, sigma = PRIOR_MU.to(dims)[gt["cat"]], PRIOR_SIGMA.to(dims)[gt["cat"]] * sigma_mult
    l_dims = ((dims - mu).abs() / sigma - 1).clamp(min=0).sum(-1).mean(1)
    l_z = (center[..., 2] - z_pseudo).abs().mean(1)
    l_full = ((center - gt["center"]).abs().mean((1, 2)) * 3 + (dims - gt["dims"]).abs().mean((1, 2)) * 3
              + (1 - torch.cos(2 * (yaw - gt["yaw"]))).mean(1))
    return torch.stack([l_iou, l_dims, l_z, l_full], 1)


def evaluate(center, dims, yaw, truth: dict) -> dict:
    """Per model of a stack (``center``, ``dims`` M x N x 3, ``yaw`` M x N; ``truth`` M x N x ...):
    mean |dz| / z, mean |d dims| (m), mean 2D IoU of the reprojected box with the true box, mean yaw
    error modulo pi (radians) and the median of z / z_true (1 when the depth has the right scale)."""
    MN = yaw.shape
    box = projected_box(center.reshape(-1, 3), dims.reshape(-1, 3), yaw.reshape(-1)).view(*MN, 4)
    z_t = truth["center"][..., 2]
    return {"z_err": ((center[..., 2] - z_t).abs() / z_t).mean(-1),
            "dims_err": (dims - truth["dims"]).abs().mean((-2, -1)),
            "iou2d": _giou(box, truth["box"], iou_only=True).mean(-1),
            "yaw_err": yaw_error(yaw, truth["yaw"]).mean(-1),
            "z_ratio": (center[..., 2] / z_t).median(-1).values}


# ------------------------------------------------------------------------------------------------
# Pure maths: the flat valley, and which term pushes which output
# ------------------------------------------------------------------------------------------------

def example_object(index: int = 3, seed: int = 0) -> dict:
    """One object of the seeded world (float64), with the box its true cube projects to."""
    obj = make_objects(seed, n=index + 1)
    return {k: v[index].double() if v.is_floating_point() else v[index] for k, v in obj.items()}


def ray_landscape(obj: dict, ks, dyaws, *, z_pseudo: float | None = None, sigma_mult: float = 1.0) -> dict:
    """The three weak terms for the object ``obj`` moved to k x (centre, dims) and yaw + dyaw, on the
    grid ``dyaws`` x ``ks`` (rows yaw): ``{"iou", "dims", "z"}``, each len(dyaws) x len(ks), unweighted.
    ``z_pseudo`` defaults to the true depth.  L_iou does not depend on k at all (the flat valley)."""
    ks = torch.as_tensor(ks, dtype=torch.float64)
    dyaws = torch.as_tensor(dyaws, dtype=torch.float64)
    if checks.validation_enabled() and bool((ks <= 0).any()):
        raise ValueError("every scale k must be > 0 (k <= 0 puts the cube behind the camera)")
    K, Y = torch.meshgrid(ks, dyaws, indexing="xy")                           # Y x K
    center = obj["center"].double() * K[..., None]
    dims = obj["dims"].double() * K[..., None]
    yaw = obj["yaw"].double() + Y
    box = projected_box(center.reshape(-1, 3), dims.reshape(-1, 3), yaw.reshape(-1))
    l_iou = (1 - _giou(box, obj["box"].double().expand_as(box))).view(K.shape)
    mu, sigma = PRIOR_MU[obj["cat"]], PRIOR_SIGMA[obj["cat"]] * sigma_mult
    l_dims = ((dims - mu).abs() / sigma - 1).clamp(min=0).sum(-1)
    zp = float(obj["center"][2]) if z_pseudo is None else float(z_pseudo)
    l_z = (center[..., 2] - zp).abs()
    return {"iou": l_iou, "dims": l_dims, "z": l_z}


def term_gradients(obj: dict, *, k: float = 1.4, dyaw: float = 0.3, z_pseudo: float | None = None,
                   weights=None) -> dict:
    """Which term pushes which output, by autograd, for ``obj`` predicted at k x (centre, dims) and
    yaw + dyaw, with the projected centre kept on its ray.  For each term (weighted as in the paper:
    iou 1, dims 20, z 1) the magnitude of its gradient with respect to the scale along the ray, z
    alone, the dims (norm over w, h, l) and the yaw: ``{term: {output: value}}``.  The box's min and
    max pass gradient to the extreme corners only."""
    weights = {"iou": 1.0, "dims": 20.0, "z": 1.0} if weights is None else weights
    zp = float(obj["center"][2]) if z_pseudo is None else float(z_pseudo)
    ray = obj["center"].double() / obj["center"][2].double()
    out = {}
    for term in ("iou", "dims", "z"):
        s = torch.ones((), dtype=torch.float64, requires_grad=True)          # the scale along the ray
        z = (k * obj["center"][2].double()).requires_grad_(True)
        dims = (k * obj["dims"].double()).requires_grad_(True)
        yaw = (obj["yaw"].double() + dyaw).requires_grad_(True)
        center, d = ray * z * s, dims * s
        if term == "iou":
            loss = iou_loss(projected_box(center[None], d[None], yaw[None]), obj["box"].double()[None])
        elif term == "dims":
            loss = dims_hinge_loss(d[None], obj["cat"][None])
        else:
            loss = z_pseudo_loss(center[2:], torch.tensor([zp], dtype=torch.float64))
        gs, gz, gd, gy = torch.autograd.grad(weights[term] * loss, (s, z, dims, yaw), allow_unused=True,
                                             materialize_grads=True)
        out[term] = {"along the ray": float(gs.abs()), "z": float(gz.abs()), "dims": float(gd.norm()),
                     "yaw": float(gy.abs())}
    return out


def landscape_figure(obj: dict, *, ks=None, dyaws=None):
    """Three landscapes side by side over (k, dyaw): L_iou (a flat valley along k), L_iou + L_z and
    L_iou + 20 L_dims (bowls).  The white cross marks the truth (k = 1, dyaw = 0)."""
    ks = torch.linspace(0.4, 2.5, 85, dtype=torch.float64) if ks is None else torch.as_tensor(ks)
    dyaws = torch.linspace(-math.pi / 2, math.pi / 2, 73, dtype=torch.float64) if dyaws is None else dyaws
    g = ray_landscape(obj, ks, dyaws)
    fig, axes = plots.new_figure(3, width=3.3, height=3.0)
    extent = (float(ks[0]), float(ks[-1]), float(dyaws[0]), float(dyaws[-1]))
    for ax, (title, L) in zip(axes[0], (("$L_{iou}$", g["iou"]), ("$L_{iou} + L_z$", g["iou"] + g["z"]),
                                        ("$L_{iou} + 20\\,L_{dims}$", g["iou"] + 20 * g["dims"]))):
        im = ax.imshow(np.log10(L.numpy() + 1e-3), origin="lower", extent=extent, aspect="auto", cmap="viridis")
        ax.plot([1], [0], marker="x", color="white", ms=9, mew=2)
        ax.set(title=title, xlabel="k (centre and dims scaled by k)", ylabel="yaw error (rad)")
        ax.grid(False)
    fig.colorbar(im, ax=axes[0, 2], shrink=0.85, label="log10(loss + 0.001)")
    return fig, g


def gradient_bars(ax, grads: dict):
    """Grouped bars of :func:`term_gradients`: one group per output, one bar per term, log scale;
    an exact zero is drawn at the floor and labelled 0."""
    outputs = list(next(iter(grads.values())))
    width, floor = 0.8 / len(grads), 1e-4
    for j, (term, g) in enumerate(grads.items()):
        vals = np.array([g[o] for o in outputs])
        x = np.arange(len(outputs)) + (j - (len(grads) - 1) / 2) * width
        ax.bar(x, np.maximum(vals, floor), width, color=TERM_COLORS[term], label=term, bottom=0)
        for xi, v in zip(x, vals):
            if v < 1e-9:
                ax.text(xi, floor * 1.5, "0", ha="center", va="bottom", fontsize=8)
    ax.set_yscale("log")
    ax.set_ylim(floor, None)
    ax.set_xticks(np.arange(len(outputs)), outputs)
    ax.set(ylabel="|weighted gradient|", title="which term pushes which output")
    ax.legend(fontsize=8)


def landscape_panel(obj: dict | None = None, *, w_iou: float = 1.0, w_dims: float = 20.0, w_z: float = 1.0):
    """Pure maths: the weighted sum w_iou L_iou + w_dims L_dims + w_z L_z over (k, dyaw) for one
    object (left) and its profile along the ray at the true yaw, term by term (right).  Knobs: the
    three weights, the pseudo-depth's scale bias and the prior's sigma multiplier.  The cross marks
    the minimum of the total at the true yaw."""
    import ipywidgets as W

    from .. import widgets

    obj = example_object() if obj is None else obj
    ks = torch.linspace(0.4, 2.5, 85, dtype=torch.float64)
    dyaws = torch.linspace(-math.pi / 2, math.pi / 2, 61, dtype=torch.float64)
    base = ray_landscape(obj, ks, dyaws)
    row0 = int(torch.argmin(dyaws.abs()))
    style = dict(continuous_update=False, style={"description_width": "initial"})
    slider = lambda v, lo, hi, step, name: W.FloatSlider(value=v, min=lo, max=hi, step=step, description=name,  # noqa: E731
                                                         readout_format=".2f", **style)
    controls = {"w_iou": slider(w_iou, 0, 20, 0.5, "w iou"), "w_dims": slider(w_dims, 0, 20, 0.5, "w dims"),
                "w_z": slider(w_z, 0, 20, 0.5, "w z"), "bias": slider(1.0, 0.7, 1.3, 0.05, "z bias ×"),
                "sigma_mult": slider(1.0, 0.5, 3.0, 0.1, "prior σ ×")}
    fig, axes = plots.new_figure(2, width=4.7, height=3.5)
    a, b = axes[0, 0], axes[0, 1]
    extent = (float(ks[0]), float(ks[-1]), float(dyaws[0]), float(dyaws[-1]))
    im = a.imshow(np.zeros((len(dyaws), len(ks))), origin="lower", extent=extent, aspect="auto", cmap="viridis")
    fig.colorbar(im, ax=a, shrink=0.85, label="log10(total + 0.001)")
    (best,) = a.plot([1], [0], marker="x", color="white", ms=9, mew=2)
    a.plot([1], [0], marker="o", mfc="none", color="red", ms=9)
    a.set(title="weighted loss over (k, yaw)", xlabel="k (centre and dims × k)", ylabel="yaw error (rad)")
    a.grid(False)
    lines = {t: b.plot(ks, ks * 0, color=TERM_COLORS[t], lw=2 if t == "total" else 1.3, label=t)[0]
             for t in ("iou", "dims", "z", "total")}
    vline = b.axvline(1.0, color=plots.MUTED, ls="--")
    b.axvline(1.0, color="red", lw=0.8)
    b.set(xlabel="k (along the camera ray)", ylabel="weighted loss", title="profile at the true yaw")
    b.legend(fontsize=8, loc="upper center")

    def draw(v):
        g = ray_landscape(obj, ks, dyaws, z_pseudo=v["bias"] * float(obj["center"][2]), sigma_mult=v["sigma_mult"]) \
            if (v["bias"], v["sigma_mult"]) != (1.0, 1.0) else base
        parts = {"iou": v["w_iou"] * g["iou"], "dims": v["w_dims"] * g["dims"], "z": v["w_z"] * g["z"]}
        total = parts["iou"] + parts["dims"] + parts["z"]
        logt = np.log10(total.numpy() + 1e-3)
        im.set_data(logt)
        im.set_clim(float(logt.min()), float(logt.max()) + 1e-9)
        for t, L in (*parts.items(), ("total", total)):
            lines[t].set_ydata(L[row0].numpy())
        prof = total[row0]
        flat = float(prof.max() - prof.min()) < 1e-9
        k_best = float(ks[int(torch.argmin(prof))])
        best.set_data([k_best], [0.0])
        vline.set_xdata([k_best, k_best])
        b.set_ylim(0, float(prof.max()) * 1.1 + 1e-3)
        status = ("flat along the ray: every k fits the box equally well" if flat else
                  f"best k at the true yaw: {k_best:.2f} (truth 1)")
        return {"k_best": k_best, "flat": flat, "profile": prof, "status": status}

    return widgets.Panel(controls, fig, draw)


# ------------------------------------------------------------------------------------------------
# Pictures of the trained lifters
# ------------------------------------------------------------------------------------------------

def _footprint(center, dims, yaw):
    """The 4 bird's-eye corners (x, z) of a cube's footprint, closed."""
    c = cube_corners(torch.as_tensor(center, dtype=torch.float64), torch.as_tensor(dims, dtype=torch.float64),
                     torch.as_tensor(yaw, dtype=torch.float64))
    ring = c[..., [0, 4, 5, 1, 0], :]                       # the y = -h/2 face, corners in order
    return ring[..., [0, 2]].numpy()


def bev_view(ax, runs: CubeRuns, config, *, n: int = 8, title: str | None = None):
    """Bird's-eye view (x right, z ahead) of the first seed's first ``n`` test objects: true
    footprints in black, the configuration's predictions in its colour, the camera's field of view."""
    i = runs.configs.index(config)
    s, t = runs.scene, runs.scene["truth"]
    zmax = 9.0
    half = CAMERA["width"] / 2 / CAMERA["f"]
    ax.plot([-half * zmax, 0, half * zmax], [zmax, 0, zmax], color=plots.MUTED, lw=0.8)
    for j in range(min(n, len(t["yaw"]))):
        ft = _footprint(t["center"][j], t["dims"][j], t["yaw"][j])
        fp = _footprint(s["center"][i, j], s["dims"][i, j], s["yaw"][i, j])
        ax.plot(ft[:, 0], ft[:, 1], color=COLORS["truth"], lw=1.2)
        ax.fill(fp[:, 0], fp[:, 1], color=COLORS.get(config, plots.NEG_COLOR), alpha=0.45)
        ax.plot([t["center"][j][0], s["center"][i, j][0]], [t["center"][j][2], s["center"][i, j][2]],
                color=plots.MUTED, lw=0.6)
    ax.set(xlim=(-4, 4), ylim=(0, zmax), xlabel="x (m)", ylabel="z, depth (m)", aspect="equal",
           title=title or NAMES.get(config, "custom"))


def error_bars(axes, runs: CubeRuns):
    """Grouped bars over the configurations: z relative error, dims error (m), 2D IoU; the bar is
    the mean over seeds, the dots the seeds."""
    what = (("z_err", "|Δz| / z"), ("dims_err", "|Δdims| (m)"), ("iou2d", "2D IoU with the true box"))
    for ax, (key, label) in zip(np.ravel(axes), what):
        for j, c in enumerate(runs.configs):
            v = runs.score(key, c)
            ax.bar(j, v.mean(), color=COLORS.get(c, plots.MUTED), alpha=0.8)
            ax.scatter(np.full(len(v), j) + np.linspace(-0.2, 0.2, len(v)), v, s=8, color="k", zorder=3)
        ax.set_xticks(range(len(runs.configs)), [c.replace("+", "+\n") for c in runs.configs], fontsize=8)
        ax.set(title=label, ylabel=label)
    if "iou2d" in runs.scores:
        lo = float(runs.scores["iou2d"].min())
        np.ravel(axes)[2].set_ylim(max(0.0, lo - 0.1), 1.0)


def curves(axes, runs: CubeRuns, *, label: str | None = None):
    """Test z relative error (log scale) and 2D IoU against training step, per configuration: the
    mean over seeds and the band between the best and worst seed.  ``label`` names a single run."""
    from matplotlib.ticker import FuncFormatter

    it = runs.evals["iter"]
    for ax, (key, title) in zip(np.ravel(axes), (("z_err", "test |Δz| / z"), ("iou2d", "test 2D IoU"))):
        for j, c in enumerate(runs.configs):
            v = runs.evals[key][:, j, :]                                       # T x S
            color = COLORS.get(c, plots.NEG_COLOR)
            ax.plot(it, v.mean(1), color=color, label=label or NAMES.get(c, "custom"))
            ax.fill_between(it, v.min(1), v.max(1), color=color, alpha=0.2)
        ax.set(xlabel="training step", ylabel=title, title=title)
    ax = np.ravel(axes)[0]
    z = runs.evals["z_err"]
    ax.set_yscale("log")
    wide = float(z.max() / max(z.min(), 1e-12)) > 10                  # within one decade: label every tick
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.2g}"))
    ax.yaxis.set_minor_formatter(FuncFormatter(_two_and_five if wide else (lambda v, _: f"{v:.2g}")))
    ax.legend(fontsize=8)


def _two_and_five(v, _pos) -> str:
    """Label the minor ticks 2 and 5 (x a power of ten) of a log axis, plainly."""
    mantissa = round(v / 10 ** math.floor(math.log10(v))) if v > 0 else 0
    return f"{v:.2g}" if mantissa in (2, 5) else ""


def training_panel(*, autorun: bool = True, steps: int = 600, noise: float = 0.08, bias: float = 1.0,
                   sigma_mult: float = 1.0, seed: int = 0):
    """A Train button over one lifter: a checkbox per term (iou, dims and z ticked), the weights of
    dims and z, the pseudo-depth's noise and scale bias, the prior's sigma multiplier, the seed (the
    keyword arguments set the values it opens with).  Draws the test z error along training,
    predicted against true depth, and a bird's-eye view."""
    import ipywidgets as W

    from .. import widgets

    style = dict(continuous_update=False, style={"description_width": "initial"})
    controls = {
        **{t: W.Checkbox(value=t != "full", description=t, indent=False, layout=W.Layout(width="70px"))
           for t in TERMS},
        "w_dims": W.FloatSlider(value=20, min=0, max=20, step=1, description="w dims", readout_format=".3g", **style),
        "w_z": W.FloatSlider(value=1, min=0, max=20, step=0.5, description="w z", readout_format=".3g", **style),
        "noise": W.FloatSlider(value=noise, min=0, max=0.3, step=0.02, description="z noise", readout_format=".2f",
                               **style),
        "bias": W.FloatSlider(value=bias, min=0.7, max=1.3, step=0.05, description="z bias ×", readout_format=".2f",
                              **style),
        "sigma_mult": W.FloatSlider(value=sigma_mult, min=0.5, max=3.0, step=0.1, description="prior σ ×",
                                    readout_format=".2f", **style),
        "seed": W.IntSlider(value=seed, min=0, max=9, description="seed", **style),
    }

    def weights(v):
        w = (1.0 * v["iou"], v["w_dims"] * v["dims"], v["w_z"] * v["z"], 1.0 * v["full"])
        return w if max(w) > 0 else (1.0, 0.0, 0.0, 0.0)

    def run(v, progress):
        return train_configs((weights(v),), seeds=(v["seed"],), steps=steps, noise=v["noise"], bias=v["bias"],
                             sigma_mult=v["sigma_mult"], progress=progress)

    def draw(axes, res, v):
        name = " + ".join(t for t in TERMS if v[t]) or "iou"
        curves(axes[0, :1], res, label=name)
        a = axes[0, 1]
        zt, zp = res.scene["z_true"], res.scene["z_test"][0]
        a.scatter(zt, zp, s=3, alpha=0.4, color=TERM_COLORS["z"])
        a.plot([2, 8], [2, 8], color=plots.MUTED)
        a.set(xlabel="true z (m)", ylabel="predicted z (m)", title="depth, test objects")
        bev_view(axes[0, 2], res, res.configs[0], title=name)
        z, d, i = (float(res.scores[k][0, 0]) for k in ("z_err", "dims_err", "iou2d"))
        return {"status": f"weights (iou, dims, z, full) = {weights(v)}: z error {z:.3f}, dims error {d:.3f} m, "
                          f"2D IoU {i:.3f} ({res.seconds:.1f} s)"}

    return widgets.run_panel(controls, run, draw, ncols=3, width=3.2, height=3.1, autorun=autorun)
