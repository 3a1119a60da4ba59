"""Small embedding networks (L2-normalised outputs) and the no-training baselines."""

from __future__ import annotations

import math

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


def classifier(in_dim: int = 64, hidden: int = 128, n_classes: int = 10) -> nn.Sequential:
    """The MLP of the experiment: ``in_dim -> hidden -> hidden -> n_classes`` with ReLUs (raw logits)."""
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, n_classes))


class StackedMLP(nn.Module):
    """``len(seeds)`` independent MLPs ``sizes[0] -> ... -> sizes[-1]`` (ReLU between layers),
    evaluated at once with batched matrix products: ``x`` (S x B x in, one batch per member, or
    B x in, the same batch for all) -> S x B x out.

    Member ``i`` is initialised on its own: as ``torch.manual_seed(seeds[i])`` followed by the
    ``nn.Linear`` layers would be (``init="torch"``), or with Glorot-uniform weights
    (``+-sqrt(6 / (fan_in + fan_out))``) and zero biases drawn from a generator seeded with
    ``seeds[i]`` (``init="glorot"``, Keras' ``Dense``).  The members share no parameter, and Adam
    works element by element, so training the stack on the *sum* of the members' losses is the same
    computation as training each member alone (tested), in a fraction of the time of separate runs:
    the paired seeds of a claim train as one network."""

    def __init__(self, sizes, seeds, *, init: str = "torch"):
        super().__init__()
        if init not in ("torch", "glorot"):
            raise ValueError(f"init must be 'torch' or 'glorot'; got {init!r}")
        sizes, seeds = [int(d) for d in sizes], [int(s) for s in seeds]
        if len(sizes) < 2 or not seeds:
            raise ValueError("a stack needs at least two sizes (in, out) and one seed")
        shapes = list(zip(sizes[:-1], sizes[1:]))
        members = []
        for seed in seeds:
            if init == "torch":
                torch.manual_seed(seed)
                layers = [nn.Linear(a, b) for a, b in shapes]
                members.append([(m.weight.detach().T, m.bias.detach()[None]) for m in layers])
            else:
                g = torch.Generator().manual_seed(seed)
                members.append([((torch.rand(a, b, generator=g) * 2 - 1) * math.sqrt(6 / (a + b)), torch.zeros(1, b))
                                for a, b in shapes])
        self.weights = nn.ParameterList([nn.Parameter(torch.stack([m[k][0] for m in members])) for k in range(len(shapes))])
        self.biases = nn.ParameterList([nn.Parameter(torch.stack([m[k][1] for m in members])) for k in range(len(shapes))])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for k, (W, b) in enumerate(zip(self.weights, self.biases)):
            x = torch.baddbmm(b, x, W) if x.dim() == 3 else torch.matmul(x, W) + b   # b + x @ W, per member
            if k < len(self.weights) - 1:
                x = x.relu()
        return x


class StackedClassifier(StackedMLP):
    """``len(seeds)`` independent copies of :func:`classifier` as a :class:`StackedMLP`: ``x``
    (S x B x in) -> logits (S x B x C); copy ``i`` is initialised exactly as
    ``torch.manual_seed(seeds[i]); classifier(...)`` would be."""

    def __init__(self, seeds, in_dim: int = 64, hidden: int = 128, n_classes: int = 10):
        super().__init__((in_dim, hidden, hidden, n_classes), seeds)

    def member(self, i: int) -> nn.Sequential:
        """Copy ``i`` as a plain :func:`classifier` (a new module holding its current weights)."""
        W, b = self.weights, self.biases
        net = classifier(W[0].shape[1], W[0].shape[2], W[2].shape[2])
        with torch.no_grad():
            for k, layer in enumerate((0, 2, 4)):
                net[layer].weight.copy_(W[k][i].T)
                net[layer].bias.copy_(b[k][i, 0])
        return net
