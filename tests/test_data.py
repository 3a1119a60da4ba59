"""Offline datasets and the P x K sampler."""

import hashlib
import os
import random
import subprocess
import sys

import numpy as np
import pytest
import torch

from lossviz import data


def test_digits_seen_split_is_stratified_and_complete():
    s = data.digits("seen")
    assert len(s.x_train) + len(s.x_test) == 1797
    assert abs(len(s.x_train) - len(s.x_test)) <= 1
    assert set(s.y_train.tolist()) == set(s.y_test.tolist()) == set(range(10))
    assert s.x_train.dtype == torch.float32 and s.y_train.dtype == torch.int64
    assert 0.0 <= float(s.x_train.min()) and float(s.x_train.max()) <= 1.0


def test_digits_zero_shot_split_separates_classes():
    s = data.digits("zero_shot")
    assert set(s.y_train.tolist()) == set(range(5)) and set(s.y_test.tolist()) == set(range(5, 10))


def _sklearn_split(test_size, stratify, seed):
    """The split as scikit-learn makes it, straight from its functions (no cache)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    return train_test_split(d.data, d.target, test_size=test_size, stratify=d.target if stratify else None,
                            random_state=seed)


@pytest.fixture
def fresh_digits_cache(tmp_path, monkeypatch):
    """An empty cache folder and no digits kept in memory."""
    monkeypatch.setattr(data, "DATA_DIR", tmp_path)
    monkeypatch.setattr(data, "_DIGITS", [])
    monkeypatch.setattr(data, "_DIGITS_SPLITS", {})
    return tmp_path


@pytest.mark.parametrize("test_size, stratify, seed", [(0.5, True, 0), (0.5, True, 3), (0.33, True, 1),
                                                       (0.33, False, 2), (597, True, 0)])
def test_digits_split_equals_scikit_learns_fresh_and_from_the_cache(fresh_digits_cache, test_size, stratify, seed):
    want = _sklearn_split(test_size, stratify, seed)
    first = data.digits_split(test_size, stratify=stratify, seed=seed)          # made, and cached on disk
    data._DIGITS.clear()
    data._DIGITS_SPLITS.clear()
    again = data.digits_split(test_size, stratify=stratify, seed=seed)          # read from the disk cache
    assert (fresh_digits_cache / "digits" / "digits.npz").exists()
    for got in (first, again):
        for a, b in zip(got, want):
            assert a.dtype == (np.float64 if a.ndim == 2 else np.int64)
            np.testing.assert_array_equal(a, b)


def test_digits_split_returns_fresh_arrays(fresh_digits_cache):
    x_tr, *_ = data.digits_split(0.5, seed=0)
    x_tr[:] = -1.0
    assert data.digits_split(0.5, seed=0)[0].min() == 0.0
    assert data.digits("seen").x_train.min() == 0.0


def test_a_new_process_reads_the_digits_cache_without_importing_scikit_learn(fresh_digits_cache):
    data.digits("seen")                                                           # builds the cache
    code = ("import sys; from lossviz import data; s = data.digits('seen'); z = data.digits('zero_shot'); "
            "print(len(s.x_train), len(z.x_train), 'sklearn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "LOSSVIZ_DATA": str(fresh_digits_cache)},
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == ["898", "901", "False"]


@pytest.mark.parametrize("damage", ["garbage", "wrong_shape", "overlapping_indices"])
def test_a_damaged_digits_cache_is_made_again(fresh_digits_cache, damage):
    want = _sklearn_split(0.5, True, 0)
    data.digits_split(0.5, seed=0)
    folder = fresh_digits_cache / "digits"
    split_file = next(folder.glob("split_*.npz"))
    if damage == "garbage":
        (folder / "digits.npz").write_bytes(b"not a zip file")
    elif damage == "wrong_shape":
        np.savez(folder / "digits.npz", x=np.zeros((10, 64)), y=np.zeros(10, dtype=np.int64))
    else:
        np.savez(split_file, train=np.arange(900, dtype=np.int64), test=np.arange(897, dtype=np.int64))
    data._DIGITS.clear()
    data._DIGITS_SPLITS.clear()
    for a, b in zip(data.digits_split(0.5, seed=0), want):
        np.testing.assert_array_equal(a, b)


def test_digits_split_rejects_a_non_integer_seed():
    with pytest.raises(ValueError, match="seed must be an integer"):
        data.digits_split(0.5, seed=0.5)


def test_mnist1d_is_generated_offline_cached_and_leaves_global_rngs_alone(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "DATA_DIR", tmp_path)
    np.random.seed(123)
    random.seed(123)
    np_state, py_state = np.random.get_state()[1].copy(), random.getstate()
    s = data.mnist1d("unseen")
    assert (tmp_path / "mnist1d.npz").exists()
    assert np.array_equal(np.random.get_state()[1], np_state) and random.getstate() == py_state
    assert s.x_train.shape == (2500, 40) and s.x_test.shape == (2500, 40)
    assert set(s.y_train.tolist()) == set(range(5)) and set(s.y_test.tolist()) == set(range(5, 10))
    again = data.mnist1d("unseen")  # from the cache
    assert torch.equal(again.x_test, s.x_test)


def test_load_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown dataset"):
        data.load("imagenet")
    with pytest.raises(ValueError, match="split"):
        data.digits("train")


def test_pk_sampler_gives_p_classes_times_k_samples():
    labels = np.repeat(np.arange(10), 20)
    sampler = data.PKSampler(labels, p=4, k=5, seed=0)
    for _ in range(20):
        idx = sampler.sample().numpy()
        classes, counts = np.unique(labels[idx], return_counts=True)
        assert len(idx) == 20 and len(classes) == 4 and (counts == 5).all()
        assert len(set(idx.tolist())) == 20  # without replacement
    a = [data.PKSampler(labels, 4, 5, seed=1).sample() for _ in range(2)]
    assert torch.equal(a[0], a[1])


def test_pk_sampler_small_class_is_sampled_with_replacement():
    labels = np.array([0, 0, 0, 1, 1, 1, 1, 1, 2])
    idx = data.PKSampler(labels, p=3, k=4, seed=0).sample().numpy()
    assert (np.unique(labels[idx], return_counts=True)[1] == 4).all()


@pytest.mark.parametrize("kwargs", [dict(p=0, k=2), dict(p=11, k=2), dict(p=2, k=0), dict(p=2.5, k=2)])
def test_pk_sampler_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        data.PKSampler(np.repeat(np.arange(10), 3), **kwargs)
    with pytest.raises(ValueError, match="integer"):
        data.PKSampler(np.linspace(0, 1, 10), p=2, k=2)


def test_the_data_folder_is_the_env_var_else_the_checkout_else_a_user_cache(tmp_path, monkeypatch):
    import pathlib

    monkeypatch.setenv("LOSSVIZ_DATA", str(tmp_path / "mine"))
    assert data.data_dir() == tmp_path / "mine"
    monkeypatch.delenv("LOSSVIZ_DATA")
    root = pathlib.Path(data.__file__).resolve().parents[1]
    assert data.data_dir() == root / "data"                           # this checkout
    assert (root / "data" / "README.md").is_file()                    # which says what goes there
    installed = tmp_path / "site-packages" / "lossviz"                # a wheel: no pyproject.toml beside it
    installed.mkdir(parents=True)
    (installed / "__init__.py").write_text("")
    monkeypatch.setattr(data, "__file__", str(installed / "data.py"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert data.data_dir() == tmp_path / "cache" / "lossviz"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert data.data_dir() == pathlib.Path.home() / ".cache" / "lossviz"


# --- the MNIST-1D cache: atomic writes, validated reads (issue 13, item 4) -----------------------

# Run in child processes with $LOSSVIZ_DATA set.  The writer is slowed or killed through
# np.savez_compressed, which the cache writes with (to a path or to an open file).
_CHILD_PRELUDE = """
import hashlib, io, os, pathlib, sys, time
import numpy as np
from lossviz import data

