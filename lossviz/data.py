"""Offline datasets and the P x K batch sampler.  Nothing here downloads anything.

* ``digits(split)``: scikit-learn's bundled 8x8 digits (1797 images, pixels scaled to [0, 1]).
  ``"seen"`` is a stratified 50/50 image split over all ten classes; ``"zero_shot"`` trains on
  digits 0-4 and tests on 5-9.  Digits is *easy*: raw-pixel nearest neighbours already reach
  R@1 of about 0.98, and on the zero-shot split no learned embedding beats raw pixels.  Use it for
  pictures (2-D embeddings), not for claims about unseen classes.
* ``mnist1d(split)``: MNIST-1D (Greydanus 2020), 5000 signals of length 40 in 10 classes, generated
  locally with ``make_dataset(get_dataset_args())`` and cached under ``data/``.  ``"unseen"`` pools
  its train/test split, trains on classes 0-4 and tests on 5-9: raw signals reach only about 0.75
  R@1 there, so learned embeddings have room to show differences.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import random
import secrets
import zipfile
import zlib
from dataclasses import dataclass

import numpy as np
import torch

from . import checks


def data_dir() -> pathlib.Path:
    """Where generated data sets are cached (MNIST-1D: ``mnist1d.npz``, 0.7 MB), first match wins:

    1. ``$LOSSVIZ_DATA``, if set;
    2. the checkout's ``data/`` folder, when lossviz runs from a source checkout (``pyproject.toml``
       beside the ``lossviz`` package: ``pip install -e .`` or the notebooks);
    3. a per-user cache folder for an installed wheel: ``$XDG_CACHE_HOME/lossviz`` (default
       ``~/.cache/lossviz``), or ``%LOCALAPPDATA%\\lossviz`` on Windows.

    Never inside site-packages.  Everything there can be deleted: it is generated again, offline."""
    if os.environ.get("LOSSVIZ_DATA"):
        return pathlib.Path(os.environ["LOSSVIZ_DATA"]).expanduser()
    root = pathlib.Path(__file__).resolve().parents[1]
    if (root / "pyproject.toml").is_file() and (root / "lossviz" / "__init__.py").is_file():
        return root / "data"
    if os.name == "nt" and os.environ.get("LOCALAPPDATA"):
        return pathlib.Path(os.environ["LOCALAPPDATA"]) / "lossviz"
    cache = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
    return pathlib.Path(cache) / "lossviz"


#: The cache folder at import (:func:`data_dir`); set it (or ``$LOSSVIZ_DATA``) to move the cache.
DATA_DIR = data_dir()


@dataclass(frozen=True)
class Split:
    """Train and test tensors of one dataset split (features float32, labels int64)."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    description: str = ""

    def __repr__(self) -> str:
        return (f"Split({self.name!r}: train {tuple(self.x_train.shape)} classes "
                f"{sorted(set(self.y_train.tolist()))}, test {tuple(self.x_test.shape)} classes "
                f"{sorted(set(self.y_test.tolist()))})")


def _split(name, x_tr, y_tr, x_te, y_te, description) -> Split:
    f = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float32))  # noqa: E731
    i = lambda a: torch.as_tensor(np.asarray(a, dtype=np.int64))  # noqa: E731
    return Split(name, f(x_tr), i(y_tr), f(x_te), i(y_te), description)


