"""``lossviz-train`` (or ``python -m lossviz``): train an image embedding with any lossviz loss on CUB-200-2011,
Cars196 or Stanford Online Products, from a folder on disk (nothing is downloaded).

The loop is the usual one of deep metric learning: P x K batches (:class:`lossviz.data.PKSampler`),
a backbone with an L2-normalised linear head (:mod:`lossviz.backbones`), the loss as a function of
the batch's similarity matrix, Adam, and Recall@K / MAP@R on the test classes every
``--eval-every`` iterations.  ``--loss`` takes every loss ``L(S, labels)`` of :data:`lossviz.train.LOSSES`
(the pair losses and the InfoNCE family).  ``main(argv)`` is the entry point (the tests call it directly).
"""

from __future__ import annotations

import argparse
import collections
import inspect
import json
import math
import os
import pathlib
import sys
import time

import numpy as np
import torch

from . import checks, metrics
from .backbones import BACKBONES, embedding_net, load_weights
from .data import PKSampler
from .images import LAYOUTS, ImageDataset, UnreadableImageError, read_splits
from . import __version__
from .pairs import MS_PRESETS
from .similarity import similarity
from .train import LOSSES

EPILOG = """\
example: MS loss with the official code's knobs, a ResNet-18 from a local ImageNet state dict,
on CUB-200-2011 (train on classes 1-100, test on 101-200):

  lossviz-train --data ~/data/CUB_200_2011 --loss ms --preset official_code \\
      --backbone resnet18 --weights ~/weights/resnet18-f37072fd.pth --dim 512 \\
      --p 8 --k 4 --iters 3000 --lr 1e-5 --eval-every 500 --out runs/cub_ms

  then, to train further:  the same command with --iters 6000 --resume

a quick run on a CPU (tiny network, small images, knobs of the triplet loss):

  lossviz-train --data ~/data/cars196 --loss triplet --knob margin=0.1 \\
      --knob mining=semihard --backbone tiny --image-size 64 --iters 200 --device cpu

--out receives last.pt (every evaluation), best.pt (highest test Recall@1 so far) and
metrics.jsonl (one JSON line per evaluation).  WARNING: these datasets have no validation
split; choosing best.pt by its Recall@1 on the test classes is feedback from the test set.
Report the numbers of last.pt (or of a checkpoint chosen without the test classes).
"""


# ---------------------------------------------------------------------------- argument types


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {text!r}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0; got {text!r}")
    return value


def _positive_float(text: str) -> float:
    value = _non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0; got {text!r}")
    return value


def _ks(text: str) -> list:
    try:
        ks = sorted({int(k) for k in text.split(",") if k.strip()})
    except ValueError:
        ks = []
    if not ks or ks[0] < 1:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers >= 1 such as 1,2,4,8; got {text!r}")
    return ks


def parse_knob(text: str) -> tuple:
    """``"name=value"`` -> ``(name, value)``, the value a bool (true/false/yes/no), else a float,
    else the string itself (triplet's ``mining=semihard``)."""
    name, sep, raw = text.partition("=")
    name, raw = name.strip(), raw.strip()
    if not sep or not name.isidentifier() or not raw:
        raise argparse.ArgumentTypeError(
            f"expected name=value (such as beta=40 or mining=false); got {text!r}")
    if raw.lower() in ("true", "yes", "false", "no"):
        return name, raw.lower() in ("true", "yes")
    try:
        return name, float(raw)
    except ValueError:
        return name, raw


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train an image embedding with a lossviz pair loss on CUB-200-2011, Cars196\n"
                    "or Stanford Online Products (a folder on disk; nothing is downloaded), and\n"
                    "evaluate Recall@K and MAP@R on the test classes (the zero-shot class split\n"
                    "of the literature).")
    p.add_argument("--version", action="version", version=f"lossviz {__version__}")
    for add in (_data_arguments, _loss_arguments, _model_arguments, _run_arguments):
        add(p)
    return p


