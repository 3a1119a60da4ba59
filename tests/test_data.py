"""Offline datasets and the P x K sampler."""

import random

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