def digits_split(test_size: float | int = 0.5, *, stratify: bool = True, seed: int = 0):
    """scikit-learn's digits split as ``train_test_split(x, y, test_size=test_size, stratify=y if
    stratify else None, random_state=seed)`` splits them: ``(x_train, x_test, y_train, y_test)``,
    pixels 0-16 as float64, labels as int64, fresh arrays on every call.

    Importing scikit-learn costs a new kernel about 1.3 s, more than the lesson's first figure; so
    the images and each split's indices are kept under ``DATA_DIR/digits/`` the first time they are
    made (the index file is named by the split's arguments and scikit-learn's version) and read back
    from there, and kept in memory within a process.  The arrays are the same either way."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an integer; got {seed!r}")
    key = (repr(test_size), bool(stratify), int(seed))
    if key not in _DIGITS_SPLITS:
        x, y = _digits_arrays()
        _DIGITS_SPLITS[key] = _digits_split_indices(test_size, bool(stratify), int(seed), y)
    x, y = _digits_arrays()
    tr, te = _DIGITS_SPLITS[key]
    return x[tr], x[te], y[tr], y[te]


_DIGITS: list = []           # the images and labels, once per process
_DIGITS_SPLITS: dict = {}    # (test_size, stratify, seed) -> (train indices, test indices)


def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """All 1797 digits ``(x, y)``: from memory, else ``DATA_DIR/digits/digits.npz``, else scikit-learn."""
    if not _DIGITS:
        path = DATA_DIR / "digits" / "digits.npz"
        arrays = _read_npz(path, ("x", "y"))
        if arrays is None or not _valid_digits(*arrays):
            from sklearn.datasets import load_digits

            d = load_digits()
            arrays = (np.asarray(d.data, dtype=np.float64), np.asarray(d.target, dtype=np.int64))
            _save_atomic(path, x=arrays[0], y=arrays[1])
        _DIGITS.append(arrays)
    return _DIGITS[0]


def _valid_digits(x: np.ndarray, y: np.ndarray) -> bool:
    return (x.shape == (1797, 64) and x.dtype == np.float64 and y.shape == (1797,) and y.dtype == np.int64
            and bool(np.isfinite(x).all()) and bool(((0 <= x) & (x <= 16)).all()) and bool(((0 <= y) & (y <= 9)).all()))


def _digits_split_indices(test_size, stratify: bool, seed: int, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The train and test indices of one split: from the cache file, else made by scikit-learn and cached."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        sklearn_version = version("scikit-learn")
    except PackageNotFoundError:
        sklearn_version = "none"
    name = f"split_{test_size!r}_{'stratified' if stratify else 'shuffled'}_seed{seed}_sklearn-{sklearn_version}.npz"
    path = DATA_DIR / "digits" / name
    cached = _read_npz(path, ("train", "test"))
    if cached is not None and all(a.ndim == 1 and a.dtype == np.int64 for a in cached) and \
            np.array_equal(np.sort(np.concatenate(cached)), np.arange(len(y))):
        return cached
    from sklearn.model_selection import train_test_split

    tr, te = train_test_split(np.arange(len(y), dtype=np.int64), test_size=test_size,
                              stratify=y if stratify else None, random_state=seed)
    _save_atomic(path, train=tr, test=te)
    return tr, te


def _read_npz(path: pathlib.Path, names) -> tuple[np.ndarray, ...] | None:
    """The named arrays of an .npz file, or None when it is missing or unreadable."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return tuple(z[n] for n in names)
    except _UNREADABLE:
        return None


def digits(split: str = "seen", *, seed: int = 0) -> Split:
    """scikit-learn digits: ``"seen"`` (stratified 50/50, all classes) or ``"zero_shot"`` (0-4 / 5-9)."""
    if split == "seen":
        x_tr, x_te, y_tr, y_te = digits_split(0.5, stratify=True, seed=seed)
        return _split("digits", x_tr / 16.0, y_tr, x_te / 16.0, y_te,
                      "digits, seen classes: stratified 50/50 image split")
    if split == "zero_shot":
        x, y = _digits_arrays()
        x = x / 16.0
        tr = y < 5
        return _split("digits_zero_shot", x[tr], y[tr], x[~tr], y[~tr],
                      "digits, unseen classes: train on 0-4, test on 5-9")
    raise ValueError(f"digits split must be 'seen' or 'zero_shot'; got {split!r}")


def digits_novel(n_base: int = 8, *, seed: int = 0) -> Split:
    """Digits for novel-class lessons: :func:`digits` ("seen", stratified 50/50), with training
    images of the first ``n_base`` digits only; the test split keeps all ten digits (the others are
    the *novel* classes, never seen in training)."""
    if isinstance(n_base, bool) or not isinstance(n_base, int) or not 1 <= n_base <= 9:
        raise ValueError(f"n_base must be an integer in [1, 9] (digits 0..n_base-1 are trained on); got {n_base!r}")
    d = digits("seen", seed=seed)
    keep = d.y_train < n_base
    return Split(f"digits_{n_base}+{10 - n_base}", d.x_train[keep], d.y_train[keep], d.x_test, d.y_test,
                 f"digits: train on 0-{n_base - 1} ({int(keep.sum())} images), "
                 f"test on all ten digits ({len(d.y_test)} images); {n_base}-9 are novel")


# What np.load raises on a file that is empty, truncated, corrupt or not an .npz of plain arrays.
_UNREADABLE = (OSError, EOFError, ValueError, KeyError, TypeError, zipfile.BadZipFile, zlib.error)


def _mnist1d_arrays() -> tuple[np.ndarray, np.ndarray]:
    """All 5000 MNIST-1D signals and labels (default arguments), generated once and cached in
    ``DATA_DIR/mnist1d.npz``.

    The cache is written atomically (a temporary file in the same folder, then a rename), so that
    a process killed mid-write or a reader racing a writer never sees part of a file.  A cache
    that cannot be read or does not hold the expected arrays (shapes, dtypes, finite signals,
    labels 0-9) is generated again and replaced; where the folder is not writable, the generated
    arrays are returned all the same."""
    path = DATA_DIR / "mnist1d.npz"
    cached = _read_mnist1d(path)
    if cached is not None:
        return cached
    x, y = _make_mnist1d()
    _save_atomic(path, x=x, y=y)
    return x, y


