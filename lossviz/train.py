"""A tiny, seeded training harness for embedding losses, with a progress bar and a result cache.

    run = train("ms", data="digits", dim=2, iters=300)       # or any loss(S, labels, **knobs)
    run.evals["recall_at_1"], run.history["active_neg"]

Every iteration records the loss and, through General Pair Weighting, which pairs the loss used:
the fraction of positive and negative pairs with a non-zero weight ``dL/dS_ij`` (for MS these are
exactly the mined pairs) and the fraction of anchors with any active pair.  Runs are cached by
their parameters, so a widget that returns to a setting answers at once.
"""

from __future__ import annotations

import functools
import hashlib
import os
import pathlib
import pickle
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from . import checks
from .data import PKSampler, load
from .metrics import map_at_r, recall_at_k, retrieval_scores
from .models import model_for
from .contrastive import CONTRASTIVE_LOSSES
from .pairs import PAIR_LOSSES
from .similarity import pair_masks, similarity

#: Every loss :func:`train` and the command line know by name: each is ``loss(S, labels, **knobs)``.
LOSSES = {**PAIR_LOSSES, **CONTRASTIVE_LOSSES}

#: Batch shape per dataset: every class in every batch for digits (10 x 8), 5 x 16 for MNIST-1D.
DEFAULT_PK = {"digits": (10, 8), "digits_zero_shot": (5, 16), "mnist1d_unseen": (5, 16), "mnist1d": (10, 8)}


def setup(seed: int = 0, threads: int = 1) -> bool:
    """The notebooks' setup: seeds, thread count, projector-friendly figures.  Returns ``FAST``.

    One thread: on a busy 2-core machine two torch threads made a 1 s run take 38 s.
    ``FAST`` is true when the environment sets ``LOSSVIZ_FAST=1`` (shorter runs in CI).
    """
    from .plots import use_style

    torch.manual_seed(seed)
    np.random.seed(seed)
    torch.set_num_threads(threads)
    use_style()
    return os.environ.get("LOSSVIZ_FAST", "0") not in ("", "0")


@dataclass(repr=False)
class Run:
    """What every training run of the lessons returns: its parameters, the numbers recorded at each
    step (``history``: ``iter``, ``loss``, ...), the evaluations made along the way (``evals``:
    ``iter`` and one array per score), the scores measured once after training (``scores``) and the
    seconds the training loop took.  Paper modules subclass it with what their pictures need (test
    embeddings, learned temperatures, the trained network, ...)."""

    params: dict
    history: dict = field(default_factory=dict)
    evals: dict = field(default_factory=dict)
    scores: dict = field(default_factory=dict)
    seconds: float = 0.0

    def final(self, key: str) -> float:
        """The end-of-training value of ``key``: its score, else its last evaluation, else its last step."""
        if key in self.scores:
            return float(self.scores[key])
        return float((self.evals if key in self.evals else self.history)[key][-1])

    def __repr__(self) -> str:
        knobs = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                          for k, v in self.params.items() if k not in ("seed",))
        return f"{type(self).__name__}({knobs})"


@dataclass(repr=False)
class PairRun(Run):
    """A pair-loss run of :func:`train`: ``history`` holds iter, loss, active_pos, active_neg,
    active_anchors; ``evals`` iter, recall_at_1, map_at_r; and the test embeddings before and after."""

    emb_before: np.ndarray | None = None          # test embeddings before training
    emb_after: np.ndarray | None = None           # ... and after
    y_test: np.ndarray | None = None

    @property
    def recall_at_1(self) -> float:
        """Test Recall@1 at the end of training."""
        return self.final("recall_at_1")

    @property
    def map_at_r(self) -> float:
        """Test MAP@R at the end of training."""
        return self.final("map_at_r")

    def __repr__(self) -> str:
        return (f"PairRun({self.params['loss']}, {self.params['data']}, d={self.params['dim']}, "
                f"{self.params['iters']} it: R@1 {self.recall_at_1:.3f}, MAP@R {self.map_at_r:.3f})")


_CACHE: dict = {}


def clear_cache() -> None:
    """Forget all cached runs."""
    _CACHE.clear()