marks = pathlib.Path(sys.argv[1])
real_savez = np.savez_compressed

def wait_for(*names):
    deadline = time.monotonic() + 120
    while not all((marks / n).exists() for n in names):
        assert time.monotonic() < deadline, f"timed out waiting for {names}"
        time.sleep(0.02)

def write_half_then(after_half):
    def savez(file, **arrays):
        buf = io.BytesIO()
        real_savez(buf, **arrays)
        blob = buf.getvalue()
        f = open(file, "wb") if isinstance(file, (str, os.PathLike)) else file
        f.write(blob[: len(blob) // 2])
        f.flush()
        after_half()
        f.write(blob[len(blob) // 2:])
        f.flush()
        if f is not file:
            f.close()
    np.savez_compressed = savez

def report(x, y):
    print(hashlib.sha256(x.tobytes() + y.tobytes()).hexdigest())
"""

_KILLED_MID_WRITE = _CHILD_PRELUDE + """
write_half_then(lambda: os._exit(9))     # dies like a kill: no finally, no cleanup
data._mnist1d_arrays()
"""

_SLOW_BUILDER = _CHILD_PRELUDE + """
def hold():
    (marks / "writing").touch()
    wait_for("reader0", "reader1", "reader2")
    time.sleep(0.5)                          # the readers look while half the file is written
write_half_then(hold)
report(*data._mnist1d_arrays())
"""

_READER = _CHILD_PRELUDE + """
wait_for("writing")
(marks / f"reader{sys.argv[2]}").touch()
report(*data._mnist1d_arrays())
"""


def _child(script, cache, marks, *args):
    env = dict(os.environ, LOSSVIZ_DATA=str(cache), OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-c", script, str(marks), *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _digest(x, y):
    return hashlib.sha256(x.tobytes() + y.tobytes()).hexdigest()


@pytest.fixture(scope="module")
def mnist1d_real():
    """The real MNIST-1D arrays, made here by the mnist1d package itself (not through the cache)."""
    from mnist1d.data import get_dataset_args, make_dataset

    np_state, py_state = np.random.get_state(), random.getstate()
    d = make_dataset(get_dataset_args())
    np.random.set_state(np_state)
    random.setstate(py_state)
    return (np.concatenate([d["x"], d["x_test"]]).astype(np.float32),
            np.concatenate([d["y"], d["y_test"]]).astype(np.int64))


def _assert_real_mnist1d(x, y, real):
    assert x.shape == (5000, 40) and x.dtype == np.float32 and y.shape == (5000,) and y.dtype == np.int64
    assert np.array_equal(x, real[0]) and np.array_equal(y, real[1])


def test_a_cache_build_killed_mid_write_leaves_no_partial_cache(tmp_path, monkeypatch, mnist1d_real):
    cache = tmp_path / "cache"
    child = _child(_KILLED_MID_WRITE, cache, tmp_path)
    try:
        _, err = child.communicate(timeout=180)
    finally:
        child.kill()
    assert child.returncode == 9, err
    partial = [p for p in cache.iterdir() if p.stat().st_size > 0]
    assert len(partial) == 1 and partial[0].name != "mnist1d.npz"     # killed mid-write, beside the cache
    assert not (cache / "mnist1d.npz").exists()
    monkeypatch.setattr(data, "DATA_DIR", cache)
    x, y = data._mnist1d_arrays()                                      # the next call builds it again
    _assert_real_mnist1d(x, y, mnist1d_real)
    with np.load(cache / "mnist1d.npz") as z:                          # ... and caches it whole
        _assert_real_mnist1d(z["x"], z["y"], mnist1d_real)


def test_readers_racing_a_builder_on_an_empty_cache_all_get_the_same_data(tmp_path, mnist1d_real):
    cache = tmp_path / "cache"
    procs = [_child(_SLOW_BUILDER, cache, tmp_path)]
    procs += [_child(_READER, cache, tmp_path, i) for i in range(3)]
    digests = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err
            digests.append(out.strip())
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    with np.load(cache / "mnist1d.npz") as z:                          # the cache left behind is whole
        _assert_real_mnist1d(z["x"], z["y"], mnist1d_real)
    assert digests == [_digest(*mnist1d_real)] * 4
    assert [p.name for p in cache.iterdir()] == ["mnist1d.npz"]        # no temporary file left


def _bad_cache(kind, path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(5000, 40)).astype(np.float32), np.repeat(np.arange(10), 500)
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "wrong shape":
        np.savez_compressed(path, x=x[:, :20], y=y)
    elif kind == "nan":
        x[123, 7] = np.nan
        np.savez_compressed(path, x=x, y=y)
    elif kind == "labels out of range":
        np.savez_compressed(path, x=x, y=y * 2)
    elif kind == "no y":
        np.savez_compressed(path, x=x)


@pytest.mark.parametrize("kind", ["empty", "wrong shape", "nan", "labels out of range", "no y"])
def test_an_invalid_cache_is_generated_again_not_returned(tmp_path, monkeypatch, kind, mnist1d_real):
    monkeypatch.setattr(data, "DATA_DIR", tmp_path)
    path = tmp_path / "mnist1d.npz"
    _bad_cache(kind, path)
    x, y = data._mnist1d_arrays()
    _assert_real_mnist1d(x, y, mnist1d_real)
    with np.load(path) as z:                                           # rewritten with the real data
        _assert_real_mnist1d(z["x"], z["y"], mnist1d_real)


def test_an_invalid_cache_in_a_read_only_folder_still_gives_the_real_data(tmp_path, monkeypatch, mnist1d_real):
    monkeypatch.setattr(data, "DATA_DIR", tmp_path)
    path = tmp_path / "mnist1d.npz"
    _bad_cache("nan", path)
    before = path.read_bytes()

    def refuse(src, dst):
        raise PermissionError(13, "read-only", str(dst))

    monkeypatch.setattr(os, "replace", refuse)
    x, y = data._mnist1d_arrays()
    _assert_real_mnist1d(x, y, mnist1d_real)
    assert path.read_bytes() == before                                 # untouched ...
    assert [p.name for p in tmp_path.iterdir()] == ["mnist1d.npz"]     # ... and no temporary file left