def _read_mnist1d(path: pathlib.Path) -> tuple[np.ndarray, np.ndarray] | None:
    """The cached ``(x, y)``, or None when ``path`` is missing or not a valid MNIST-1D cache."""
    arrays = _read_npz(path, ("x", "y"))
    if arrays is None:
        return None
    x, y = arrays
    if x.shape != (5000, 40) or x.dtype != np.float32 or y.shape != (5000,) or y.dtype != np.int64:
        return None
    if not (np.isfinite(x).all() and ((0 <= y) & (y <= 9)).all()):
        return None
    return x, y


def _make_mnist1d() -> tuple[np.ndarray, np.ndarray]:
    """MNIST-1D generated offline (the same arrays every time), train and test pooled: 4000 + 1000."""
    from mnist1d.data import get_dataset_args, make_dataset

    # make_dataset reseeds numpy's and Python's global generators: keep the caller's state intact.
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        d = make_dataset(get_dataset_args())
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    x = np.concatenate([d["x"], d["x_test"]]).astype(np.float32)
    y = np.concatenate([d["y"], d["y_test"]]).astype(np.int64)
    return x, y


def _save_atomic(path: pathlib.Path, **arrays: np.ndarray) -> None:
    """Save ``arrays`` as the .npz ``path`` through a temporary file beside it and ``os.replace``,
    so that readers see the old file or the whole new one.  Where the folder is not writable
    nothing is saved and no temporary file is left (a read-only checkout regenerates next time)."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")  # unique per writer
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "xb") as f:
            np.savez_compressed(f, **arrays)
            f.flush()
            os.fsync(f.fileno())   # the bytes are on disk before the name points at them
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()


def mnist1d(split: str = "unseen") -> Split:
    """MNIST-1D: ``"unseen"`` (pooled, train on classes 0-4, test on 5-9) or ``"seen"`` (4000/1000)."""
    x, y = _mnist1d_arrays()
    if split == "unseen":
        tr = y < 5
        return _split("mnist1d_unseen", x[tr], y[tr], x[~tr], y[~tr],
                      "MNIST-1D, unseen classes: train on 0-4, test on 5-9 (2500 signals each)")
    if split == "seen":
        return _split("mnist1d", x[:4000], y[:4000], x[4000:], y[4000:], "MNIST-1D, its own 4000/1000 split")
    raise ValueError(f"mnist1d split must be 'unseen' or 'seen'; got {split!r}")


def make_ids(n_ids: int = 400, n_per_id: int = 12, *, latent: int = 24, dim: int = 32,
             seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic "identities" for face-recognition lessons: many classes, few samples each.

    Class centres ``mu_k ~ N(0, I_latent)``; a sample is ``tanh((mu_k + 0.7 eps) A) + 0.05 eps'``
    with one fixed random map ``A ~ N(0, 1/latent)`` (latent x dim), all drawn from ``seed``.
    Returns ``x`` (n_ids * n_per_id x dim, float32) and ``y`` (int64), grouped by identity.
    """
    for arg, value in (("n_ids", n_ids), ("n_per_id", n_per_id), ("latent", latent), ("dim", dim)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{arg} must be an integer >= 1; got {value!r}")
    rng = np.random.default_rng(seed)
    A = rng.normal(0.0, latent ** -0.5, size=(latent, dim))
    mu = rng.normal(size=(n_ids, latent))
    y = np.repeat(np.arange(n_ids), n_per_id)
    x = np.tanh((mu[y] + 0.7 * rng.normal(size=(len(y), latent))) @ A) + 0.05 * rng.normal(size=(len(y), dim))
    return x.astype(np.float32), y.astype(np.int64)


def identities(n_ids: int = 400, n_per_id: int = 12, *, n_train: int = 300, seed: int = 0) -> Split:
    """:func:`make_ids` split by identity: train on the first ``n_train`` identities, verify on the
    rest (unseen people, as in face verification)."""
    if isinstance(n_train, bool) or not isinstance(n_train, int) or not 1 <= n_train < n_ids:
        raise ValueError(f"n_train must be an integer in [1, {n_ids - 1}]; got {n_train!r}")
    x, y = make_ids(n_ids, n_per_id, seed=seed)
    tr = y < n_train
    return _split("ids", x[tr], y[tr], x[~tr], y[~tr],
                  f"synthetic identities: train on {n_train}, verify on {n_ids - n_train} unseen ({n_per_id} samples each)")


#: Dataset names accepted by :func:`load` (and the training harness).
DATASETS = {
    "digits": lambda: digits("seen"),
    "digits_zero_shot": lambda: digits("zero_shot"),
    "mnist1d_unseen": lambda: mnist1d("unseen"),
    "mnist1d": lambda: mnist1d("seen"),
    "ids": lambda: identities(),
    "digits_8+2": lambda: digits_novel(8),
    "digits_5+5": lambda: digits_novel(5),
}


def load(name: str) -> Split:
    """A dataset split by name: one of :data:`DATASETS`."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(DATASETS)}")
    return DATASETS[name]()


class PKSampler:
    """Batches of ``p`` classes x ``k`` samples per class (Hermans et al. 2017).

    Pair losses need positives: a batch drawn uniformly at random often holds a class only once,
    and then that anchor has nothing to pull towards.  Classes are drawn without replacement;
    samples without replacement too, unless a class has fewer than ``k`` samples.
    """

    def __init__(self, labels, p: int, k: int, *, seed: int = 0):
        labels = np.asarray(labels)
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError("labels must be a 1-D array of integer class ids")
        self.classes = np.unique(labels)
        if isinstance(p, bool) or not isinstance(p, int) or not 1 <= p <= len(self.classes):
            raise ValueError(f"p must be an integer in [1, {len(self.classes)}] (the number of classes); got {p!r}")
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be an integer >= 1; got {k!r}")
        self.p, self.k = p, k
        self.by_class = {c: np.flatnonzero(labels == c) for c in self.classes}
        self.rng = np.random.default_rng(seed)

    def sample(self) -> torch.Tensor:
        """One batch of ``p * k`` indices, grouped by class."""
        chosen = self.rng.choice(self.classes, size=self.p, replace=False)
        idx = [self.rng.choice(self.by_class[c], size=self.k, replace=len(self.by_class[c]) < self.k)
               for c in chosen]
        return torch.as_tensor(np.concatenate(idx), dtype=torch.long)

    def __iter__(self):
        while True:
            yield self.sample()


# --- noisy labels (the classification notebooks of Part IV) ------------------------------------

def flip_labels(labels, rate: float, n_classes: int, *, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric label noise: each label is flipped with probability ``rate`` to a class drawn
    uniformly from the *other* ``n_classes - 1`` (never to itself, which would understate the rate
    by ``1/C``).  Returns ``(noisy_labels, flipped)``.

    Seeded and nested: one uniform number and one other class per sample are drawn from ``seed``,
    and sample ``i`` is flipped when its number is below ``rate``; so with the same seed a higher
    rate flips the same samples and more, to the same classes (a slider moves smoothly)."""
    y = torch.as_tensor(labels)
    if y.dtype == torch.bool or y.is_floating_point() or y.is_complex() or y.ndim != 1:
        raise ValueError(f"labels must be a 1-D tensor of integer class ids; got dtype {y.dtype}, shape {tuple(y.shape)}")
    rate = checks.fraction(rate, "rate (the share of labels to flip)")
    n_classes = checks.integer(n_classes, "n_classes", 2)
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= n_classes):
        raise ValueError(f"labels must be class ids in [0, {n_classes - 1}]; got {int(y.min())} to {int(y.max())}")
    g = torch.Generator().manual_seed(checks.integer(seed, "seed"))
    u = torch.rand(len(y), generator=g)
    shift = torch.randint(1, n_classes, (len(y),), generator=g)          # 1 .. C-1: never the same class
    flipped = u < rate
    noisy = torch.where(flipped, (y.long() + shift) % n_classes, y.long())
    return noisy, flipped


@dataclass(frozen=True)
class NoisyDigits:
    """Digits with a noisy training split: ``y_train`` is what the loss sees, ``y_clean`` the truth,
    ``flipped = y_train != y_clean``; the test split is clean."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    y_clean: torch.Tensor
    flipped: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def noisy_digits(noise: float = 0.4, *, seed: int = 0) -> NoisyDigits:
    """scikit-learn's digits, stratified 67/33 split (``random_state=seed``: 1203 train, 594 test),
    standardised with the training split's mean and standard deviation, and :func:`flip_labels` at
    rate ``noise`` on the training labels (seeded by ``seed``)."""
    x_tr, x_te, y_tr, y_te = digits_split(0.33, stratify=True, seed=seed)
    mean, std = x_tr.mean(0), x_tr.std(0)
    std[std == 0] = 1.0                                                    # constant border pixels
    f = lambda a: torch.as_tensor((a - mean) / std, dtype=torch.float32)   # noqa: E731
    y_clean = torch.as_tensor(y_tr, dtype=torch.long)
    noisy, flipped = flip_labels(y_clean, noise, 10, seed=seed)
    return NoisyDigits(f(x_tr), noisy, y_clean, flipped, f(x_te), torch.as_tensor(y_te, dtype=torch.long))