class Trainer:
    """The skeleton every training run of the lessons shares; the paper supplies the step.

    Seeds torch, builds the network with ``build()`` (a module, or a tuple of modules and
    parameters: whatever the step needs, built after the seed so that a run is reproducible) and
    Adam over its parameters (or over ``parameters(model)``).  :meth:`run` then calls ``step(it)``
    for ``it = 1 .. iters`` without per-step input validation (the batches are well-formed by
    construction; validation would sync a GPU every step), evaluates before training, every
    ``eval_every`` steps and at the end, and times the loop.  A SimCLR-style run::

        trainer = Trainer(lambda: encoder_projector(64, dim=32), lr=1e-3, seed=0)
        sampler = augment.TwoViewSampler(x_train, "digits", 128, seed=0)

        def step(it):
            views, labels, _ = sampler.sample()
            loss = nt_xent_loss(similarity(trainer.model(views)), labels, tau=0.2)
            trainer.update(loss)
            return {"loss": loss}

        history, evals, seconds = trainer.run(step, iters, evaluate=lambda: {"knn": ...}, eval_every=100)
    """

    def __init__(self, build: Callable[[], object], *, lr: float, seed: int,
                 parameters: Callable[[object], list] | None = None):
        torch.manual_seed(seed)
        self.model = build()
        parts = self.model if isinstance(self.model, tuple) else (self.model,)
        self.modules = [m for m in parts if isinstance(m, torch.nn.Module)]
        if parameters is None:
            params = [p for m in parts for p in (m.parameters() if isinstance(m, torch.nn.Module) else [m])]
        else:
            params = list(parameters(self.model))
        self.optimizer = torch.optim.Adam(params, lr=checks.positive(lr, "lr"))

    def update(self, loss: torch.Tensor) -> None:
        """One optimisation step on ``loss``."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()

    def evaluating(self, evaluate: Callable[[], dict]) -> dict:
        """``evaluate()`` with the network in eval mode and without gradients."""
        for m in self.modules:
            m.eval()
        try:
            with torch.no_grad():
                return evaluate()
        finally:
            for m in self.modules:
                m.train()

    def run(self, step: Callable[[int], dict], iters: int, *, evaluate: Callable[[], dict] | None = None,
            eval_every: int | None = None, desc: str = "training", progress=True) -> tuple[dict, dict, float]:
        """Train: returns ``(history, evals, seconds)``; ``history`` as :func:`loop` records it,
        ``evals = {"iter": [0, ..., iters], name: [...]}`` from the dicts ``evaluate()`` returns."""
        checks.integer(iters, "iters", 1)
        evals: dict = {"iter": []}

        def record(it: int) -> None:
            evals["iter"].append(it)
            for key, value in self.evaluating(evaluate).items():
                evals.setdefault(key, []).append(value)

        def timed_step(it: int) -> dict:
            out = step(it)
            if evaluate is not None and ((eval_every and it % eval_every == 0) or it == iters):
                record(it)
            return out

        if evaluate is not None:
            record(0)
        start = time.perf_counter()
        with checks.validation(False):
            history = loop(timed_step, iters, desc=desc, progress=progress)
        seconds = time.perf_counter() - start
        return history, {key: np.asarray(v) for key, v in evals.items()}, seconds


def _loss_fn(loss) -> tuple[str, Callable]:
    """``(readable name, function)`` of a loss given by name or as a function."""
    if callable(loss):
        return _callable_name(loss), loss
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; choose one of {sorted(LOSSES)} or pass a function")
    return loss, LOSSES[loss]


def _callable_name(fn) -> str:
    """``module.qualname`` of a function (of its class for a callable object); for a
    ``functools.partial``, the wrapped function's name with its bound arguments."""
    if isinstance(fn, functools.partial):
        args = [repr(a) for a in fn.args] + [f"{k}={v!r}" for k, v in fn.keywords.items()]
        return f"{_callable_name(fn.func)}({', '.join(args)})"
    named = fn if hasattr(fn, "__qualname__") else type(fn)
    return f"{named.__module__}.{named.__qualname__}"


def _hashable(obj) -> bool:
    try:
        hash(obj)
    except TypeError:
        return False
    return True


