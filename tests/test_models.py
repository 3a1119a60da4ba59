"""The core's stack of seeded MLPs: each member is the network its seed alone would build, and
training the stack on the sum of the members' losses is training each member alone."""

import math

import pytest
import torch
from torch import nn

from lossviz import models


def _alone(sizes, seed):
    torch.manual_seed(seed)
    layers = []
    for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers += [nn.Linear(a, b)] + ([nn.ReLU()] if k < len(sizes) - 2 else [])
    return nn.Sequential(*layers)


def test_each_member_is_the_network_its_seed_builds_and_trains_as_alone():
    sizes, seeds = (6, 9, 4), (3, 11)
    stack = models.StackedMLP(sizes, seeds)
    alone = [_alone(sizes, s) for s in seeds]
    x = torch.randn(2, 16, 6, generator=torch.Generator().manual_seed(0))
    y = torch.randn(2, 16, 4, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(stack(x), torch.stack([net(x[i]) for i, net in enumerate(alone)]))
    torch.testing.assert_close(stack(x[0]), torch.stack([net(x[0]) for net in alone]))   # one batch for all
    opt = torch.optim.Adam(stack.parameters(), lr=1e-2)
    opts = [torch.optim.Adam(net.parameters(), lr=1e-2) for net in alone]
    for _ in range(5):
        opt.zero_grad()
        ((stack(x) - y) ** 2).mean(dim=(1, 2)).sum().backward()   # the sum of the members' losses
        opt.step()
        for i, (net, o) in enumerate(zip(alone, opts)):
            o.zero_grad()
            ((net(x[i]) - y[i]) ** 2).mean().backward()
            o.step()
    torch.testing.assert_close(stack(x), torch.stack([net(x[i]) for i, net in enumerate(alone)]), rtol=1e-5, atol=1e-6)


def test_glorot_members_do_not_depend_on_the_rest_of_the_stack():
    both, one = models.StackedMLP((5, 7, 1), (0, 4), init="glorot"), models.StackedMLP((5, 7, 1), (4,), init="glorot")
    for W2, W1 in zip(both.weights, one.weights):
        assert torch.equal(W2[1], W1[0]) and W2.abs().max() <= math.sqrt(6 / (W2.shape[1] + W2.shape[2]))
    assert all((b == 0).all() for b in both.biases)


def test_stacked_classifier_members_are_classifiers():
    stack = models.StackedClassifier([4, 7], in_dim=8, hidden=12, n_classes=3)
    torch.manual_seed(7)
    net = models.classifier(8, 12, 3)
    x = torch.randn(5, 8)
    torch.testing.assert_close(stack(x[None].expand(2, 5, 8))[1], net(x))
    torch.testing.assert_close(stack.member(1)(x), net(x))


def test_bad_arguments():
    with pytest.raises(ValueError, match="init must be"):
        models.StackedMLP((2, 3), (0,), init="xavier")
    with pytest.raises(ValueError, match="at least two sizes"):
        models.StackedMLP((2,), (0,))
