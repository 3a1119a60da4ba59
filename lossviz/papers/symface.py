r"""SymFace (Prakash et al. 2024): an extra loss that asks the two halves of a face to agree.

A face is roughly left-right symmetric, so the left half ``x_L`` and the *mirrored* right half
``x_R'`` show the same person; SymFace adds a term that pulls their embeddings together, on top of
ArcFace (or AdaFace), and only for near-frontal images, picked by a frontness score ``rho``
computed from facial landmarks (the "3-point symmetric split", 3PSS).

No official code was found.  Confirmed: ``L = L_f + L_rho`` with ``L_f`` ArcFace or AdaFace,
``L_rho`` a disparity between the half-face embeddings, ``rho`` from the x-coordinates of both
eyes and the nose.  **Everything else below is reconstructed -- verify against the paper**:

* discrepancy ``D = |(e_l + e_r)/2 - n| / |e_r - e_l|``, frontness
  ``rho = clip(1 - D / D_max, 0, 1)``, a face is kept when ``rho >= rho_min`` (the paper's τ; lossviz keeps ``tau`` for temperatures);
* the halves are cut at the centre column and each is completed by its own mirror image into a
  mirror-symmetric full face, so that they pass through the weights full faces use (zero padding
  and resizing are the alternatives :func:`split_halves` offers);
* ``L_rho = (1/n) sum_{kept i} rho_i (1 - cos(f(x_L,i), f(x_R',i)))``, ``n`` = number kept;
* ``L = L_ArcFace + w_sym * L_rho``.

General Pair Weighting view: ``L_rho`` is a *positive-pair-only* term on the half-pair cosines
``c_i``, with ``dL/dc_i = -rho_i / n`` on kept faces and 0 elsewhere, a constant pull, like the
positive half of the contrastive loss.  No negative pair pushes back, so mapping every half-face
to one point would minimise it; only ArcFace on the full faces resists that, and a large
``w_sym`` (or half inputs the network can tell apart from faces, such as zero-padded ones)
brings the collapse back (the notebook measures both).

This module also holds the miniature the notebook trains on (:func:`make_faces`: 12 x 12
synthetic faces, exactly symmetric per identity, with one-sided nuisances), the training run
(:func:`train_symface`) and the panels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import checks
from ..contrastive import nt_xent_loss
from ..margins import CosineClassifier, arcface_loss
from ..metrics import tar_at_far
from ..models import L2Normalize, mlp
from ..similarity import similarity
from ..train import Run, Trainer, memo

#: Side of the synthetic face images (pixels); the symmetry axis lies between columns 5 and 6.
SIZE = 12
#: x-coordinates (pixel centres) of the symmetry axis and of the two eyes in an aligned crop.
AXIS = (SIZE - 1) / 2
EYES = (AXIS - 3.0, AXIS + 3.0)
#: ``D_max`` of the frontness score: a nose one pixel off the eye midpoint (D = 1/6) scores 0.
D_MAX = 1.0 / 6.0
#: The symmetry-loss variants: the reconstruction and two exercises (not the paper's loss).
VARIANTS = ("cosine", "infonce", "arcface")
#: How a half enters the full-width network: completed by its mirror image, zero-padded, or stretched.
FILLS = ("mirror", "zero", "resize")


# --------------------------------------------------------------------------------------------
# The miniature: synthetic faces, symmetric per identity
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Faces:
    """A set of synthetic face images with what generated them.

    ``x`` (N x 12 x 12, float32), ``y`` identity (int64), ``shift`` (the pose: -1, 0, +1 px),
    ``light_side`` (-1 lit from the left, +1 from the right), ``landmarks`` (N x 3: x of the left
    eye, right eye, nose, as a detector on an eye-aligned crop reports them) and ``rho`` (frontness).
    """

    x: torch.Tensor
    y: torch.Tensor
    shift: torch.Tensor
    light_side: torch.Tensor
    landmarks: torch.Tensor
    rho: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, mask) -> Faces:
        """The faces that ``mask`` (a boolean mask, indices or a slice) selects."""
        mask = mask if isinstance(mask, slice) else torch.as_tensor(mask)
        return Faces(*(getattr(self, f)[mask] for f in ("x", "y", "shift", "light_side", "landmarks", "rho")))

    def __repr__(self) -> str:
        return (f"Faces({len(self)} images of {len(self.y.unique())} identities, "
                f"{float((self.shift == 0).float().mean()):.0%} centred)")


@dataclass(frozen=True)
class FaceSplit:
    """Faces split by identity: train on some people, verify on people never seen in training."""

    train: Faces
    test: Faces
    templates: torch.Tensor   # (n_ids, 12, 12) the clean, exactly symmetric face of each identity
    nuisance: float

    def __repr__(self) -> str:
        return f"FaceSplit(train {self.train!r}, test {self.test!r}, nuisance {self.nuisance:g})"


def face_templates(n_ids: int, *, seed: int = 0) -> torch.Tensor:
    """``n_ids`` clean faces (n_ids x 12 x 12): a random N(0, 1) 12 x 6 left half, smoothed by a
    3 x 3 binomial kernel (reflected at the borders, so it is smooth across the axis), centred to
    zero mean, and mirrored.  Smoothing leaves a pixel standard deviation of about 0.4, so the
    nuisances of :func:`make_faces` (heights about 1) are larger than the differences between
    people, as lighting often is in photographs.  Exactly symmetric: ``t == t.flip(-1)`` bit for
    bit."""
    checks.integer(n_ids, "n_ids", 1)
    rng = np.random.default_rng(seed)
    half = np.pad(rng.normal(size=(n_ids, SIZE, SIZE // 2)), ((0, 0), (1, 1), (1, 1)), mode="reflect")
    k = (0.25, 0.5, 0.25)
    half = k[0] * half[:, :-2] + k[1] * half[:, 1:-1] + k[2] * half[:, 2:]
    half = k[0] * half[:, :, :-2] + k[1] * half[:, :, 1:-1] + k[2] * half[:, :, 2:]
    half = half - half.mean(axis=(1, 2), keepdims=True)
    return torch.as_tensor(np.concatenate([half, half[:, :, ::-1]], axis=2), dtype=torch.float32)


def lighting_ramp(light_side, light) -> torch.Tensor:
    """One-sided lighting (N x 12 x 12): ``light`` at the lit border, falling linearly to 0 at the
    axis, 0 on the other side.  ``light_side`` is -1 (lit from the left) or +1 (from the right)."""
    side = torch.as_tensor(light_side).reshape(-1, 1)
    light = torch.as_tensor(light, dtype=torch.float32).reshape(-1, 1)
    col = torch.arange(SIZE, dtype=torch.float32)
    left = (1 - col / (SIZE / 2)).clamp(min=0)            # 1 at column 0 ... 0 from the axis on
    ramp = torch.where(side < 0, left, left.flip(0)) * light
    return ramp[:, None, :].expand(-1, SIZE, SIZE).contiguous()


def shift_columns(x: torch.Tensor, shift) -> torch.Tensor:
    """Move each image ``shift`` pixels to the right (negative: left), filling with 0 (background)."""
    shift = torch.as_tensor(shift).reshape(-1, 1)
    src = torch.arange(x.shape[-1]) - shift                 # output column j reads input column j - s
    valid = (src >= 0) & (src < x.shape[-1])
    idx = src.clamp(0, x.shape[-1] - 1)[:, None, :].expand(-1, x.shape[-2], -1)
    return torch.where(valid[:, None, :], x.gather(2, idx), torch.zeros(()))


def frontness(e_l, e_r, n, *, d_max: float = D_MAX) -> torch.Tensor:
    r"""The frontness score (reconstructed - verify against the paper).

    .. math::  D = \frac{|(e_l + e_r)/2 - n|}{|e_r - e_l|},\qquad
               \rho = \mathrm{clip}(1 - D / D_{max}, 0, 1)

    from the x-coordinates of the left eye, the right eye and the nose: how far the nose sits from
    the eyes' midpoint, relative to the eye distance.  ``rho = 1``: frontal; 0: turned."""
    e_l, e_r, n = (v if torch.is_tensor(v) else torch.tensor(v, dtype=torch.float64) for v in (e_l, e_r, n))
    d_max = checks.positive(d_max, "d_max (the discrepancy at which rho reaches 0)")
    if checks.validation_enabled():
        for name, v in (("e_l", e_l), ("e_r", e_r), ("n", n)):
            if not bool(torch.isfinite(v).all()):
                raise ValueError(f"landmark {name} contains NaN or Inf")
        if bool(((e_r - e_l).abs() == 0).any()):
            raise ValueError("the two eyes have the same x-coordinate (eye distance 0): "
                             "the discrepancy D is undefined; drop that face or check the landmarks")
    D = ((e_l + e_r) / 2 - n).abs() / (e_r - e_l).abs()
    return (1 - D / d_max).clamp(0, 1)