def train(loss="ms", *, data: str = "digits", dim: int = 2, iters: int = 300, p: int | None = None,
          k: int | None = None, lr: float = 1e-3, seed: int = 0, eval_every: int = 50,
          progress=True, cache: bool = True, **knobs) -> PairRun:
    """Train a small embedding network with a pair loss on P x K batches (Adam), and evaluate it.

    ``loss`` is a name of :data:`LOSSES` (pair losses and the InfoNCE family) or any ``loss(S, labels, **knobs)``;
    ``knobs`` go to the loss.  Test Recall@1 and MAP@R (query excluded from the gallery) are
    measured before training, every ``eval_every`` iterations, and at the end.  ``progress`` is
    ``True`` (a tqdm bar), ``False``, or a function ``progress(iteration, iters)`` called every
    10 iterations (a widget's progress bar).

    Runs are cached (``cache=True``) by their parameters and the loss function itself, not its
    name: two lambdas, or two closures of one factory, are two runs.  ``run.params["loss"]`` is
    the name, or ``module.qualname`` of a function (``f(args)`` for a ``functools.partial``).
    A function that cannot be hashed is trained again each time.
    """
    name, fn = _loss_fn(loss)
    for arg, value in (("dim", dim), ("iters", iters), ("eval_every", eval_every)):
        checks.integer(value, arg, 1)
    lr = checks.positive(lr, "lr")
    split = load(data)
    p0, k0 = DEFAULT_PK.get(data, (5, 8))
    p, k = p or p0, k or k0
    params = dict(loss=name, data=data, dim=dim, iters=iters, p=p, k=k, lr=lr, seed=seed,
                  eval_every=eval_every, **{f"knob_{key}": v for key, v in sorted(knobs.items())})
    # Keyed by the function object: a __qualname__ is shared by every lambda of a scope.
    return memo(("pair", fn), params, lambda: _train_pairs(fn, split, params, knobs, progress),
                cache=cache and _hashable(fn))


def _train_pairs(fn: Callable, split, params: dict, knobs: dict, progress) -> PairRun:
    trainer = Trainer(lambda: model_for(split.x_train, params["dim"]), lr=params["lr"], seed=params["seed"])
    sampler = PKSampler(split.y_train.numpy(), params["p"], params["k"], seed=params["seed"])
    embeddings = []

    def evaluate() -> dict:
        z = trainer.model(split.x_test)
        embeddings.append(z.numpy())
        return retrieval_scores(z, split.y_test)

    def step(it: int) -> dict:
        idx = sampler.sample()
        yb = split.y_train[idx]
        S = similarity(trainer.model(split.x_train[idx]))
        S.retain_grad()
        value = fn(S, yb, **knobs)
        if not torch.isfinite(value):
            raise ValueError(f"the loss became {float(value.detach())} at iteration {it}; lower lr or the scales")
        trainer.update(value)
        pos, neg = pair_masks(yb)
        active = S.grad != 0               # General Pair Weighting: the pairs the loss used this step
        return {"loss": value.detach(),
                "active_pos": (active & pos).sum() / pos.sum().clamp(min=1),
                "active_neg": (active & neg).sum() / neg.sum().clamp(min=1),
                "active_anchors": active.any(dim=1).float().mean()}

    history, evals, seconds = trainer.run(step, params["iters"], evaluate=evaluate, eval_every=params["eval_every"],
                                          desc=params["loss"], progress=progress)
    return PairRun(params=params, history=history, evals=evals, seconds=seconds, emb_before=embeddings[0],
                   emb_after=embeddings[-1], y_test=split.y_test.numpy())


def paired_memo(name: str, base: dict, seeds, train_group: Callable[[list], list], *, at_least: int = 2) -> list:
    """The runs of one setting on paired seeds, trained together and cached like single runs.

    ``train_group(seeds)`` trains every seed at once (a stack, :class:`lossviz.models.StackedMLP`)
    and returns one run per seed; the group is remembered under ``name + "_group"`` with the seeds,
    and each run joins the cache under ``(name, base | {"seed": s})``, as the single-run function
    that uses ``name`` would store it (a run already there is kept).  ``seeds``: ``at_least`` distinct
    integers."""
    seeds = [checks.integer(s, "seed") for s in seeds]
    if len(seeds) < at_least or len(set(seeds)) != len(seeds):
        raise ValueError(f"paired runs need at least {at_least} distinct seed{'s' if at_least > 1 else ''}; got {seeds}")
    group = memo(f"{name}_group", base | {"seed": tuple(seeds)}, lambda: train_group(seeds))
    return [memo(name, base | {"seed": s}, lambda r=r: r) for s, r in zip(seeds, group)]


class SeededEpochs:
    """Mini-batch indices for a stack of paired runs: member ``i`` walks its own shuffled epochs of
    ``range(n)`` (a new permutation each epoch, from a generator seeded with ``seeds[i]``, so it does
    not depend on the other members), and each call returns the next batch of every member at once,
    ``S x batch_size`` (an epoch's last batch may be shorter)."""

    def __init__(self, n: int, seeds, batch_size: int):
        self.n, self.batch_size = n, batch_size
        self._generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
        self._queue: list = []

    def __call__(self) -> torch.Tensor:
        if not self._queue:                                    # a new epoch: each member's own order
            perms = torch.stack([torch.randperm(self.n, generator=g) for g in self._generators])
            self._queue.extend(perms.split(self.batch_size, dim=1))
        return self._queue.pop(0)