def _data_arguments(p: argparse.ArgumentParser) -> None:
    """Where the images are and how to read them."""
    g = p.add_argument_group("data")
    g.add_argument("--data", required=True, metavar="ROOT",
                   help="dataset folder, in one of the standard layouts")
    g.add_argument("--layout", choices=["auto", *LAYOUTS], default="auto",
                   help="force the layout (default: detect it)")
    g.add_argument("--image-size", type=_positive_int, default=224, metavar="N",
                   help="crop size; the shorter side is first resized to N*256/224 (default 224)")
    g.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1), metavar="N",
                   help="DataLoader worker processes (default min(8, CPUs); 0: the main process)")


def _loss_arguments(p: argparse.ArgumentParser) -> None:
    """Which pair loss, with which knobs."""
    g = p.add_argument_group("loss")
    g.add_argument("--loss", choices=sorted(LOSSES), default="ms",
                   help="a loss L(S, labels) of lossviz.train.LOSSES: the pair losses and the InfoNCE "
                        "family (default ms)")
    g.add_argument("--knob", type=parse_knob, action="append", default=[], metavar="NAME=VALUE",
                   help="a keyword of the loss, repeatable: --knob beta=40 --knob mining=false")
    g.add_argument("--preset", choices=sorted(MS_PRESETS),
                   help="MS knobs of lossviz.MS_PRESETS (with --loss ms; --knob overrides one)")


def _model_arguments(p: argparse.ArgumentParser) -> None:
    """The backbone, the embedding and Adam."""
    g = p.add_argument_group("model and optimiser")
    g.add_argument("--backbone", choices=sorted(BACKBONES), default="resnet18",
                   help="default resnet18")
    g.add_argument("--weights", metavar="PATH",
                   help="a local state dict for the backbone (e.g. torchvision's resnet18-*.pth), "
                        "loaded with strict=False, unmatched keys reported; never downloaded")
    g.add_argument("--dim", type=_positive_int, default=512, metavar="N",
                   help="embedding size (default 512)")
    g.add_argument("--p", type=_positive_int, default=8, metavar="P",
                   help="classes per batch (default 8)")
    g.add_argument("--k", type=_positive_int, default=4, metavar="K",
                   help="images per class in a batch (default 4)")
    g.add_argument("--iters", type=_positive_int, default=2000, metavar="N",
                   help="total training iterations (default 2000)")
    g.add_argument("--lr", type=_positive_float, default=1e-4,
                   help="Adam learning rate (default 1e-4; 1e-5 is usual for a pretrained ResNet)")
    g.add_argument("--weight-decay", type=_non_negative_float, default=5e-4, metavar="WD",
                   help="Adam's L2 weight decay (default 5e-4)")
    g.add_argument("--amp", action="store_true",
                   help="bfloat16 autocast on cuda or cpu (the losses still run in float32)")


def _run_arguments(p: argparse.ArgumentParser) -> None:
    """Device, seed, evaluation, output folder and checkpoints."""
    g = p.add_argument_group("run")
    g.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], default="auto",
                   help="default auto: cuda if available, else mps, else cpu")
    g.add_argument("--seed", type=int, default=0, help="default 0")
    g.add_argument("--eval-every", type=_positive_int, default=500, metavar="N",
                   help="evaluate on the test split every N iterations and at the end "
                        "(default 500)")
    g.add_argument("--batch-eval", type=_positive_int, default=256, metavar="N",
                   help="batch size to embed the test split (default 256)")
    g.add_argument("--recall-ks", type=_ks, default=[1, 2, 4, 8], metavar="K,K,..",
                   help="default 1,2,4,8")
    g.add_argument("--out", metavar="DIR",
                   help="output folder (default runs/<layout>_<loss>_<backbone>): last.pt, "
                        "best.pt, metrics.jsonl. WARNING: best.pt is picked by Recall@1 on the "
                        "test classes, which is test-set feedback")
    g.add_argument("--resume", nargs="?", const="last", metavar="CKPT",
                   help="continue from DIR/last.pt (or from CKPT): model, optimiser, iteration, "
                        "random state; the command line sets the rest (e.g. a larger --iters)")
    g.add_argument("--overwrite", action="store_true",
                   help="start afresh even if --out already holds a run (with --resume: discard "
                        "what --out holds after the checkpoint's iteration); nothing in --out is "
                        "deleted without it")


