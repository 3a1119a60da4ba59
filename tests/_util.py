"""Helpers shared by the loss tests."""

import torch


def value_and_grad(fn, S, labels, **knobs):
    """A loss's value and its gradient with respect to ``S`` (taken as a fresh leaf)."""
    leaf = S.detach().clone().requires_grad_(True)
    loss = fn(leaf, labels, **knobs)
    (grad,) = torch.autograd.grad(loss, leaf)
    return loss.detach(), grad


def drawn_artists(fig) -> list:
    """The lines, collections, images and patches of every axes but the colour bars (matplotlib redraws
    those itself when a colour scale moves): a pure-maths panel keeps these objects (it updates them in
    place), so the list is the same, object for object, after a change."""
    return [a for ax in fig.axes if not hasattr(ax, "_colorbar")
            for group in (ax.lines, ax.collections, ax.images, ax.patches) for a in group]


def same_artists(before: list, after: list) -> bool:
    return len(before) == len(after) and all(a is b for a, b in zip(before, after))