def memo(name: str | tuple, params: dict, compute: Callable[[], object], *, cache: bool = True):
    """``compute()``, remembered under ``(name, params)``: the result cache every training run of
    the notebooks shares (so a widget returning to a setting answers at once).  ``name`` is any
    hashable (a string, or a tuple that adds what ``params`` only names, such as a function) and
    ``params`` must hold hashable values; :func:`clear_cache` forgets everything.

    In a notebook or Voila kernel, finished runs are also kept on disk (:func:`run_cache_dir`), so
    that a reload, a second tab or a new kernel reuses them; see :func:`disk_cache_enabled`."""
    key = (name, tuple(sorted(params.items())))
    if cache and key in _CACHE:
        return _CACHE[key]
    path = _disk_path(key) if cache and disk_cache_enabled() else None
    result = _disk_read(path) if path is not None else None
    if result is None:
        result = compute()
        if path is not None:
            _disk_write(path, result)
    if cache:
        _CACHE[key] = result
    return result


def disk_cache_enabled() -> bool:
    """Whether :func:`memo` keeps runs on disk: ``$LOSSVIZ_RUN_CACHE`` = 1 or 0 decides; unset, it
    is on inside a Jupyter kernel (notebooks, Voila) and off in scripts and tests."""
    flag = os.environ.get("LOSSVIZ_RUN_CACHE", "").strip()
    if flag in ("0", "1"):
        return flag == "1"
    return _in_notebook()


def run_cache_dir() -> pathlib.Path:
    """Where runs are kept on disk: ``cache/runs`` in the data folder (:func:`lossviz.data.data_dir`,
    the checkout's ``data/`` for the notebooks).  Deleting it only costs the time to train again."""
    from .data import data_dir

    return data_dir() / "cache" / "runs"


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """A fingerprint of everything a run's numbers depend on besides its parameters: the source of
    the lossviz package, the torch and numpy versions, and the math-kernel settings.  A cached run
    made by other code (or other kernels) is never returned."""
    digest = hashlib.sha256()
    root = pathlib.Path(__file__).resolve().parent
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    settings = [torch.__version__, np.__version__, *(os.environ.get(k, "") for k in _KERNEL_SETTINGS)]
    digest.update(repr(settings).encode())
    return digest.hexdigest()[:20]


#: Environment variables that switch the math kernels (and so the last bits of a run).
_KERNEL_SETTINGS = ("MKL_CBWR", "ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")


def _stable(obj):
    """A text for ``obj`` that is the same in every process, or None when there is none (an object
    printed by address, a function defined outside lossviz): such runs stay in memory only."""
    if obj is None or isinstance(obj, (bool, int, str)):
        return repr(obj)
    if isinstance(obj, float):
        return float.hex(obj)
    if isinstance(obj, (tuple, list)):
        parts = [_stable(o) for o in obj]
        return None if None in parts else "(" + ",".join(parts) + ")"
    if isinstance(obj, functools.partial):
        inner = _stable((obj.func, obj.args, tuple(sorted(obj.keywords.items()))))
        return None if inner is None else "partial" + inner
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if callable(obj) and module and qualname and module.split(".")[0] == "lossviz" and "<" not in qualname:
        return f"{module}.{qualname}"
    return None


def _disk_path(key) -> pathlib.Path | None:
    text = _stable(key)
    if text is None:
        return None
    name = hashlib.sha256(f"{code_version()}|{torch.get_num_threads()}|{text}".encode()).hexdigest()[:32]
    return run_cache_dir() / f"{name}.pkl"


def _disk_read(path: pathlib.Path):
    """The run stored at ``path``, or None (missing, unreadable or from an older layout)."""
    try:
        with open(path, "rb") as f:
            return pickle.load(f)
    except Exception:  # noqa: BLE001 - a bad cache entry is only a miss: the run is trained again
        return None