# ---------------------------------------------------------------------------- set-up checks


def pick_device(name: str) -> torch.device:
    """``auto``: cuda if available, else mps, else cpu; an explicit device must exist."""
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if mps else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available")
    if name == "mps" and not mps:
        raise ValueError("--device mps: no MPS device is available")
    return torch.device(name)


def loss_and_knobs(loss: str, knob_list, preset: str | None):
    """The loss function and its keyword arguments, tried on a tiny batch before data is read."""
    fn = LOSSES[loss]
    knobs = {}
    if preset is not None:
        if loss != "ms":
            raise ValueError(f"--preset sets Multi-Similarity knobs: it needs --loss ms, "
                             f"not {loss}")
        knobs.update(MS_PRESETS[preset])
    knobs.update(dict(knob_list))
    params = inspect.signature(fn).parameters.items()
    # ``anchors=`` (rows of a rectangular S, for distributed batches) is plumbing, not a knob.
    allowed = [n for n, prm in params if prm.kind == prm.KEYWORD_ONLY and n != "anchors"]
    unknown = sorted(set(knobs) - set(allowed))
    if unknown:
        raise ValueError(f"--knob {', '.join(unknown)}: the {loss} loss takes {', '.join(allowed)}")
    S = similarity(torch.randn(4, 3, generator=torch.Generator().manual_seed(0)))
    try:
        fn(S, torch.tensor([0, 0, 1, 1]), **knobs)
    except (ValueError, TypeError) as err:
        raise ValueError(f"--knob: the {loss} loss rejects {knobs}: {err}") from err
    return fn, knobs


class _Batches:
    """``n`` batches of indices from a P x K sampler, as a DataLoader ``batch_sampler``."""

    def __init__(self, sampler: PKSampler, n: int):
        self.sampler, self.n = sampler, n

    def __iter__(self):
        for _ in range(self.n):
            yield self.sampler.sample().tolist()

    def __len__(self) -> int:
        return self.n


def _save(obj: dict, path: pathlib.Path) -> None:
    """Write a checkpoint atomically: an interrupted save never leaves a truncated file."""
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _prepare(args) -> dict:
    """Everything that can be checked before training; a ValueError here is a usage error."""
    fn, knobs = loss_and_knobs(args.loss, args.knob, args.preset)
    if args.workers < 0:
        raise ValueError(f"--workers must be >= 0; got {args.workers}")
    device = pick_device(args.device)
    if args.amp and device.type not in ("cuda", "cpu"):
        raise ValueError(f"--amp supports cuda and cpu, not {device.type}")
    splits = read_splits(args.data, None if args.layout == "auto" else args.layout)
    _check_splits(args, splits)
    out = pathlib.Path(args.out or f"runs/{splits.layout}_{args.loss}_{args.backbone}")
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    model = embedding_net(args.backbone, args.dim)
    ckpt = _checkpoint(args, out, model)
    if args.weights and ckpt is None:
        report = load_weights(model, args.weights)
        print(f"--weights {args.weights}: {report['loaded']} tensors loaded; missing: "
              f"{report['missing'] or 'none'}; unused: {report['unexpected'] or 'none'}")
    return {"fn": fn, "knobs": knobs, "device": device, "splits": splits, "out": out,
            "ckpt": ckpt, "model": model}


