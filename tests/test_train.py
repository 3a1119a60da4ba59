"""The seeded training harness: history, cache, determinism, the MS switch-off."""

import functools

import numpy as np
import pytest
import torch

import lossviz as lv
from lossviz import train as T

SHORT = dict(data="digits", dim=2, iters=30, eval_every=10, progress=False)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def test_run_records_history_and_evaluations():
    run = T.train("ms", **SHORT)
    assert run.history["iter"].tolist() == list(range(1, 31))
    assert run.evals["iter"].tolist() == [0, 10, 20, 30]
    for key in ("loss", "active_pos", "active_neg", "active_anchors"):
        assert run.history[key].shape == (30,) and np.isfinite(run.history[key]).all()
    assert ((0 <= run.history["active_neg"]) & (run.history["active_neg"] <= 1)).all()
    assert run.emb_before.shape == run.emb_after.shape == (len(run.y_test), 2)
    assert np.allclose(np.linalg.norm(run.emb_after, axis=1), 1, atol=1e-5)
    assert 0 < run.recall_at_1 <= 1 and 0 < run.map_at_r <= 1


def test_training_improves_retrieval_on_digits():
    run = T.train("ms", data="digits", dim=16, iters=150, eval_every=150, progress=False)
    assert run.evals["map_at_r"][-1] > run.evals["map_at_r"][0] + 0.2


def test_runs_are_cached_by_parameters_and_deterministic():
    a = T.train("ms", **SHORT)
    assert T.train("ms", **SHORT) is a
    b = T.train("ms", beta=10.0, **SHORT)
    assert b is not a and b.params["knob_beta"] == 10.0
    T.clear_cache()
    c = T.train("ms", **SHORT)
    assert c is not a
    assert np.array_equal(a.history["loss"], c.history["loss"])
    assert np.array_equal(a.emb_after, c.emb_after)


def test_ms_loss_is_zero_exactly_when_nothing_is_mined():
    run = T.train("ms", data="digits", dim=16, iters=200, eval_every=200, progress=False)
    h = run.history
    nothing = (h["active_pos"] == 0) & (h["active_neg"] == 0)
    assert np.array_equal(h["loss"] == 0, nothing)
    assert h["active_neg"][-20:].mean() < h["active_neg"][:5].mean()


def test_any_loss_function_can_be_trained():
    def squared(S, labels):
        pos, neg = lv.pair_masks(labels)
        return (torch.where(neg, S.clamp(min=0) ** 2, 0.0).sum(1) - torch.where(pos, S, 0.0).sum(1)).mean()

    run = T.train(squared, **SHORT)
    assert run.params["loss"].endswith("squared") and np.isfinite(run.history["loss"]).all()


def test_a_loss_function_is_cached_as_itself_not_by_its_name():
    # Two lambdas of one scope share a __qualname__, as do two closures of one factory.
    soft = lambda S, labels: lv.ms_loss(S, labels, beta=2.0)           # noqa: E731
    hard = lambda S, labels: lv.ms_loss(S, labels, beta=50.0)          # noqa: E731
    assert soft.__qualname__ == hard.__qualname__
    a, b = T.train(soft, **SHORT), T.train(hard, **SHORT)
    assert b is not a and not np.array_equal(a.history["loss"], b.history["loss"])
    np.testing.assert_array_equal(b.history["loss"], T.train("ms", beta=50.0, **SHORT).history["loss"])

    def scaled(c):
        def loss(S, labels):
            return c * lv.ms_loss(S, labels)
        return loss

    one, three = T.train(scaled(1.0), **SHORT), T.train(scaled(3.0), **SHORT)
    assert three is not one
    np.testing.assert_allclose(three.history["loss"][0], 3 * one.history["loss"][0], rtol=1e-6)
    assert T.train(soft, **SHORT) is a                                  # the same function still hits the cache
    assert T.train("ms", **SHORT) is T.train("ms", **SHORT)             # and so does a named loss


def test_a_partial_trains_and_is_named_with_its_arguments():
    run = T.train(functools.partial(lv.ms_loss, beta=10.0), **SHORT)
    assert run.params["loss"] == "lossviz.pairs.ms_loss(beta=10.0)"
    np.testing.assert_array_equal(run.history["loss"], T.train("ms", beta=10.0, **SHORT).history["loss"])


def test_an_unhashable_callable_is_trained_each_time_not_cached():
    class Scaled:
        __hash__ = None                 # unhashable, as a dataclass with eq=True is

        def __call__(self, S, labels):
            return lv.ms_loss(S, labels)

    a = T.train(Scaled(), **SHORT)
    assert a.params["loss"].endswith("Scaled") and T.train(Scaled(), **SHORT) is not a
    np.testing.assert_array_equal(a.history["loss"], T.train("ms", **SHORT).history["loss"])