def _disk_write(path: pathlib.Path, result) -> None:
    """Store ``result`` atomically (a temporary file, then a rename); a result that cannot be
    pickled, or a read-only folder, leaves it in memory only."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as f:
            tmp = f.name
            pickle.dump(result, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    except Exception:  # noqa: BLE001 - caching is an optimisation, never a failure
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def loop(step: Callable[[int], dict], iters: int, *, desc: str = "training", progress=True,
         every: int = 10) -> dict:
    """The training loop of every notebook that is not a P x K pair-loss run: calls
    ``step(it)`` for ``it = 1 .. iters`` and collects the numbers of the dict it returns.

    ``step`` does one optimisation step and returns what to record, e.g.
    ``{"loss": 0.41, "acc": 0.9}`` (plain floats; a key may be missing on some iterations).
    ``progress`` is ``True`` (a tqdm bar), ``False``, or ``progress(it, iters)`` called every
    ``every`` iterations (a widget's progress bar).  Returns ``{"iter": array, key: array, ...}``,
    each key's values at the iterations where ``step`` returned it (``key + "_iter"`` holds
    those iterations when they differ from ``iter``).  A non-finite ``"loss"`` stops the run with a
    clear error.
    """
    checks.integer(iters, "iters", 1)
    bar = _progress(iters, desc, progress is True)
    report = progress if callable(progress) else None
    rows: dict = {}
    for it in range(1, iters + 1):
        out = step(it) or {}
        for key, value in out.items():
            value = float(value.detach()) if torch.is_tensor(value) else float(value)
            if key == "loss" and not np.isfinite(value):
                if bar is not None:
                    bar.close()
                raise ValueError(f"the loss became {value} at iteration {it}; lower the learning rate or the scales")
            rows.setdefault(key, ([], []))
            rows[key][0].append(it)
            rows[key][1].append(value)
        if report is not None and (it % every == 0 or it == iters):
            report(it, iters)
        if bar is not None:
            bar.update(1)
            if it % 25 == 0 and out:
                bar.set_postfix({k: f"{float(v.detach()) if torch.is_tensor(v) else float(v):.3f}"
                                 for k, v in list(out.items())[:3]})
    if bar is not None:
        bar.close()
    hist = {"iter": np.arange(1, iters + 1)}
    for key, (its, values) in rows.items():
        hist[key] = np.asarray(values)
        if len(its) != iters:
            hist[key + "_iter"] = np.asarray(its)
    return hist


def in_voila() -> bool:
    """Whether this process is a Voila kernel (Voila shows its own progress while a page loads)."""
    return any(key.startswith("VOILA_") for key in os.environ)


def _progress(total: int, desc: str, enabled: bool):
    """The progress bar of a run: a widget in a notebook, tqdm in a terminal, none in Voila."""
    if not enabled or in_voila():
        return None
    if _in_notebook():
        return _NotebookBar(total, desc)
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc)


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


class _NotebookBar:
    """A progress bar widget with the few methods of tqdm that :func:`loop` uses.

    Its plain-text form (what a saved notebook, an HTML export or a terminal shows without the
    widget) names the run and its length, never a frozen "0%"; the widget updates at most ten
    times a second."""

    def __init__(self, total: int, desc: str):
        import ipywidgets as W
        from IPython.display import display

        self.total, self.n, self._shown = max(int(total), 1), 0, 0.0
        self.bar = W.IntProgress(value=0, min=0, max=self.total, description=desc,
                                 style={"description_width": "initial"}, layout=W.Layout(width="420px"))
        self.text = W.HTML(f"0 / {self.total}")
        bundle = W.HBox([self.bar, self.text])._repr_mimebundle_()
        bundle["text/plain"] = f"{desc}: {self.total} iterations"
        display(bundle, raw=True)

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.perf_counter()
        if now - self._shown > 0.1 or self.n >= self.total:
            self._shown = now
            self.bar.value, self.text.value = self.n, f"{self.n} / {self.total}"

    def set_postfix(self, values: dict) -> None:
        self.text.value = f"{self.n} / {self.total}  " + "  ".join(f"{k} {v}" for k, v in values.items())

    def close(self) -> None:
        self.bar.value = self.n
        self.bar.bar_style = "success" if self.n >= self.total else "danger"


def baselines(data: str, dims=(2,)) -> dict:
    """No-training baselines on the test split: raw features and PCA-d (fit on train) of them.

    Returns ``{name: (recall_at_1, map_at_r)}``.
    """
    from .models import pca_embedding

    split = load(data)
    out = {"raw": split.x_test}
    for d in dims:
        out[f"pca{d}"] = pca_embedding(split.x_train, split.x_test, d)
    return {name: (recall_at_k(z, split.y_test, 1), map_at_r(z, split.y_test)) for name, z in out.items()}


if __name__ == "__main__":  # python -m lossviz.train --help (as python -m lossviz)
    from .cli import main

    main(prog="python -m lossviz.train")