def _check_splits(args, splits) -> None:
    """Refuse splits this run cannot use: listed images that are absent, fewer train classes than
    --p, a test split in which no class has two images (no query has a same-class image: Recall@K
    and MAP@R are undefined) or with no more images than the largest --recall-ks."""
    where = f"{splits.layout} at {args.data}"
    for name, paths in (("train", splits.train_paths), ("test", splits.test_paths)):
        absent = [p for p in paths[:1000] if not pathlib.Path(p).is_file()]
        if absent:
            raise ValueError(f"{where}: {name} images listed but absent, such as {absent[0]}")
    if args.p > splits.train_classes:
        raise ValueError(f"--p {args.p}: the train split has only {splits.train_classes} classes")
    if max(collections.Counter(splits.test_labels).values(), default=0) < 2:
        raise ValueError(f"{where}: no test class has two images, so Recall@K and MAP@R are "
                         "undefined (a query needs an image of its class to find)")
    if max(args.recall_ks) >= len(splits.test_paths):
        raise ValueError(f"--recall-ks {max(args.recall_ks)}: the test split has only "
                         f"{len(splits.test_paths)} images")


#: What a run writes to --out; nothing of it is deleted without --overwrite.
RUN_FILES = ("last.pt", "best.pt", "metrics.jsonl")
CHECKPOINT_KEYS = ("model", "optimizer", "iteration", "args", "best_recall_at_1", "rng")


def _checkpoint(args, out: pathlib.Path, model) -> dict | None:
    """The checkpoint to resume (None for a fresh run), its weights loaded into ``model``.

    A ValueError refuses what would fail later or lose results: a fresh run into a folder that
    holds any of :data:`RUN_FILES`, a checkpoint that is unreadable or does not fit the model, and
    (without --overwrite) a checkpoint older than the run in --out, which resuming would overwrite.
    """
    if not args.resume:
        held = [name for name in RUN_FILES if (out / name).exists()]
        if held and not args.overwrite:
            raise ValueError(f"{out} already holds a run ({', '.join(held)}); pass --resume to "
                             "continue it or --overwrite to start afresh")
        return None
    path = out / "last.pt" if args.resume == "last" else pathlib.Path(args.resume)
    if not path.is_file():
        raise ValueError(f"--resume: no checkpoint {path}")
    ckpt = _read_checkpoint(path)
    trained = ckpt["args"] if isinstance(ckpt["args"], dict) else {}
    for key in ("backbone", "dim"):
        if trained.get(key) != getattr(args, key):
            raise ValueError(f"--resume: {path} was trained with --{key} {trained.get(key)}, "
                             f"not {getattr(args, key)}")
    _load_model(ckpt, path, model, args)
    start = int(ckpt["iteration"])
    reached, where = (-1, "") if args.overwrite else _reached(out)
    if reached > start:
        raise ValueError(f"--resume: {path} is at iteration {start}, but {out / where} is at "
                         f"iteration {reached}: resuming would overwrite that run; pass another "
                         f"--out, or --overwrite to discard what follows iteration {start}")
    return ckpt


def _read_checkpoint(path: pathlib.Path, *, mmap: bool = False) -> dict:
    """A checkpoint of lossviz-train; a ValueError naming the file when it is unreadable
    (truncated, corrupt) or something else (another program's state dict)."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as err:  # torch raises RuntimeError, EOFError, KeyError, UnpicklingError ...
        raise ValueError(f"{path}: cannot read it as a checkpoint (truncated, corrupt, or not "
                         "written by torch.save)") from err
    missing = [k for k in CHECKPOINT_KEYS if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise ValueError(f"{path}: not a checkpoint of lossviz-train (it lacks "
                         f"{', '.join(missing)})")
    return ckpt


def _load_model(ckpt: dict, path: pathlib.Path, model, args) -> None:
    """Load the checkpoint's weights into ``model``, and check that its optimiser state fits."""
    want = model.state_dict()
    got = ckpt["model"] if isinstance(ckpt["model"], dict) else {}
    differ = sorted(set(want) ^ set(got)) or [
        k for k in want if getattr(got[k], "shape", None) != want[k].shape]
    if differ:
        raise ValueError(f"--resume: {path} holds another model than --backbone {args.backbone} "
                         f"--dim {args.dim} ({len(differ)} tensor(s) differ, such as {differ[0]})")
    model.load_state_dict(got)
    try:  # on a scratch optimiser: _fit loads the state once the model is on its device
        torch.optim.Adam(model.parameters()).load_state_dict(ckpt["optimizer"])
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"--resume: {path} holds an optimiser state that does not fit the "
                         "model (not Adam's, or of other parameters)") from err


