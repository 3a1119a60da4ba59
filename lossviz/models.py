"""Small embedding networks (L2-normalised outputs) and the no-training baselines."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class L2Normalize(nn.Module):
    """Project each embedding onto the unit sphere, so that dot products are cosines."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=1)


def mlp(in_dim: int = 64, out_dim: int = 2, hidden: int = 128) -> nn.Sequential:
    """MLP ``in_dim -> hidden -> ReLU -> out_dim``, L2-normalised (the digits model)."""
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim), L2Normalize())


def cnn1d(length: int = 40, out_dim: int = 32) -> nn.Sequential:
    """Small 1-D CNN for MNIST-1D: conv 1->32 (k5), conv 32->64 (k5, stride 2), linear to ``out_dim``."""
    conv_len = ((length - 4) - 5) // 2 + 1
    return nn.Sequential(
        nn.Unflatten(1, (1, length)),
        nn.Conv1d(1, 32, 5), nn.ReLU(),
        nn.Conv1d(32, 64, 5, stride=2), nn.ReLU(),
        nn.Flatten(), nn.Linear(64 * conv_len, out_dim), L2Normalize(),
    )


def encoder_projector(in_dim: int = 64, hidden: int = 128, dim: int = 32) -> nn.Sequential:
    """SimCLR's network in miniature: encoder ``in_dim -> hidden -> hidden`` (the representation h),
    projector ``hidden -> hidden -> dim`` (z, L2-normalised; the loss sees z)."""
    return nn.Sequential(
        nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),      # encoder
        nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, dim), L2Normalize(),     # projector
    )


def model_for(x: torch.Tensor, out_dim: int, *, normalize: bool = True) -> nn.Module:
    """The lessons' model for a feature matrix: a 1-D CNN for signals (MNIST-1D), an MLP otherwise.
    ``normalize=False`` drops the final L2 normalisation (raw Euclidean embeddings)."""
    net = cnn1d(x.shape[1], out_dim) if x.shape[1] == 40 else mlp(x.shape[1], out_dim)
    return net if normalize else net[:-1]


def pca_embedding(x_train: torch.Tensor, x_test: torch.Tensor, dim: int, *, whiten: bool = False) -> torch.Tensor:
    """Test features projected on the first ``dim`` principal axes of the training features."""
    mean = x_train.double().mean(dim=0)
    _, s, vt = torch.linalg.svd(x_train.double() - mean, full_matrices=False)
    z = (x_test.double() - mean) @ vt[:dim].T
    if whiten:
        z = z / (s[:dim] / (len(x_train) - 1) ** 0.5).clamp(min=1e-12)
    return z.float()
