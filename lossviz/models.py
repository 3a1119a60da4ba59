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


def classifier(in_dim: int = 64, hidden: int = 128, n_classes: int = 10) -> nn.Sequential:
    """The MLP of the experiment: ``in_dim -> hidden -> hidden -> n_classes`` with ReLUs (raw logits)."""
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, n_classes))


class StackedClassifier(nn.Module):
    """``len(seeds)`` independent copies of :func:`classifier`, evaluated at once with batched matrix
    products: ``x`` (S x B x in) -> logits (S x B x C).  Copy ``i`` is initialised exactly as
    ``torch.manual_seed(seeds[i]); classifier(...)`` would be.  The copies share no parameter, and
    Adam works element by element, so training the stack on the sum of the copies' losses is the same
    computation as training each copy alone (tested), in less time than separate runs."""

    def __init__(self, seeds, in_dim: int = 64, hidden: int = 128, n_classes: int = 10):
        super().__init__()
        nets = []
        for s in seeds:
            torch.manual_seed(s)
            nets.append(classifier(in_dim, hidden, n_classes))
        layers = [0, 2, 4]
        self.weights = nn.ParameterList([nn.Parameter(torch.stack([n[k].weight.detach().T for n in nets]))
                                         for k in layers])
        self.biases = nn.ParameterList([nn.Parameter(torch.stack([n[k].bias.detach()[None] for n in nets]))
                                        for k in layers])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for k, (W, b) in enumerate(zip(self.weights, self.biases)):
            x = torch.baddbmm(b, x, W)                                    # b + x @ W, one product per copy
            if k < len(self.weights) - 1:
                x = x.relu()
        return x

    def member(self, i: int) -> nn.Sequential:
        """Copy ``i`` as a plain :func:`classifier` (a new module holding its current weights)."""
        W, b = self.weights, self.biases
        net = classifier(W[0].shape[1], W[0].shape[2], W[2].shape[2])
        with torch.no_grad():
            for k, layer in enumerate((0, 2, 4)):
                net[layer].weight.copy_(W[k][i].T)
                net[layer].bias.copy_(b[k][i, 0])
        return net