def _reached(out: pathlib.Path) -> tuple[int, str]:
    """The latest iteration that the run in ``out`` recorded and the file that says so
    (``(-1, "")`` when there is none)."""
    latest = [(-1, "")]
    for name in ("last.pt", "best.pt"):
        if (out / name).is_file():
            it = _iteration(out / name)
            if it == math.inf:
                raise ValueError(f"--resume: {out / name} is unreadable, so how far the run in "
                                 f"{out} went is unknown; pass --overwrite to discard it")
            latest.append((it, name))
    for number, it in _records(out / "metrics.jsonl"):
        if it is None:
            raise ValueError(f"{out / 'metrics.jsonl'}, line {number}: not a record of "
                             "lossviz-train; delete the line, or pass --overwrite to drop it")
        latest.append((it, "metrics.jsonl"))
    return max(latest, key=lambda found: found[0])  # the first file that says so


def _iteration(path: pathlib.Path) -> float:
    """The iteration of a checkpoint (memory-mapped: its tensors are not read); infinity, later
    than any, for one that is unreadable or not lossviz-train's."""
    try:
        return int(_read_checkpoint(path, mmap=True)["iteration"])
    except ValueError:
        return math.inf


def _records(path: pathlib.Path) -> list:
    """``(line number, iteration)`` of each line of a metrics.jsonl (iteration None for a line
    that is not a record); ``[]`` when there is no file."""
    if not path.is_file():
        return []
    found = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        try:
            it = json.loads(line)["iter"]
        except (ValueError, TypeError, KeyError):
            it = None
        found.append((number, it if type(it) is int else None))
    return found


def _discard_after(out: pathlib.Path, start: int) -> None:
    """--overwrite with --resume: remove what ``out`` recorded after iteration ``start``, a future
    that the resumed run replaces: a later (or unreadable) last.pt and best.pt, and the
    metrics.jsonl lines after ``start`` (and those that are no records).  A discarded best.pt is
    written again when an evaluation beats the checkpoint's best Recall@1."""
    gone = []
    for name in ("last.pt", "best.pt"):
        if (out / name).is_file() and not _iteration(out / name) <= start:
            (out / name).unlink()
            gone.append(name)
    path = out / "metrics.jsonl"
    records = _records(path)
    keep = {number for number, it in records if it is not None and it <= start}
    if len(keep) < len(records):
        lines = path.read_text(errors="replace").splitlines()
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(f"{lines[n - 1]}\n" for n in sorted(keep)))
        os.replace(tmp, path)  # atomic: an interruption leaves the old file or the new one
        gone.append(f"{len(records) - len(keep)} line(s) of metrics.jsonl")
    if gone:
        print(f"--overwrite: discarded {', '.join(gone)} of {out} (after iteration {start})",
              file=sys.stderr)


# ---------------------------------------------------------------------------- training


@torch.no_grad()
def embed(model, loader, device, amp: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Embeddings (float32, on ``device``) and labels of a whole split, in eval mode."""
    was_training = model.training
    model.eval()
    zs, ys = [], []
    for x, y in loader:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            zs.append(model(x.to(device, non_blocking=True)).float())
        ys.append(y)
    model.train(was_training)
    return torch.cat(zs), torch.cat(ys)


def main(argv=None, prog: str | None = None) -> list:
    """Parse ``argv`` (default ``sys.argv[1:]``), train and evaluate; the evaluation records.
    ``prog`` is the command's name in the help (default: the console script's, ``lossviz-train``)."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    try:
        ready = _prepare(args)
    except ValueError as err:
        parser.error(str(err))
    return _fit(args, **ready)