def make_faces(n_ids: int = 300, n_per_id: int = 10, *, nuisance: float = 1.0, noise: float = 0.05,
               landmark_noise: float = 0.1, seed: int = 0, templates: torch.Tensor | None = None) -> Faces:
    """Synthetic faces: ``n_per_id`` images of each of ``n_ids`` identities (grouped by identity).

    Each image is its identity's exactly symmetric template (:func:`face_templates`) plus
    per-image nuisances, each on a random side and scaled by ``nuisance`` (0-1):

    * an "expression" blob: a 3 x 3 square of height ``±nuisance * U(0.5, 1.5)`` in one half;
    * a pose: the whole face shifted by -1, 0 or +1 px (equally likely), so only about a third
      of the faces have their axis on the centre column, where the halves are cut;
    * one-sided lighting (:func:`lighting_ramp`) of peak ``nuisance * U(0.5, 1.5)``, added after
      the shift (the light belongs to the camera, not to the face);
    * pixel noise ``noise``.

    Landmarks are what a detector would report on an eye-aligned crop: eyes at :data:`EYES`, the
    nose on the face's axis (moved by the pose), each with Gaussian jitter ``landmark_noise`` px;
    ``rho`` follows from them (:func:`frontness`): about 1 for centred faces, 0 for turned ones.
    Seeded and offline; the identity templates depend on ``seed`` only.
    """
    checks.integer(n_ids, "n_ids", 1)
    checks.integer(n_per_id, "n_per_id", 1)
    nuisance = checks.non_negative(nuisance, "nuisance (strength of the one-sided nuisances)")
    noise = checks.non_negative(noise, "noise")
    landmark_noise = checks.non_negative(landmark_noise, "landmark_noise")
    if templates is None:
        templates = face_templates(n_ids, seed=seed)
    rng = np.random.default_rng([seed, 1])
    y = np.repeat(np.arange(n_ids), n_per_id)
    N = len(y)
    t = lambda a: torch.as_tensor(a, dtype=torch.float32)
    x = templates[torch.as_tensor(y)].clone()
    # the expression blob: a 3 x 3 square whose centre lies inside one half
    row = rng.integers(1, SIZE - 1, N)
    col = rng.integers(1, SIZE // 2 - 1, N)
    col = np.where(rng.random(N) < 0.5, col, SIZE - 1 - col)
    height = nuisance * rng.uniform(0.5, 1.5, N) * rng.choice([-1.0, 1.0], N)
    rr, cc = np.meshgrid(np.arange(SIZE), np.arange(SIZE), indexing="ij")
    blob = (np.abs(rr[None] - row[:, None, None]) <= 1) & (np.abs(cc[None] - col[:, None, None]) <= 1)
    x += t(blob * height[:, None, None])
    shift = torch.as_tensor(rng.integers(-1, 2, N))
    x = shift_columns(x, shift)
    light_side = torch.as_tensor(rng.choice([-1, 1], N))
    x += lighting_ramp(light_side, nuisance * rng.uniform(0.5, 1.5, N))
    x += t(noise * rng.normal(size=x.shape))
    marks = np.stack([np.full(N, EYES[0]), np.full(N, EYES[1]), AXIS + shift.numpy()], axis=1)
    marks = t(marks + landmark_noise * rng.normal(size=marks.shape))
    rho = frontness(marks[:, 0], marks[:, 1], marks[:, 2]).float()
    return Faces(x.contiguous(), torch.as_tensor(y), shift, light_side, marks, rho)


def faces(n_ids: int = 300, n_per_id: int = 10, *, n_train: int = 200, nuisance: float = 1.0,
          seed: int = 0) -> FaceSplit:
    """:func:`make_faces` split by identity: train on the first ``n_train`` identities, verify on
    the others (people never seen in training, as in face verification)."""
    checks.integer(n_train, "n_train", 1, n_ids - 1)
    templates = face_templates(n_ids, seed=seed)
    all_faces = make_faces(n_ids, n_per_id, nuisance=nuisance, seed=seed, templates=templates)
    train = all_faces.y < n_train
    return FaceSplit(all_faces.subset(train), all_faces.subset(~train), templates, float(nuisance))


def mirror(x) -> torch.Tensor:
    """The horizontal mirror image of ``x`` (..., H, W): column j becomes column W-1-j."""
    x = _images(x)
    return x.flip(-1)


def mirror_correlation(x) -> torch.Tensor:
    """Per image, the Pearson correlation between the image and its mirror image: 1 for an exactly
    symmetric image, about 0 for one whose halves are unrelated.  ``x`` is (N, H, W)."""
    x = _images(x)
    a = x.flatten(-2) - x.flatten(-2).mean(-1, keepdim=True)
    b = mirror(x).flatten(-2) - mirror(x).flatten(-2).mean(-1, keepdim=True)
    return F.cosine_similarity(a, b, dim=-1)


def split_halves(x, *, mirror: bool = True, fill: str = "mirror") -> tuple[torch.Tensor, torch.Tensor]:
    """Cut ``x`` (..., H, W) at its centre column into ``(x_L, x_R')``, both full width.

    ``x_L`` holds the left half; ``x_R'`` the right half mirrored (``mirror=False``: not mirrored,
    the ablation where the halves do not correspond).  Each half sits in the left columns and is
    made full width by ``fill``:

    * ``"mirror"`` (default): completed by its own mirror image, a mirror-symmetric full face
      (``x_L = [left | mirror(left)]``, ``x_R' = [mirror(right) | right]``), so the halves reach the
      network as faces, through the same weights that full faces use;
    * ``"zero"``: padded with zeros (the right columns are empty, and the weights that read them
      never see a half);
    * ``"resize"``: stretched to full width by repeating each column.

    How the paper feeds half faces is not known (reconstructed).  For an exactly symmetric ``x``,
    ``x_L == x_R'`` bit for bit, for every fill."""
    x = _images(x)
    if x.shape[-1] % 2:
        raise ValueError(f"the image width must be even to cut it at the centre; got {x.shape[-1]}")
    checks.choice(fill, "fill", FILLS)
    w = x.shape[-1] // 2
    left, right = x[..., :w], x[..., w:]
    right = right.flip(-1) if mirror else right
    if fill == "mirror":
        return torch.cat([left, left.flip(-1)], -1), torch.cat([right, right.flip(-1)], -1)
    if fill == "resize":
        return left.repeat_interleave(2, dim=-1), right.repeat_interleave(2, dim=-1)
    pad = lambda h: F.pad(h, (0, w))
    return pad(left), pad(right)


# --------------------------------------------------------------------------------------------
# The symmetry loss and its variants
# --------------------------------------------------------------------------------------------

def half_pair_loss(S, labels, *, rho, rho_min: float = 0.5, variant: str = "cosine", weighted: bool = True,
                   tau: float = 0.1) -> torch.Tensor:
    r"""The symmetry term as a function of the half-face similarity matrix (the GPW form).

    ``S`` is the 2n x 2n cosine matrix of ``[f(x_L,1..n); f(x_R',1..n)]`` (rows i and n+i are the
    two halves of face i), ``labels`` (2n,) their identities, ``rho`` (n,) the faces' frontness.
    Face i is kept when ``rho_i >= rho_min``; ``c_i = (S_{i, n+i} + S_{n+i, i}) / 2`` is its half-pair
    cosine (both entries, so that the weights of a symmetric S are symmetric too).

    * ``"cosine"`` (reconstructed - verify against the paper):
      :math:`L_\rho = \frac1n \sum_{i\,\mathrm{kept}} \rho_i (1 - c_i)`, n = number kept
      (``weighted=False``: without the factor :math:`\rho_i`).  Its only non-zero weights are
      :math:`\partial L/\partial c_i = -\rho_i/n`, half of it on each of the two entries of S: a
      constant pull, no push.
    * ``"infonce"`` (an exercise, not the paper's loss): NT-Xent (:func:`lossviz.nt_xent_loss`,
      temperature ``tau``) over the kept halves, each half's positives being the halves of
      the same identity, its negatives the halves of the other identities.  Unweighted.

    No face kept: the loss is 0 (with a gradient of 0), not NaN.
    """
    S = checks.as_float_tensor(S, "S (half-face similarities, 2n x 2n)", 2)
    if S.shape[0] != S.shape[1] or S.shape[0] % 2:
        raise ValueError(f"S must be 2n x 2n (left halves, then right halves); got {tuple(S.shape)}")
    n = S.shape[0] // 2
    labels = checks.check_labels(labels, 2 * n, S.device)
    keep, rho = _kept(rho, n, rho_min, S)
    if variant == "cosine":
        c = (S.diagonal(offset=n) + S.diagonal(offset=-n)) / 2
        w = rho if weighted else torch.ones_like(rho)
        return torch.where(keep, w * (1 - c), 0).sum() / keep.sum().clamp(min=1)
    if variant == "infonce":
        both = torch.cat([keep, keep])
        if not bool(both.any()):
            return S.sum() * 0
        return nt_xent_loss(S[both][:, both], labels[both], tau=tau)
    raise ValueError(f"variant must be 'cosine' or 'infonce' for a loss on S; got {variant!r} "
                     "('arcface' works on class cosines: half_arcface_loss)")


def symmetry_loss(z_left, z_right, rho, *, rho_min: float = 0.5, labels=None, variant: str = "cosine",
                  weighted: bool = True, tau: float = 0.1) -> torch.Tensor:
    r"""SymFace's :math:`L_\rho` on half-face embeddings (n x D each): the cosine matrix of
    ``[z_left; z_right]`` through :func:`half_pair_loss`.  The embeddings are L2-normalised here.

    Default: :math:`L_\rho = \frac1n \sum_{\rho_i \ge \rho_{min}} \rho_i\,(1 - \cos(f(x_{L,i}), f(x_{R',i})))`
    (reconstructed - verify against the paper).  ``labels`` (n,) are needed by ``"infonce"`` only."""
    z_left = checks.as_float_tensor(z_left, "z_left (left-half embeddings, n x D)", 2)
    z_right = checks.as_float_tensor(z_right, "z_right (mirrored right-half embeddings, n x D)", 2)
    if z_left.shape != z_right.shape:
        raise ValueError(f"z_left and z_right must have the same shape; got {tuple(z_left.shape)} "
                         f"and {tuple(z_right.shape)}")
    n = z_left.shape[0]
    if labels is None:
        if variant == "infonce":
            raise ValueError("the infonce variant needs labels (the identity of each face)")
        labels = torch.arange(n, device=z_left.device)
    labels = checks.check_labels(labels, n, z_left.device)
    if n == 0:
        return z_left.sum() * 0
    S = similarity(torch.cat([z_left, z_right]))
    return half_pair_loss(S, torch.cat([labels, labels]), rho=rho, rho_min=rho_min, variant=variant,
                          weighted=weighted, tau=tau)


def half_arcface_loss(cos_left, cos_right, labels, rho, *, rho_min: float = 0.5, s: float = 16.0,
                      m: float = 0.3) -> torch.Tensor:
    """ArcFace on the half faces (an exercise, not the paper's loss): each kept half is classified
    by identity with the same class proxies as the full faces.  ``cos_left`` / ``cos_right`` are
    n x K half-to-proxy cosines.  Unweighted mean over kept halves; 0 when none is kept."""
    cos_left = checks.as_float_tensor(cos_left, "cos_left (n x K)", 2)
    cos_right = checks.as_float_tensor(cos_right, "cos_right (n x K)", 2)
    if cos_left.shape != cos_right.shape:
        raise ValueError("cos_left and cos_right must have the same shape")
    n = cos_left.shape[0]
    labels = checks.check_labels(labels, n, cos_left.device)
    keep, _ = _kept(rho, n, rho_min, cos_left)
    if not bool(keep.any()):
        return cos_left.sum() * 0
    return arcface_loss(torch.cat([cos_left[keep], cos_right[keep]]), torch.cat([labels[keep], labels[keep]]), s=s, m=m)


def half_pair_weights(S, labels, *, rho, signed: bool = True, **knobs) -> torch.Tensor:
    """The pair weights ``dL/dS`` (2n x 2n) of :func:`half_pair_loss` by autograd, and for the
    cosine variant the per-face pull ``dL/dc_i`` on the diagonal block (see the module docstring)."""
    from ..weights import pair_weights

    return pair_weights(half_pair_loss, S, labels, signed=signed, rho=rho, **knobs)


def _kept(rho, n: int, rho_min, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The 3PSS filter: ``rho >= rho_min``, and rho as a tensor like ``like``."""
    rho_min = checks.fraction(rho_min, "rho_min (the frontness threshold)")
    rho = torch.as_tensor(rho, device=like.device)
    if not rho.is_floating_point():
        raise ValueError(f"rho (frontness) must be floating point in [0, 1]; got dtype {rho.dtype}")
    if rho.shape != (n,):
        raise ValueError(f"rho must have shape ({n},), one frontness score per face; got {tuple(rho.shape)}")
    rho = rho.to(like.dtype)
    if checks.validation_enabled() and not bool(((rho >= 0) & (rho <= 1)).all()):
        raise ValueError("rho (frontness) must lie in [0, 1] and be finite; see frontness()")
    return rho >= rho_min, rho


def _images(x) -> torch.Tensor:
    x = torch.as_tensor(x)
    if not x.is_floating_point():
        x = x.float()
    if x.ndim < 2:
        raise ValueError(f"images must have shape (..., H, W); got {tuple(x.shape)}")
    return x


# --------------------------------------------------------------------------------------------
# Measures
# --------------------------------------------------------------------------------------------

def spread(emb, labels) -> dict:
    """Intra- and inter-class spread of embeddings: the mean ``1 - cos`` over genuine
    (same-label) pairs and over impostor (different-label) pairs.  Small intra, large inter is
    good; an inter spread near 0 means collapse (everything at one point)."""
    emb = checks.as_float_tensor(emb, "emb (embeddings, N x D)", 2)
    labels = checks.check_labels(labels, emb.shape[0], emb.device)
    S = similarity(emb.detach().double())
    i, j = torch.triu_indices(len(S), len(S), offset=1, device=S.device)
    same = labels[i] == labels[j]
    if not bool(same.any()) or bool(same.all()):
        raise ValueError("spread needs both same-label and different-label pairs")
    d = 1 - S[i, j]
    return {"intra": float(d[same].mean()), "inter": float(d[~same].mean())}


def half_cosines(model, x, *, mirror: bool = True, fill: str = "mirror") -> torch.Tensor:
    """``c_i = cos(f(x_L,i), f(x_R',i))`` for images ``x`` (N, H, W), without gradients."""
    xl, xr = split_halves(x, mirror=mirror, fill=fill)
    with torch.no_grad():
        return F.cosine_similarity(_embed(model, xl), _embed(model, xr), dim=1)


def _embed(model, x: torch.Tensor) -> torch.Tensor:
    was = model.training
    model.eval()
    with torch.no_grad():
        z = model(x)
    model.train(was)
    return z


# --------------------------------------------------------------------------------------------
# Training: ArcFace (+ symmetry)
# --------------------------------------------------------------------------------------------

def face_net(backbone: str = "mlp", dim: int = 32) -> nn.Module:
    """The miniature's backbones on 12 x 12 images, L2-normalised output:
    ``"mlp"``: 144 -> 256 -> ReLU -> ``dim``; ``"cnn"``: conv 1->16, conv 16->32 (3 x 3, ReLU),
    2 x 2 average pool, linear to ``dim``."""
    if checks.choice(backbone, "backbone", ("mlp", "cnn")) == "mlp":
        return nn.Sequential(nn.Flatten(), mlp(SIZE * SIZE, dim, hidden=256))
    return nn.Sequential(nn.Unflatten(1, (1, SIZE)),  # (N, 12, 12) -> (N, 1, 12, 12)
                         nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
                         nn.AvgPool2d(2), nn.Flatten(), nn.Linear(32 * (SIZE // 2) ** 2, dim), L2Normalize())


@dataclass(repr=False)
class SymRun(Run):
    """One ArcFace (+ symmetry) run: ``history`` per iteration (loss, arcface, kept; every 10th: sym,
    half_disparity), ``evals`` on the unseen centred faces (iter, half_disparity, cross_half_cos),
    ``scores`` on the unseen identities at the end (see :func:`train_symface`) and the arrays
    behind the pictures."""

    rho: np.ndarray | None = None                 # frontness of the test faces
    half_cos_before: np.ndarray | None = None     # half-pair cosine of every test face, untrained
    half_cos_after: np.ndarray | None = None      # ... and trained
    cross_half_cos: np.ndarray | None = None      # cosines between halves of different unseen identities
    model: nn.Module | None = None                # the trained network (eval mode)

    @property
    def tar(self) -> float:
        """TAR at FAR = 1e-2 on the unseen identities, at the end."""
        return self.final("tar")

    def __repr__(self) -> str:
        p = self.params
        return (f"SymRun({p['backbone']}, w_sym={p['w_sym']:g}, {p['variant']}, seed {p['seed']}: "
                f"TAR@1e-2 {self.tar:.3f}, half disparity {self.scores['half_disparity']:.4f})")


def train_symface(*, w_sym: float = 1.0, rho_min: float = 0.5, variant: str = "cosine", mirror: bool = True,
                  fill: str = "mirror", nuisance: float = 1.0, s: float = 16.0, m: float = 0.3,
                  backbone: str = "mlp", dim: int = 32, iters: int = 500, batch: int = 128,
                  lr: float = 2e-3, seed: int = 0, eval_every: int = 50, progress=True,
                  cache: bool = True) -> SymRun:
    """Train ``L = L_ArcFace + w_sym * L_sym`` on the synthetic faces (:func:`faces`: 200 training
    identities, 100 unseen), Adam, random batches of ``batch`` images, and measure it.

    ``L_sym`` is :func:`symmetry_loss` (``variant`` ``"cosine"`` or ``"infonce"``) or
    :func:`half_arcface_loss` (``"arcface"``) on the batch's faces with ``rho >= rho_min``; halves from
    :func:`split_halves` (``mirror``, ``fill``); with ``w_sym = 0`` it is only measured (every 10th
    step, as the cosine variant).  The data are the same for every seed (data seed 0);
    ``seed`` sets the initialisation and the batches.  ``progress`` as in :func:`lossviz.train.loop`.

    ``scores`` (unseen identities, after training): ``tar`` (TAR at FAR 1e-2; ``tar_before``: the
    untrained network's, to check that a run learns), ``half_disparity``
    (mean ``1 - c_i`` on centred faces), ``cross_half_cos`` (mean cosine between left halves of
    different identities, centred faces), ``light_sensitivity`` (mean ``1 - cos`` between a clean
    face lit from the left and from the right), ``intra`` / ``inter`` (:func:`spread` of the full
    faces) and ``half_intra`` / ``half_inter`` (of the left halves of centred faces).
    Cached by parameters (:func:`lossviz.train.memo`)."""
    w_sym = checks.non_negative(w_sym, "w_sym (weight of the symmetry loss)")
    checks.choice(variant, "variant", VARIANTS)
    for arg, value in (("iters", iters), ("batch", batch), ("eval_every", eval_every), ("dim", dim)):
        checks.integer(value, arg, 1)
    if w_sym == 0:
        variant = "cosine"  # the term is only measured then, so every variant is the same ArcFace run
    params = dict(w_sym=w_sym, rho_min=float(rho_min), variant=variant, mirror=bool(mirror), fill=fill,
                  nuisance=float(nuisance), s=float(s), m=float(m), backbone=backbone, dim=dim,
                  iters=iters, batch=batch, lr=checks.positive(lr, "lr"), seed=seed, eval_every=eval_every)
    return memo("symface", params, lambda: _train(params, progress), cache=cache)


def _train(p: dict, progress) -> SymRun:
    data = faces(nuisance=p["nuisance"])
    tr, te = data.train, data.test
    trainer = Trainer(lambda: (face_net(p["backbone"], p["dim"]), CosineClassifier(p["dim"], int(tr.y.max()) + 1)),
                      lr=p["lr"], seed=p["seed"])
    model, head = trainer.model
    rng = np.random.default_rng(p["seed"])
    halves = dict(mirror=p["mirror"], fill=p["fill"])
    half_cos_before = half_cosines(model, te.x, **halves).numpy()
    tar_before = tar_at_far(_embed(model, te.x), te.y, far=1e-2)
    centred = te.subset(te.shift == 0)

    def evaluate() -> dict:
        half, _ = _half_measures(model, centred, halves)
        return {key: half[key] for key in ("half_disparity", "cross_half_cos")}

    def step(it: int) -> dict:
        idx = torch.as_tensor(rng.choice(len(tr), size=min(p["batch"], len(tr)), replace=False))
        x, y, rho = tr.x[idx], tr.y[idx], tr.rho[idx]
        keep = rho >= p["rho_min"]
        record = it % 10 == 0  # the symmetry term is logged every 10th step, also when w_sym = 0
        train_sym = p["w_sym"] > 0 and bool(keep.any())
        if train_sym:  # one pass through the network for the faces and the halves of the kept ones
            z, zl, zr = model(torch.cat([x, *split_halves(x[keep], mirror=p["mirror"], fill=p["fill"])])).split(
                [len(x), int(keep.sum()), int(keep.sum())])
        else:
            z = model(x)
        arc = arcface_loss(head(z), y, s=p["s"], m=p["m"])
        out = {"arcface": arc, "kept": keep.float().mean()}
        loss = arc
        if bool(keep.any()) and (train_sym or record):
            with torch.set_grad_enabled(train_sym):
                halves_z = (zl, zr) if train_sym else None
                sym, disparity = _symmetry_term(model, head, x[keep], y[keep], rho[keep], p, halves_z)
            if record:
                out |= {"sym": sym, "half_disparity": disparity}
            if p["w_sym"] > 0:
                loss = arc + p["w_sym"] * sym
        trainer.update(loss)
        return {"loss": loss.detach(), **{k: v.detach() for k, v in out.items()}}

    history, evals, seconds = trainer.run(step, p["iters"], evaluate=evaluate, eval_every=p["eval_every"],
                                          desc=f"ArcFace + {p['w_sym']:g} x {p['variant']}", progress=progress)
    scores, cross = _final_scores(model, data, centred, halves)
    scores["tar_before"] = tar_before
    return SymRun(params=p, history=history, evals=evals, scores=scores, seconds=seconds, rho=te.rho.numpy(),
                  half_cos_before=half_cos_before, half_cos_after=half_cosines(model, te.x, **halves).numpy(),
                  cross_half_cos=cross, model=model.eval())


def _symmetry_term(model, head, x, y, rho, p: dict, halves_z=None) -> tuple[torch.Tensor, torch.Tensor]:
    """``L_sym`` of :func:`train_symface`'s variant on the kept faces ``x`` of a batch, and their
    mean half disparity ``1 - c_i``; ``halves_z``: their half embeddings, if already computed."""
    if halves_z is None:
        halves_z = (model(h) for h in split_halves(x, mirror=p["mirror"], fill=p["fill"]))
    zl, zr = halves_z
    if p["variant"] == "arcface":
        sym = half_arcface_loss(head(zl), head(zr), y, rho, rho_min=p["rho_min"], s=p["s"], m=p["m"])
    else:
        sym = symmetry_loss(zl, zr, rho, rho_min=p["rho_min"], labels=y, variant=p["variant"])
    return sym, (1 - F.cosine_similarity(zl, zr, dim=1)).mean()


def _final_scores(model, data: FaceSplit, centred: Faces, halves: dict) -> tuple[dict, np.ndarray]:
    """The ``scores`` of :func:`train_symface` on the unseen identities, and the cosines between
    halves of different unseen identities (for the histogram)."""
    te = data.test
    z = _embed(model, te.x)
    half, cross = _half_measures(model, centred, halves)
    ids = te.y.unique()
    lit = [_embed(model, data.templates[ids] + lighting_ramp(torch.full((len(ids),), side), data.nuisance))
           for side in (-1, 1)]
    scores = {"tar": tar_at_far(z, te.y, far=1e-2), **spread(z, te.y), **half,
              "light_sensitivity": float((1 - F.cosine_similarity(*lit, dim=1)).mean())}
    return scores, cross


def _half_measures(model, centred: Faces, halves: dict) -> tuple[dict, np.ndarray]:
    """Half disparity and the spread of the left-half embeddings on centred faces, and the
    cosines between left halves of different identities."""
    xl, xr = split_halves(centred.x, **halves)
    zl, zr = _embed(model, xl), _embed(model, xr)
    S = similarity(zl.double())
    i, j = torch.triu_indices(len(S), len(S), offset=1)
    cross = S[i, j][centred.y[i] != centred.y[j]]
    half = spread(zl, centred.y)
    return ({"half_disparity": float((1 - F.cosine_similarity(zl, zr, dim=1)).mean()),
             "cross_half_cos": float(cross.mean()), "half_intra": half["intra"], "half_inter": half["inter"]},
            cross.float().numpy())


def mirror_test(x, y, centres=None) -> dict:
    """Does the mirror image of ``x`` still belong to its class?  For each class ``k``: the
    fraction of its images whose nearest class centre (Euclidean, on pixels) is ``k``, for the
    images and for their mirror images: ``{k: (rate, rate_mirrored)}``.  ``centres`` (K, H, W)
    default to the class means.  A class whose centre is symmetric gives equal rates."""
    x = _images(x)
    y = checks.check_labels(y, x.shape[0], x.device)
    classes = y.unique()
    if centres is None:
        centres = torch.stack([x[y == k].mean(0) for k in classes])
    centres = _images(centres)
    if centres.shape[0] != len(classes) or centres.shape[1:] != x.shape[1:]:
        raise ValueError(f"centres must have shape ({len(classes)}, {', '.join(map(str, x.shape[1:]))}); "
                         f"got {tuple(centres.shape)}")
    near = lambda imgs: classes[torch.cdist(imgs.flatten(1), centres.flatten(1)).argmin(1)]
    hit, hit_m = near(x) == y, near(mirror(x)) == y
    return {int(k): (float(hit[y == k].float().mean()), float(hit_m[y == k].float().mean())) for k in classes}


# --------------------------------------------------------------------------------------------
# Pictures and panels
# --------------------------------------------------------------------------------------------

#: One colour per run kind in this notebook's figures (never the pull / push pair colours).
SYM_COLORS = {"ArcFace": "#332288", "+ symmetry (cosine)": "#AA4499", "+ InfoNCE halves": "#117733",
              "+ ArcFace halves": "#999933", "+ symmetry, w_sym = 5": "#CC6677",
              "+ symmetry, zero-padded halves": "#44AA99"}


def show_faces(axes_row, images, titles) -> None:
    """Images in a row of axes, one grey scale for all (black low, white high)."""
    lim = max(float(torch.as_tensor(im).abs().max()) for im in images)
    for ax, im, title in zip(axes_row, images, titles):
        ax.imshow(torch.as_tensor(im).numpy(), cmap="gray", vmin=-lim, vmax=lim)
        ax.set(title=title, xticks=[], yticks=[])
        ax.grid(False)


def plot_frontness(ax, faces_: Faces, rho_min: float, *, seed: int = 0):
    """rho against the pose shift (jittered), the threshold rho_min, the kept faces filled."""
    _frontness_view(ax, seed=seed)(faces_, rho_min)


def _frontness_view(ax, *, seed: int = 0):
    """The artists of :func:`plot_frontness`, made once; returns ``update(faces_, rho_min)``, which
    moves them in place."""
    from ..plots import MUTED, POS_COLOR

    none = np.zeros(0)
    kept = ax.scatter(none, none, s=14, color=POS_COLOR, label="kept")
    dropped = ax.scatter(none, none, s=14, facecolors="none", edgecolors=MUTED, label="not kept: no L_ρ gradient")
    line = ax.axhline(0.5, color="k", lw=1, ls="--")
    text = ax.text(-1.45, 0.5, "", va="bottom", ha="left")
    ax.set(xlabel="pose shift (pixels)", ylabel="frontness ρ", xticks=[-1, 0, 1], xlim=(-1.5, 1.5), ylim=(-0.05, 1.35),
           title="frontness ρ and the 3PSS filter")
    legend = ax.legend(loc="upper right", fontsize=9)

    def update(faces_: Faces, rho_min: float) -> None:
        g = np.random.default_rng(seed)
        sx = faces_.shift.numpy() + g.uniform(-0.15, 0.15, len(faces_))
        rho = faces_.rho.numpy()
        keep = rho >= rho_min
        kept.set_offsets(np.column_stack([sx[keep], rho[keep]]))
        dropped.set_offsets(np.column_stack([sx[~keep], rho[~keep]]))
        line.set_ydata([rho_min, rho_min])
        text.set_y(rho_min)
        text.set_text(f"ρ_min = {rho_min:.2f}")
        legend.get_texts()[0].set_text(f"kept ({keep.mean():.0%}): get L_ρ gradient")

    return update


def plot_curves(axes, runs: dict) -> None:
    """Learning curves of ``{label: [SymRun, ...]}`` (seeds as thin lines): the ArcFace term, the
    symmetry term (cosine disparity logged every 10th step), and on unseen centred faces the half
    disparity and the cross-identity half cosine."""
    specs = [("history", "arcface", "ArcFace term (training batch)", "loss"),
             ("history", "half_disparity", "half disparity 1 - c (training batch)", "1 - cos"),
             ("evals", "half_disparity", "half disparity, unseen faces", "1 - cos"),
             ("evals", "cross_half_cos", "half cosine, different people", "mean cosine")]
    for ax, (where, key, title, ylabel) in zip(np.ravel(axes), specs):
        for label, seeds in runs.items():
            for k, r in enumerate(seeds):
                d = getattr(r, where)
                it = d.get(key + "_iter", d["iter"])
                ax.plot(it, d[key], color=SYM_COLORS.get(label), lw=1, alpha=0.9, label=label if k == 0 else None)
        ax.set(title=title, xlabel="iteration", ylabel=ylabel)
    np.ravel(axes)[0].legend(loc="upper right", fontsize=9)


def plot_collapse(ax, runs: dict, *, bins: int = 40) -> None:
    """Histogram of cosines between half-face embeddings of *different* people, per run."""
    from ..plots import NEG_COLOR

    for label, r in runs.items():
        ax.hist(r.cross_half_cos, bins=bins, range=(-1, 1), density=True, histtype="stepfilled", alpha=0.45,
                color=SYM_COLORS.get(label), label=f"{label}: mean {r.scores['cross_half_cos']:.2f}")
    ax.axvline(1.0, color=NEG_COLOR, lw=1, ls=":")
    ax.set(xlabel="cosine between halves of two different people", ylabel="density",
           title="the collapse picture (unseen, centred faces)")
    ax.legend(loc="upper left", fontsize=9)


def plot_spread(axes_row, runs: dict) -> None:
    """Intra- and inter-class spread (mean 1 - cos over same / different-person pairs) of the
    full faces and of the half faces, per run kind, mean over seeds with each seed as a dot."""
    from ..plots import NEG_COLOR, POS_COLOR

    for ax, (prefix, what) in zip(axes_row, (("", "full faces"), ("half_", "left halves (centred)"))):
        for j, (label, seeds) in enumerate(runs.items()):
            for k, (kind, color) in enumerate((("intra", POS_COLOR), ("inter", NEG_COLOR))):
                vals = [r.scores[prefix + kind] for r in seeds]
                x = 3 * j + k
                ax.bar(x, np.mean(vals), color=color, alpha=0.75, label=(f"{kind}-class" if j == 0 else None))
                ax.scatter([x] * len(vals), vals, color="k", s=10, zorder=3)
        ax.set_xticks([3 * j + 0.5 for j in range(len(runs))], list(runs), fontsize=9)
        ax.set(ylabel="mean 1 - cos", ylim=(0, 1.1), title=f"spread of {what}")
        ax.legend(loc="upper right", fontsize=9)


def symmetry_panel(model, *, templates=None, w_sym: float = 1.0, rho_min: float = 0.5, variant: str = "cosine",
                   mirror: bool = True, nuisance: float = 1.0, n_ids: int = 6, n_per_id: int = 3):
    """Pure maths: the symmetry term's weights on a fixed batch of ``n_ids x n_per_id`` new faces
    embedded by a fixed ``model`` (identities: ``templates``, default 6 new ones).

    Knobs: w_sym, rho_min, the variant (cosine, cosine without the rho factor, InfoNCE between
    halves), mirroring, and the nuisance strength (redraws the batch with the same seed).
    Left: rho of each face and the kept ones; middle: the signed weights ``w_sym dL/dS`` on the
    half-face similarity matrix (blue pulls, vermillion pushes); right: the pull on each face's
    own half pair, ``-w_sym dL/dc_i``, against rho_i.  The artists are made once and updated in place."""
    import ipywidgets as W

    from .. import plots, widgets

    style = dict(continuous_update=False, style={"description_width": "initial"})
    controls = {
        "w_sym": W.FloatSlider(value=w_sym, min=0.0, max=2.0, step=0.05, description="w_sym", **style),
        "rho_min": W.FloatSlider(value=rho_min, min=0.0, max=1.0, step=0.05, description="ρ_min (frontness threshold)", **style),
        "variant": W.Dropdown(options=[("cosine (reconstruction)", "cosine"), ("cosine, no ρ factor", "unweighted"),
                                       ("InfoNCE halves (exercise)", "infonce")], value=variant, description="variant"),
        "mirror": W.Checkbox(value=mirror, description="mirror the right half", indent=False),
        "nuisance": W.FloatSlider(value=nuisance, min=0.0, max=1.0, step=0.1, description="nuisance strength", **style),
    }
    fig, axes = plots.new_figure(3, width=4.3, height=3.8)
    templates = face_templates(n_ids, seed=99) if templates is None else templates
    batches: dict = {}           # (nuisance, mirror) -> (faces, half-face similarities): the weights change more often

    def batch_and_S(nuisance_: float, mirror_: bool):
        if (nuisance_, mirror_) not in batches:
            batch = make_faces(len(templates), n_per_id, nuisance=nuisance_, seed=99, templates=templates)
            xl, xr = split_halves(batch.x, mirror=mirror_)
            batches[nuisance_, mirror_] = batch, similarity(torch.cat([_embed(model, xl), _embed(model, xr)]).double())
        return batches[nuisance_, mirror_]

    first, S0 = batch_and_S(nuisance, mirror)
    labels = torch.cat([first.y, first.y])
    show_frontness = _frontness_view(axes[0, 0])
    heat = plots.weight_heatmap(axes[0, 1], torch.zeros_like(S0), labels, title="w_sym · ∂L/∂S on [left; right] halves",
                                colorbar=False)
    none = np.zeros(0)
    pulled = axes[0, 2].scatter(none, none, color=plots.POS_COLOR, s=18, label="kept faces")
    left = axes[0, 2].scatter(none, none, facecolors="none", edgecolors=plots.MUTED, s=18, label="not kept")
    axes[0, 2].set(xlabel="frontness ρ_i", ylabel="pull on own half pair, -w_sym ∂L/∂c_i",
                   title="per-face pull", xlim=(-0.05, 1.05))
    axes[0, 2].legend(loc="upper left", fontsize=9)

    def draw(v):
        batch, S = batch_and_S(v["nuisance"], v["mirror"])
        unweighted = v["variant"] == "unweighted"
        knobs = dict(rho=batch.rho.double(), rho_min=v["rho_min"], variant="cosine" if unweighted else v["variant"],
                     weighted=not unweighted)
        Wt = v["w_sym"] * half_pair_weights(S, labels, **knobs)
        loss = v["w_sym"] * float(half_pair_loss(S, labels, **knobs))
        n = len(batch)
        pull = -Wt.diagonal(offset=n) - Wt.diagonal(offset=-n)   # dL/dc_i: c_i enters S twice (S is symmetric)
        show_frontness(batch, v["rho_min"])
        plots.set_weight_image(heat, Wt, labels)
        keep = batch.rho >= v["rho_min"]
        c = S.diagonal(offset=n)
        pulled.set_offsets(np.column_stack([batch.rho[keep].numpy(), pull[keep].numpy()]))
        left.set_offsets(np.column_stack([batch.rho[~keep].numpy(), pull[~keep].numpy()]))
        axes[0, 2].relim()
        axes[0, 2].autoscale_view(scalex=False)
        push = float(Wt.clamp(min=0).sum())
        status = (f"L = {loss:.4f} · kept {int(keep.sum())}/{n} faces · mean half disparity 1 - c = "
                  f"{float((1 - c).mean()):.3f} · total push on pairs of different people: {push:.3g}")
        return {"W": Wt, "pull": pull, "keep": keep, "rho": batch.rho, "loss": loss, "push": push, "status": status}

    return widgets.Panel(controls, fig, draw)


def training_panel(*, iters: int = 500, autorun: bool = True, **defaults):
    """A Train button over :func:`train_symface` (cached by parameters).  Each press also trains
    (or fetches) the same setting with ``w_sym = 0``, the ArcFace baseline.  Draws the learning
    curves of both and the collapse histogram; the status line gives TAR at FAR 1e-2."""
    import ipywidgets as W

    from .. import widgets

    v = dict(w_sym=1.0, rho_min=0.5, variant="cosine", mirror=True, fill="mirror", nuisance=1.0, s=16.0, m=0.3,
             backbone="mlp", seed=0) | defaults
    style = dict(continuous_update=False, style={"description_width": "initial"}, layout=W.Layout(width="300px"))
    controls = {
        "w_sym": W.FloatSlider(value=v["w_sym"], min=0.0, max=5.0, step=0.1, description="w_sym", **style),
        "rho_min": W.FloatSlider(value=v["rho_min"], min=0.0, max=1.0, step=0.05, description="ρ_min", **style),
        "variant": W.Dropdown(options=list(VARIANTS), value=v["variant"], description="variant"),
        "mirror": W.Checkbox(value=v["mirror"], description="mirror", indent=False),
        "fill": W.Dropdown(options=list(FILLS), value=v["fill"], description="half input"),
        "nuisance": W.FloatSlider(value=v["nuisance"], min=0.0, max=1.0, step=0.1, description="nuisance", **style),
        "s": W.FloatSlider(value=v["s"], min=4.0, max=64.0, step=2.0, description="ArcFace s", **style),
        "m": W.FloatSlider(value=v["m"], min=0.0, max=0.8, step=0.05, description="ArcFace m", **style),
        "backbone": W.Dropdown(options=["mlp", "cnn"], value=v["backbone"], description="backbone"),
        "seed": W.BoundedIntText(value=v["seed"], min=0, max=99, description="seed", layout=W.Layout(width="140px")),
    }

    def run(values, progress):
        base = train_symface(**(values | {"w_sym": 0.0}), iters=iters, progress=progress)
        return {"run": train_symface(**values, iters=iters, progress=progress), "base": base}

    def draw(axes, result, values):
        r, b = result["run"], result["base"]
        label = f"w_sym = {values['w_sym']:g}, {values['variant']}"
        for rr, name, color in ((b, "ArcFace (w_sym = 0)", SYM_COLORS["ArcFace"]),
                                (r, label, SYM_COLORS["+ symmetry (cosine)"])):
            axes[0, 0].plot(rr.history["iter"], rr.history["arcface"], color=color, lw=1, label=name)
            axes[0, 1].plot(rr.evals["iter"], rr.evals["half_disparity"], color=color, label=name)
            axes[0, 1].plot(rr.evals["iter"], rr.evals["cross_half_cos"], color=color, ls="--")
            axes[0, 2].hist(rr.cross_half_cos, bins=40, range=(-1, 1), density=True, alpha=0.45, color=color,
                            label=name)
        axes[0, 0].set(title="ArcFace term", xlabel="iteration", ylabel="loss")
        axes[0, 1].set(title="unseen faces: half disparity (solid),\nhalf cosine of different people (dashed)",
                       xlabel="iteration", ylabel="cosine measure", ylim=(-0.05, 1.05))
        axes[0, 2].set(title="half cosines of different people", xlabel="cosine", ylabel="density")
        axes[0, 0].legend(fontsize=9)
        gain = r.tar - b.tar
        return {"gain": gain, "status": (f"TAR@FAR=1e-2 on unseen people: {r.tar:.3f} vs ArcFace {b.tar:.3f} "
                                         f"({gain:+.3f}) · half disparity {r.scores['half_disparity']:.3f} · "
                                         f"cross-person half cosine {r.scores['cross_half_cos']:.2f}")}

    return widgets.run_panel(controls, run, draw, ncols=3, width=4.3, height=3.6, autorun=autorun)