@pytest.mark.parametrize("kwargs, match", [
    (dict(loss="nope"), "unknown loss"), (dict(iters=0), "iters"), (dict(dim=1.5), "dim"),
    (dict(lr=0.0), "lr"), (dict(data="nope"), "unknown dataset"),
])
def test_bad_arguments_raise_clear_errors(kwargs, match):
    args = SHORT | kwargs
    with pytest.raises(ValueError, match=match):
        T.train(args.pop("loss", "ms"), **args)


def test_a_diverging_run_stops_with_a_clear_error():
    def exploding(S, labels):
        return (S * float("inf")).sum()

    with pytest.raises(ValueError, match="lower lr"):
        T.train(exploding, **SHORT)


def test_baselines_report_raw_and_pca():
    b = T.baselines("digits", dims=(2,))
    assert set(b) == {"raw", "pca2"}
    assert b["raw"][0] > 0.9 > b["pca2"][0]


def test_setup_reads_the_fast_switch(monkeypatch):
    monkeypatch.setenv("LOSSVIZ_FAST", "1")
    assert T.setup(seed=0) is True
    monkeypatch.setenv("LOSSVIZ_FAST", "0")
    assert T.setup(seed=0) is False
    assert torch.get_num_threads() == 1


def test_loop_collects_what_each_step_returns_and_reports_progress():
    seen = []
    hist = T.loop(lambda it: {"loss": 1.0 / it, **({"acc": it / 10} if it % 5 == 0 else {})}, 10,
                  progress=lambda it, total: seen.append((it, total)))
    assert list(hist["iter"]) == list(range(1, 11)) and hist["loss"][-1] == pytest.approx(0.1)
    assert list(hist["acc_iter"]) == [5, 10] and list(hist["acc"]) == [0.5, 1.0]
    assert seen == [(10, 10)]


def test_loop_stops_on_a_non_finite_loss_and_rejects_bad_iters():
    with pytest.raises(ValueError, match="iteration 3"):
        T.loop(lambda it: {"loss": float("nan") if it == 3 else 1.0}, 5, progress=False)
    with pytest.raises(ValueError, match="iters"):
        T.loop(lambda it: {}, 0, progress=False)


def test_memo_computes_once_per_parameters():
    T.clear_cache()
    calls = []
    f = lambda: calls.append(1) or len(calls)  # noqa: E731
    assert T.memo("m", {"a": 1}, f) == 1 and T.memo("m", {"a": 1}, f) == 1 and T.memo("m", {"a": 2}, f) == 2
    assert T.memo("m", {"a": 1}, f, cache=False) == 3


def test_trainer_is_seeded_evaluates_on_its_schedule_and_leaves_eval_mode():
    from lossviz.models import encoder_projector

    x = torch.randn(40, 8, generator=torch.Generator().manual_seed(0))

    def one_run(seed):
        trainer = T.Trainer(lambda: (encoder_projector(8, hidden=16, dim=4), torch.nn.Parameter(torch.zeros(()))),
                            lr=1e-2, seed=seed)
        net, shift = trainer.model
        modes = []

        def step(it):
            loss = lv.nt_xent_loss(lv.similarity(net(x)), torch.arange(20).repeat(2)) + shift ** 2
            trainer.update(loss)
            modes.append(net.training)
            return {"loss": loss}

        def evaluate():
            modes.append(net.training)
            return {"norm": float(net(x).norm()), "grad_on": torch.is_grad_enabled()}

        history, evals, seconds = trainer.run(step, 7, evaluate=evaluate, eval_every=3, progress=False)
        return history, evals, seconds, modes, trainer

    h1, e1, s1, modes, trainer = one_run(0)
    assert list(e1["iter"]) == [0, 3, 6, 7] and not e1["grad_on"].any() and s1 > 0
    assert modes.count(False) == 4 and modes[-1] is False and trainer.model[0].training   # eval mode only to evaluate
    assert len(trainer.optimizer.param_groups[0]["params"]) == len(list(trainer.model[0].parameters())) + 1
    h2, e2, *_ = one_run(0)
    assert np.array_equal(h1["loss"], h2["loss"]) and np.array_equal(e1["norm"], e2["norm"])
    assert not np.array_equal(h1["loss"], one_run(1)[0]["loss"])
    frozen = T.Trainer(lambda: torch.nn.Linear(2, 2), lr=1e-3, seed=0, parameters=lambda m: [m.weight])
    assert len(frozen.optimizer.param_groups[0]["params"]) == 1
    with pytest.raises(ValueError, match="lr must be > 0"):
        T.Trainer(lambda: torch.nn.Linear(2, 2), lr=0, seed=0)


def test_run_final_reads_scores_then_evals_then_history():
    run = T.Run(params={}, history={"loss": np.array([2.0, 1.0])}, evals={"acc": np.array([0.1, 0.8])},
                scores={"nmi": 0.5})
    assert (run.final("nmi"), run.final("acc"), run.final("loss")) == (0.5, 0.8, 1.0)