def _fit(args, *, fn, knobs, device, splits, out, ckpt, model) -> list:
    out.mkdir(parents=True, exist_ok=True)
    model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    sampler = PKSampler(np.asarray(splits.train_labels), args.p, args.k, seed=args.seed)
    start, best = (0, -1.0) if ckpt is None else _resume(ckpt, args, opt, sampler, device)
    if start >= args.iters:
        print(f"{out}: the checkpoint is at iteration {start}, --iters is {args.iters}: "
              "nothing to do", file=sys.stderr)
        return []
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # one image size: let cuDNN pick its fastest kernels
    train_loader, test_loader = _loaders(args, splits, sampler, start, pin=device.type == "cuda")
    if args.overwrite and ckpt is None:  # nothing of the old run may remain
        for name in RUN_FILES:
            (out / name).unlink(missing_ok=True)
    elif args.overwrite:
        _discard_after(out, start)
    print(f"{splits!r}\nloss {args.loss} {knobs}, {args.backbone} -> {args.dim}, "
          f"{args.p} x {args.k} batches, device {device}, output {out}")
    log = _Log(args, model, opt, sampler, splits.layout, knobs, out, device, test_loader, start, best)
    try:
        if ckpt is None:
            log.evaluate()  # the untrained (or pretrained) embedding: the baseline
        with checks.validation(False):  # well-formed batches by construction: no per-step syncs
            for x, y in train_loader:
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=args.amp):
                    z = model(x)
                value = fn(similarity(z.float()), y, **knobs)  # S in float32: exp(beta S) is touchy
                opt.zero_grad(set_to_none=True)
                value.backward()
                opt.step()
                log.step(value.detach())
    except KeyboardInterrupt:
        log.interrupted()
    except UnreadableImageError as err:
        raise SystemExit(f"error: {_one_line(err)}") from None
    finally:
        log.bar.close()
    return log.records


def _one_line(err: Exception) -> str:
    """The message of ``err``.  Re-raised from a DataLoader worker, its message is the worker's
    whole traceback: then its last line, without the ``module.Class: `` prefix."""
    last = str(err).strip().splitlines()[-1]
    return last.removeprefix(f"{type(err).__module__}.{type(err).__qualname__}: ")


def _resume(ckpt: dict, args, opt, sampler, device) -> tuple[int, float]:
    """Load a checkpoint's optimiser and random states (_prepare loaded its weights);
    ``(iteration, best Recall@1)``."""
    opt.load_state_dict(ckpt["optimizer"])
    for group in opt.param_groups:  # the command line wins
        group["lr"], group["weight_decay"] = args.lr, args.weight_decay
    sampler.rng.bit_generator.state = ckpt["rng"]["sampler"]
    torch.set_rng_state(ckpt["rng"]["torch"])
    if device.type == "cuda" and ckpt["rng"]["cuda"]:
        torch.cuda.set_rng_state_all(ckpt["rng"]["cuda"])
    return int(ckpt["iteration"]), float(ckpt["best_recall_at_1"])


def _loaders(args, splits, sampler, start: int, *, pin: bool):
    """The training loader (P x K batches from ``sampler``, for the iterations left) and the test loader.

    Each loader has its own generator, so that starting it does not draw from the global torch
    RNG: that one draws the crops and flips (with --workers 0) and is checkpointed.  With
    --workers 0 a resumed run is then the same as one that never stopped; with workers, the
    batches the workers had prefetched when last.pt was written are skipped."""
    train_loader = torch.utils.data.DataLoader(
        ImageDataset(splits.train_paths, splits.train_labels, size=args.image_size, train=True),
        batch_sampler=_Batches(sampler, args.iters - start), num_workers=args.workers,
        pin_memory=pin, generator=torch.Generator().manual_seed(args.seed * 1_000_003 + start))
    test_loader = torch.utils.data.DataLoader(
        ImageDataset(splits.test_paths, splits.test_labels, size=args.image_size),
        batch_size=args.batch_eval, num_workers=args.workers, pin_memory=pin,
        persistent_workers=args.workers > 0, generator=torch.Generator())
    return train_loader, test_loader


