"""Helpers shared by the loss tests."""

import torch


def value_and_grad(fn, S, labels, **knobs):
    """A loss's value and its gradient with respect to ``S`` (taken as a fresh leaf)."""
    leaf = S.detach().clone().requires_grad_(True)
    loss = fn(leaf, labels, **knobs)
    (grad,) = torch.autograd.grad(loss, leaf)
    return loss.detach(), grad