def test_runs_are_kept_on_disk_keyed_by_parameters_and_code(tmp_path, monkeypatch, one_thread):
    monkeypatch.setenv("LOSSVIZ_DATA", str(tmp_path))
    monkeypatch.setenv("LOSSVIZ_RUN_CACHE", "1")
    calls = []

    def compute():
        calls.append(1)
        return {"loss": np.arange(3.0)}

    first = T.memo(("disk_test", T.loop), {"lr": 0.1, "seed": 0}, compute)
    files = list(T.run_cache_dir().glob("*.pkl"))
    assert len(files) == 1 and T.run_cache_dir().is_relative_to(tmp_path)
    T.clear_cache()  # a new kernel: memory is empty, the disk is not
    again = T.memo(("disk_test", T.loop), {"lr": 0.1, "seed": 0}, compute)
    assert calls == [1] and np.array_equal(again["loss"], first["loss"])
    T.memo(("disk_test", T.loop), {"lr": 0.2, "seed": 0}, compute)  # other parameters: trained
    assert calls == [1, 1] and len(list(T.run_cache_dir().glob("*.pkl"))) == 2
    T.clear_cache()
    monkeypatch.setattr(T, "code_version", lambda: "other code")
    T.memo(("disk_test", T.loop), {"lr": 0.1, "seed": 0}, compute)  # other code: trained again
    assert calls == [1, 1, 1]


def test_the_disk_cache_skips_what_has_no_stable_name(tmp_path, monkeypatch, one_thread):
    monkeypatch.setenv("LOSSVIZ_DATA", str(tmp_path))
    monkeypatch.setenv("LOSSVIZ_RUN_CACHE", "1")
    T.memo(("mine", lambda: 0), {"lr": 0.1}, lambda: 1)        # a function of the caller's: memory only
    T.memo("tensor_param", {"x": torch.zeros(2)}, lambda: 2)    # printed by address: memory only
    T.memo("unpicklable", {"lr": 0.1}, lambda: (lambda: 3))    # cannot be pickled: memory only
    assert not list(tmp_path.rglob("*.pkl")) and not list(tmp_path.rglob("*.tmp"))
    (T.run_cache_dir()).mkdir(parents=True, exist_ok=True)
    T.clear_cache()
    monkeypatch.setenv("LOSSVIZ_RUN_CACHE", "0")
    T.memo("off", {"lr": 0.1}, lambda: 4)
    assert not list(tmp_path.rglob("*.pkl"))


def test_a_damaged_cache_file_is_a_miss(tmp_path, monkeypatch, one_thread):
    monkeypatch.setenv("LOSSVIZ_DATA", str(tmp_path))
    monkeypatch.setenv("LOSSVIZ_RUN_CACHE", "1")
    T.memo("damaged", {"lr": 0.1}, lambda: 5)
    (path,) = T.run_cache_dir().glob("*.pkl")
    path.write_bytes(b"not a pickle")
    T.clear_cache()
    assert T.memo("damaged", {"lr": 0.1}, lambda: 6) == 6


def test_the_disk_cache_is_off_in_scripts_and_on_in_kernels(monkeypatch):
    monkeypatch.delenv("LOSSVIZ_RUN_CACHE", raising=False)
    assert not T.disk_cache_enabled()  # pytest is not a Jupyter kernel
    monkeypatch.setenv("LOSSVIZ_RUN_CACHE", "1")
    assert T.disk_cache_enabled()


def test_no_progress_bar_in_voila(monkeypatch):
    monkeypatch.setenv("VOILA_KERNEL_ID", "x")
    assert T._progress(10, "run", True) is None
    monkeypatch.delenv("VOILA_KERNEL_ID")
    bar = T._progress(10, "run", True)
    assert bar is not None
    bar.close()


def test_seeded_epochs_give_each_member_its_own_shuffles():
    """Member i's batches do not depend on the others: a stack of seeds (3, 5) walks exactly the
    epochs that seed 5 alone walks, every index once per epoch."""
    both, alone = T.SeededEpochs(10, (3, 5), 4), T.SeededEpochs(10, (5,), 4)
    for _epoch in range(2):
        seen = []
        for size in (4, 4, 2):                      # 10 = 4 + 4 + 2
            b, a = both(), alone()
            assert b.shape == (2, size) and torch.equal(b[1], a[0])
            seen.append(b[0])
        assert sorted(torch.cat(seen).tolist()) == list(range(10))


def test_paired_memo_caches_the_group_and_each_run_as_a_single_run():
    T.clear_cache()
    calls = []

    def group(seeds):
        calls.append(list(seeds))
        return [f"run {s}" for s in seeds]

    runs = T.paired_memo("toy", {"k": 1}, range(3), group)
    assert runs == ["run 0", "run 1", "run 2"] and calls == [[0, 1, 2]]
    assert T.memo("toy", {"k": 1, "seed": 1}, lambda: "trained again") == "run 1"
    assert T.paired_memo("toy", {"k": 1}, [0, 1, 2], group) == runs and len(calls) == 1
    with pytest.raises(ValueError, match="at least 2 distinct seeds"):
        T.paired_memo("toy", {"k": 1}, [4, 4], group)
    assert T.paired_memo("toy", {"k": 2}, [7], group, at_least=1) == ["run 7"]
    T.clear_cache()