class _Log:
    """A run's bookkeeping: the progress bar, the running training loss, the evaluations (printed,
    appended to metrics.jsonl) and the checkpoints (last.pt after each evaluation, best.pt at the
    best Recall@1)."""

    def __init__(self, args, model, opt, sampler, layout, knobs, out, device, test_loader, start: int, best: float):
        from tqdm.auto import tqdm

        self.args, self.model, self.opt, self.sampler = args, model, opt, sampler
        self.layout, self.knobs, self.out, self.device, self.test_loader = layout, knobs, out, device, test_loader
        self.it, self.best, self.records = start, best, []
        self.loss_sum, self.loss_count = torch.zeros((), device=device), 0
        self.t0 = time.perf_counter()
        self.bar = tqdm(total=args.iters, initial=start, desc=args.loss, dynamic_ncols=True)
        model.train()

    def step(self, loss: torch.Tensor) -> None:
        """Count one training step; evaluate when it is time."""
        self.it += 1
        self.loss_sum += loss
        self.loss_count += 1
        self.bar.update(1)
        if self.it % 10 == 0 or self.it == self.args.iters:  # reading the loss costs a device sync
            current = float(loss)
            if not math.isfinite(current):
                raise SystemExit(f"error: the loss became {current} at iteration {self.it}; "
                                 "lower --lr or the loss's scales (--knob). last.pt holds "
                                 "the last evaluation.")
            self.bar.set_postfix(loss=f"{current:.4f}", best_R1=f"{self.best:.4f}")
        if self.it % self.args.eval_every == 0 or self.it == self.args.iters:
            self.evaluate()

    def checkpoint(self, record: dict | None) -> dict:
        cuda = self.device.type == "cuda"
        rng = {"torch": torch.get_rng_state(), "sampler": self.sampler.rng.bit_generator.state,
               "cuda": torch.cuda.get_rng_state_all() if cuda else []}
        return {"model": self.model.state_dict(), "optimizer": self.opt.state_dict(), "iteration": self.it,
                "args": dict(vars(self.args)), "layout": self.layout, "knobs": self.knobs,
                "best_recall_at_1": self.best, "metrics": record, "rng": rng}

    def evaluate(self) -> None:
        args, it = self.args, self.it
        z, y = embed(self.model, self.test_loader, self.device, args.amp)
        scores = metrics.retrieval_scores(z if self.device.type == "cuda" else z.cpu(), y, ks=tuple(args.recall_ks))
        record = {"iter": it, **scores,
                  "train_loss": float(self.loss_sum) / self.loss_count if self.loss_count else None,
                  "seconds": round(time.perf_counter() - self.t0, 3)}
        self.loss_sum, self.loss_count = torch.zeros((), device=self.device), 0
        self.records.append(record)
        with open(self.out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        recalls = "  ".join(f"R@{k} {scores[f'recall_at_{k}']:.4f}" for k in args.recall_ks)
        self.bar.write(f"iter {it}: {recalls}  MAP@R {scores['map_at_r']:.4f}")
        if scores["recall_at_1"] > self.best:
            self.best = scores["recall_at_1"]
            _save(self.checkpoint(record), self.out / "best.pt")
        _save(self.checkpoint(record), self.out / "last.pt")

    def interrupted(self) -> None:
        _save(self.checkpoint(None), self.out / "last.pt")
        self.bar.close()
        print(f"\ninterrupted: saved {self.out / 'last.pt'} at iteration {self.it}; continue with --resume",
              file=sys.stderr)
        raise SystemExit(130) from None


if __name__ == "__main__":  # python -m lossviz.cli
    main(prog="python -m lossviz.cli")
