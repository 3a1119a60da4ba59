"""Time lossviz's pair losses against the floor and against pytorch-metric-learning (``make bench``).

Every measurement is end to end, from embeddings to their gradient:

* lossviz: ``loss_fn(lv.similarity(x), labels).backward()``;
* pytorch-metric-learning (PML): ``loss(x, labels[, miner(x, labels)]).backward()`` (PML normalises
  the embeddings and forms the similarity matrix itself, and its miner forms a second one);
* the **floor**: ``S = normalize(x) @ normalize(x).T`` forward and backward (with a ready-made
  upstream gradient), the part every pair loss pays for before doing anything of its own.

For each batch (P classes x K samples, B = P K, D-dimensional embeddings that look half-way
trained: see :func:`make_batch`) it reports the median time of ``--repeats`` runs after warm-up
(all cases of a batch timed round-robin, so background load falls on all alike), the peak tensor
memory of one run and its count of aten ops (both from the profiler, see ``bench/memory.py``).
lossviz is timed with its value checks on (the default) and off (``lv.validation(False)``, what the
ratios use).  The table of pairings below says which PML loss stands against which lossviz loss:
the pair losses and the InfoNCE family (NT-Xent, SupCon) on S, the margin losses (ArcFace, CosFace,
NormFace) on the cosines to ``CLASSES`` class weights that both sides share (and differentiate).

Then the scaling table: every lossviz loss from B = 64 to 8192 (D = 128, K = 4), time and peak
memory, which grows as B^2; and the block path (``lossviz.distributed.backward_in_blocks``, 1024
anchors at a time), whose memory grows as 1024 x B.

The batch matters for MS with mining: on a batch where mining keeps *nothing* (a model near the
end of training), PML's miner returns empty lists and its loss returns 0 without computing
anything, while lossviz still computes its B x B terms (it decides nothing on the host, so that it
never synchronises with a GPU and compiles to one graph).  The JSON records, per batch, the share
of anchors, positive and negative pairs that MS mining keeps.

    python bench/losses.py                        # full grid, 1 thread, bench/results/losses-cpu.json
    python bench/losses.py --quick                # smoke test
    python bench/losses.py --markdown             # also print the README tables
    python bench/losses.py --device cuda          # on a GPU (bench/results/losses-cuda.json)
    python bench/losses.py --no-scaling           # the grid only

Never run as a timed test: times depend on the machine and on whatever else runs on it.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make ``bench`` and ``lossviz`` importable
    sys.path.insert(0, str(ROOT))

import lossviz as lv  # noqa: E402
from bench.memory import MiB, profile_run  # noqa: E402

# ------------------------------------------------------------------------------------------------
# What is compared with what
# ------------------------------------------------------------------------------------------------

#: Classes of the margin losses' class-weight matrix (the batch's labels are some of them).
CLASSES = 1000

#: lossviz losses by benchmark name: ``fn(S, labels) -> scalar``.
LOSSVIZ = {
    "ms": partial(lv.ms_loss),  # with MS mining (the default)
    "ms (no mining)": partial(lv.ms_loss, mining=False),
    "contrastive": partial(lv.contrastive_loss, lam=0.5),
    "triplet (all)": partial(lv.triplet_loss, margin=0.1),
    "triplet (semihard)": partial(lv.triplet_loss, margin=0.1, mining="semihard"),
    "binomial": partial(lv.binomial_deviance_loss),
    "lifted": partial(lv.lifted_structure_loss, lam=1.0),
    "nt_xent": partial(lv.nt_xent_loss, tau=0.07),
    "supcon": partial(lv.supcon_loss, tau=0.1),
}

#: lossviz margin losses: ``fn(cos, labels)`` on the cosines to ``CLASSES`` class weights (a learnt
#: ``CLASSES x D`` matrix, which gets its gradient too), ``lv.cosine_logits(x, W)``.
LOSSVIZ_PROXY = {
    "arcface": partial(lv.arcface_loss, s=64.0, m=math.radians(28.6)),
    "cosface": partial(lv.cosface_loss, s=64.0, m=0.35),
    "normface": partial(lv.margin_softmax_loss, kind="normface", s=20.0, m=0.0),
}

#: The block path for batches whose B x B matrices do not fit: ``lossviz.distributed.backward_in_blocks``
#: with 1024 anchors per block (memory ~ 1024 x B), in the scaling table.
BLOCK_ROWS = 1024
BLOCKED = ("ms", "supcon")


def _pml():
    from pytorch_metric_learning import distances, losses, miners

    cos = distances.CosineSimilarity
    return {
        # name: (loss, miner or None)
        "MultiSimilarityLoss + MultiSimilarityMiner": lambda: (
            losses.MultiSimilarityLoss(alpha=2, beta=50, base=0.5),
            miners.MultiSimilarityMiner(epsilon=0.1)),
        "MultiSimilarityLoss": lambda: (losses.MultiSimilarityLoss(alpha=2, beta=50, base=0.5), None),
        # On cosine similarities, relu(pos_margin - s) and relu(s - neg_margin) are lossviz's terms.
        "ContrastiveLoss": lambda: (
            losses.ContrastiveLoss(pos_margin=1.0, neg_margin=0.5, distance=cos()), None),
        "TripletMarginLoss": lambda: (losses.TripletMarginLoss(margin=0.1, distance=cos()), None),
        # pos_margin = lam, neg_margin = 0 on cosine similarities: the same values as lossviz.
        "GeneralizedLiftedStructureLoss": lambda: (
            losses.GeneralizedLiftedStructureLoss(pos_margin=1.0, neg_margin=0.0, distance=cos()), None),
        "LiftedStructureLoss": lambda: (losses.LiftedStructureLoss(), None),
        "NTXentLoss": lambda: (losses.NTXentLoss(temperature=0.07), None),
        "SupConLoss": lambda: (losses.SupConLoss(temperature=0.1), None),
        # margin in degrees (28.6 = 0.5 rad), scale 64; temperature 0.05 = scale 20
        "ArcFaceLoss": lambda: (losses.ArcFaceLoss(CLASSES, 1, margin=28.6, scale=64), None),
        "CosFaceLoss": lambda: (losses.CosFaceLoss(CLASSES, 1, margin=0.35, scale=64), None),
        "NormalizedSoftmaxLoss": lambda: (losses.NormalizedSoftmaxLoss(CLASSES, 1, temperature=0.05), None),
    }

#: PML losses that hold their own class weights (built for D = 1 above, re-made for the batch's D).
PML_PROXY = {"ArcFaceLoss", "CosFaceLoss", "NormalizedSoftmaxLoss"}


@dataclass(frozen=True)
class Pairing:
    lossviz: str | None  # key of LOSSVIZ, or None (no lossviz loss yet)
    pml: str | None  # key of _pml(), or None (no PML equivalent)
    note: str = ""


PAIRINGS = [
    Pairing("ms", "MultiSimilarityLoss + MultiSimilarityMiner",
            "same values (PML returns 0 when every mined index list has <= 1 entry)"),
    Pairing("ms (no mining)", "MultiSimilarityLoss", "same values"),
    Pairing("contrastive", "ContrastiveLoss",
            "equivalent work, not equal values: PML on cosine similarity with pos_margin 1, "
            "neg_margin 0.5 has lossviz's per-pair terms, but averages over non-zero pairs "
            "(lossviz: sum per anchor, mean over anchors)"),
    Pairing("triplet (all)", "TripletMarginLoss",
            "equivalent work: every triplet; PML lists all B^3 candidate triplets, lossviz sorts "
            "each anchor's positives (O(B^2)); PML averages over non-zero triplets"),
    Pairing("triplet (semihard)", None, "no PML equivalent (TripletMarginMiner keeps every "
            "semihard triplet, lossviz one negative per positive pair)"),
    Pairing("binomial", None, "no PML equivalent"),
    Pairing("lifted", "GeneralizedLiftedStructureLoss", "same values"),
    Pairing("lifted", "LiftedStructureLoss",
            "PML's pair-list form (one term per positive pair, squared hinge), a tensor of "
            "positive pairs x negative pairs"),
    Pairing("nt_xent", "NTXentLoss", "same values (tau 0.07); PML forms a positive pairs x "
            "negative pairs tensor, lossviz one B x B soft-max"),
    Pairing("supcon", "SupConLoss", "same values (tau 0.1)"),
    Pairing("arcface", "ArcFaceLoss", f"same values (m 0.5 rad = 28.6 deg, s 64), {CLASSES} classes; "
            "the class weights get their gradient too"),
    Pairing("cosface", "CosFaceLoss", f"same values (m 0.35, s 64), {CLASSES} classes"),
    Pairing("normface", "NormalizedSoftmaxLoss", f"same values (s 20 = 1 / temperature 0.05), {CLASSES} classes"),
]

def _pml_bytes(name: str, B: int, K: int) -> int:
    """Rough size of the largest intermediates of the PML losses whose memory grows faster than B^2
    (measured peaks: ~1 byte per triplet for TripletMarginLoss, 16-21 bytes per (positive pair,
    negative pair) for NTXentLoss and LiftedStructureLoss); 0 for the others."""
    n_pos, n_neg = B * (K - 1), B * (B - K)
    if name == "TripletMarginLoss":
        return B**3  # uint8 (anchor, positive, negative) indicator before torch.where
    if name in ("LiftedStructureLoss", "NTXentLoss"):
        return 16 * n_pos * n_neg  # float32 positive pairs x negative pairs, several of them
    return 0


# ------------------------------------------------------------------------------------------------
# Measuring
# ------------------------------------------------------------------------------------------------

def machine(device: torch.device, threads: int) -> dict:
    """What the numbers came from."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "device": device.type,
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "threads": threads,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    try:
        import pytorch_metric_learning

        info["pytorch_metric_learning"] = pytorch_metric_learning.__version__
    except ImportError:
        info["pytorch_metric_learning"] = None
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def make_batch(B: int, D: int, K: int, device, seed: int = 0, latent: int = 32, noise: float = 0.75):
    """A P x K batch (labels in a shuffled order) of embeddings that look half-way trained.

    Class centres plus noise in a ``latent``-dimensional space, mapped into D dimensions by a
    random orthonormal map, so that the similarities do not depend on D: positives at cosine ~0.6,
    negatives spread around 0 (std ~0.18), and MS mining (eps 0.1) keeps pairs for 50-80% of the
    anchors and ~2% of the negative pairs.  (Isotropic noise in D dimensions would concentrate
    the negatives near 0 as D grows, until mining keeps nothing and PML's miner short-cuts.)"""
    g = torch.Generator().manual_seed(seed)
    latent = min(latent, D)
    labels = torch.arange(B // K).repeat_interleave(K)[torch.randperm(B, generator=g)]
    z = torch.randn(B // K, latent, generator=g)[labels] + noise * torch.randn(B, latent, generator=g)
    to_d = torch.linalg.qr(torch.randn(D, latent, generator=g)).Q.T  # latent x D, orthonormal rows
    return (z @ to_d).to(device), labels.to(device)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Case:
    """One thing to time: a forward + backward step, run with lossviz's value checks on or off."""

    step: Callable[[], None]
    checks: bool = False
    profile: bool = True
    repeats: int = 0
    times: list = field(default_factory=list)
    result: dict = field(default_factory=dict)

    def call(self, device) -> float:
        with lv.validation(self.checks):
            _sync(device)
            t = time.perf_counter()
            self.step()
            _sync(device)
            return time.perf_counter() - t


def measure_all(cases: list[Case], device, repeats: int, warmup: int, budget_s: float) -> None:
    """Time every case, round-robin: the same background load falls on all of them.

    Per case: one profiled call (warm-up, peak memory, op count; the profiler's overhead is not
    timed), then up to ``warmup`` timed warm-up calls.  A case slower than ``budget_s / repeats``
    gets fewer repeats (at least 3), so that one slow baseline does not hold up the whole grid; the
    JSON records how many it got.  Then ``repeats`` rounds in which each case still due runs once,
    starting from a different case each round; the median is reported.  The garbage collector is
    off while timing."""
    for case in cases:
        if case.profile:
            with lv.validation(case.checks):
                p = profile_run(case.step, device)
            case.result.update(peak_mib=p.peak_bytes / MiB, aten_ops=p.aten_ops)
        else:
            case.call(device)
        first = math.inf
        for _ in range(max(warmup, 1)):
            first = min(first, case.call(device))
            if first * repeats > budget_s:
                break
        case.repeats = repeats if first * repeats <= budget_s else max(3, min(repeats, int(budget_s / first)))
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for r in range(max(c.repeats for c in cases)):
            k = r % len(cases)
            for case in cases[k:] + cases[:k]:
                if r < case.repeats:
                    case.times.append(case.call(device))
    finally:
        if gc_was_enabled:
            gc.enable()
    for case in cases:
        case.result.update(time_ms=1e3 * statistics.median(case.times), time_ms_min=1e3 * min(case.times),
                           repeats=case.repeats)


def _backward(make_loss: Callable[[], torch.Tensor], x: torch.Tensor, grad=None, *others) -> Callable[[], None]:
    def step():
        make_loss().backward(grad)
        for t in (x, *others):
            t.grad = None  # dropped at the end, so that a profiled step starts from the same state
    return step


def make_weights(D: int, device, classes: int = CLASSES, seed: int = 1) -> torch.Tensor:
    """``classes x D`` class weights for the margin losses (random directions); at least
    ``CLASSES``, more when a batch holds more classes (B / K > CLASSES)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(max(classes, CLASSES), D, generator=g).to(device)


def _lossviz_step(name: str, x: torch.Tensor, labels: torch.Tensor, W: torch.Tensor,
                  rows: int | None = None) -> Callable[[], None]:
    """Forward + backward of one lossviz loss from the embeddings (and the class weights)."""
    if name in LOSSVIZ_PROXY:
        fn = LOSSVIZ_PROXY[name]
        return _backward(lambda: fn(lv.cosine_logits(x, W), labels), x, None, W)
    if name.endswith(" (blocks)"):
        base = name[: -len(" (blocks)")]
        from lossviz import distributed

        def step():
            distributed.backward_in_blocks(LOSSVIZ[base], x, labels, rows=BLOCK_ROWS if rows is None else rows)
            x.grad = None
        return step
    fn = LOSSVIZ[name]
    return _backward(lambda: fn(lv.similarity(x), labels), x)


def run_config(B: int, D: int, K: int, args, pml: dict | None, log=print) -> dict:
    """Every loss of the pairings on one (B, D, K) batch."""
    device = torch.device(args.device)
    x0, labels = make_batch(B, D, K, device)
    x = x0.clone().requires_grad_(True)
    grad_S = torch.ones(B, B, device=device)

    def floor():
        f = F.normalize(x, dim=1)
        return f @ f.T

    W0 = make_weights(D, device, B // K)
    W = W0.clone().requires_grad_(True)
    cases = {("floor", None): Case(_backward(floor, x, grad_S))}
    for name in dict.fromkeys(p.lossviz for p in PAIRINGS if p.lossviz):
        step = _lossviz_step(name, x, labels, W)
        cases[("lossviz", name)] = Case(step, checks=False)
        cases[("lossviz-checks", name)] = Case(step, checks=True, profile=False)
    skipped = {}
    for name in dict.fromkeys(p.pml for p in PAIRINGS if p.pml):
        if pml is None:
            skipped[name] = "pytorch-metric-learning is not installed"
            continue
        need = _pml_bytes(name, B, K)
        if need > args.pml_max_gib * 2**30:
            skipped[name] = (f"not run: needs ~{need / 2**30:.1f} GiB of intermediates "
                             f"(> --pml-max-gib {args.pml_max_gib:g})")
            continue
        loss_mod, miner = pml[name]()
        if name in PML_PROXY:  # the same class weights as lossviz's (PML keeps them D x classes)
            loss_mod.W = torch.nn.Parameter(W0.T.clone())
        loss_mod, miner = loss_mod.to(device), miner.to(device) if miner is not None else None
        if miner is None:
            make = lambda loss_mod=loss_mod: loss_mod(x, labels)  # noqa: E731
        else:
            make = lambda loss_mod=loss_mod, miner=miner: loss_mod(x, labels, miner(x, labels))  # noqa: E731
        cases[("pml", name)] = Case(_backward(make, x))

    measure_all(list(cases.values()), device, args.repeats, args.warmup, args.budget)

    with torch.no_grad():  # what the batch looks like to MS mining (eps 0.1)
        pos, neg = lv.pair_masks(labels)
        mined_pos, mined_neg = lv.ms_mining(lv.similarity(x0), labels)
        batch = {"active_anchors": mined_pos.any(dim=1).float().mean().item(),
                 "mined_pos": (mined_pos.sum() / pos.sum()).item(),
                 "mined_neg": (mined_neg.sum() / neg.sum()).item()}
    out = {"B": B, "D": D, "K": K, "batch": batch, "floor": cases[("floor", None)].result,
           "lossviz": {}, "pml": {}}
    for (kind, name), case in cases.items():
        if kind == "lossviz":
            on = cases[("lossviz-checks", name)].result
            out["lossviz"][name] = dict(case.result, time_ms_checks_on=on["time_ms"],
                                        time_ms_min_checks_on=on["time_ms_min"],
                                        repeats_checks_on=on["repeats"])
        elif kind == "pml":
            out["pml"][name] = case.result
    for name, why in skipped.items():
        out["pml"][name] = {"time_ms": None, "repeats": 0, "peak_mib": None, "aten_ops": None,
                            "skipped": why}

    fl = out["floor"]["time_ms"]
    log(f"B={B:5d} D={D:4d} K={K}  floor {fl:8.3f} ms")
    for p in PAIRINGS:
        a = out["lossviz"].get(p.lossviz) if p.lossviz else None
        b = out["pml"].get(p.pml) if p.pml else None
        left = (f"{p.lossviz:>20s} {a['time_ms']:8.3f} ms ({a['time_ms'] / fl:5.1f}x floor, "
                f"checks on {a['time_ms_checks_on']:8.3f})" if a else f"{'-':>20s} {'':>46s}")
        if b and b.get("time_ms") is not None:
            right = f"{p.pml} {b['time_ms']:9.3f} ms"
            if a:
                right += f"  lossviz/PML {a['time_ms'] / b['time_ms']:5.2f}"
        else:
            right = f"{p.pml or 'no PML equivalent'}" + (" (skipped)" if b else "")
        log(f"    {left}   {right}")
    return out


def run_scaling(args, log=print) -> dict:
    """Time and peak memory of every lossviz loss (and of the block path) as B grows, D and K fixed:
    the B x B matrices make memory grow as B^2, the block path keeps it near ``block_rows x B``."""
    device = torch.device(args.device)
    D, K = args.scaling_dim, args.scaling_k
    names = [*LOSSVIZ, *LOSSVIZ_PROXY, *(f"{n} (blocks)" for n in BLOCKED)]
    rows = []
    for B in args.scaling_sizes:
        x0, labels = make_batch(B, D, K, device)
        x = x0.clone().requires_grad_(True)
        W = make_weights(D, device, B // K).requires_grad_(True)
        grad_S = torch.ones(B, B, device=device)

        def floor():
            f = F.normalize(x, dim=1)
            return f @ f.T

        cases = {"floor": Case(_backward(floor, x, grad_S))}
        for name in names:
            cases[name] = Case(_lossviz_step(name, x, labels, W, args.block_rows))
        measure_all(list(cases.values()), device, args.scaling_repeats, 1, args.budget)
        row = {"B": B, "floor": cases["floor"].result,
               "lossviz": {name: cases[name].result for name in names}}
        rows.append(row)
        log(f"scaling B={B:5d}  " + "  ".join(f"{n} {c.result['time_ms']:.3g} ms {c.result['peak_mib']:.3g} MiB"
                                             for n, c in cases.items()))
        del cases, x, W, grad_S
        gc.collect()
    return {"D": D, "K": K, "block_rows": args.block_rows, "repeats": args.scaling_repeats, "rows": rows}


def ratios(config: dict) -> list[dict]:
    """The pairing rows of one configuration: lossviz (checks off) / floor and / PML."""
    rows = []
    fl = config["floor"]
    for p in PAIRINGS:
        a = config["lossviz"].get(p.lossviz) if p.lossviz else None
        b = config["pml"].get(p.pml) if p.pml else None
        b_time = b.get("time_ms") if b else None
        row = {"lossviz": p.lossviz, "pml": p.pml, "note": p.note,
               "lossviz_ms": a["time_ms"] if a else None,
               "pml_ms": b_time,
               "lossviz_over_floor": a["time_ms"] / fl["time_ms"] if a else None,
               "pml_over_floor": b_time / fl["time_ms"] if b_time else None,
               "lossviz_over_pml": a["time_ms"] / b_time if a and b_time else None,
               "lossviz_peak_mib": a["peak_mib"] if a else None,
               "pml_peak_mib": b.get("peak_mib") if b else None,
               "memory_lossviz_over_pml": (a["peak_mib"] / b["peak_mib"]
                                           if a and b and b.get("peak_mib") else None),
               "lossviz_aten_ops": a["aten_ops"] if a else None,
               "pml_aten_ops": b.get("aten_ops") if b else None}
        rows.append(row)
    return rows


# ------------------------------------------------------------------------------------------------
# Reporting
# ------------------------------------------------------------------------------------------------

def _f(v, fmt="{:.2f}", none="n/a"):
    return none if v is None or (isinstance(v, float) and math.isnan(v)) else fmt.format(v)


def _ms(v):
    """A time or a size: 3 significant digits, no exponent."""
    if v is None:
        return "n/a"
    return f"{v:.3g}" if v < 100 else f"{v:.0f}"


def _x(v):
    """A ratio."""
    if v is None:
        return "n/a"
    return f"{v:.2f}x" if v >= 0.1 else f"{v:.2g}x"


def markdown(result: dict) -> str:
    """The README tables: time and ratios per (D, K); then peak memory and aten op counts."""
    meta, configs, repeats = result["machine"], result["configs"], result["args"]["repeats"]
    where = meta.get("gpu") or meta["cpu"]
    threads = f"{meta['threads']} thread{'s' if meta['threads'] != 1 else ''}"
    lines = [
        (f"Measured on {where} ({meta['device']}, {threads}), torch {meta['torch']}, "
         f"pytorch-metric-learning {meta['pytorch_metric_learning']}, {meta['date'][:10]}: "
         f"forward + backward from the embeddings, median of {repeats} runs (* fewer: a slow "
         "baseline), lossviz with its value checks off. Each cell: time · lossviz / floor · "
         "lossviz / PML (PML / floor where lossviz has no such loss). Floor: normalise + x x^T."),
        "",
    ]
    dims = sorted({c["D"] for c in configs})
    ks = sorted({c["K"] for c in configs})
    bs = sorted({c["B"] for c in configs})
    by = {(c["B"], c["D"], c["K"]): c for c in configs}

    def few(m):
        return "*" if m and m.get("time_ms") is not None and m["repeats"] < repeats else ""

    for D in dims:
        for K in ks:
            cols = [B for B in bs if (B, D, K) in by]
            if not cols:
                continue
            lines += [f"**D = {D}, K = {K}** (P = B / {K} classes of K samples)", "",
                      "| lossviz | pytorch-metric-learning | " + " | ".join(f"B = {B}" for B in cols) + " |",
                      "|---|---|" + "---|" * len(cols),
                      "| floor | | " + " | ".join(f"{_ms(by[(B, D, K)]['floor']['time_ms'])} ms"
                                               for B in cols) + " |"]
            for i, p in enumerate(PAIRINGS):
                cells = []
                for B in cols:
                    c = by[(B, D, K)]
                    r = ratios(c)[i]
                    a = c["lossviz"][p.lossviz] if p.lossviz else None
                    b = c["pml"].get(p.pml) if p.pml else None
                    if b and b.get("skipped"):
                        pml = "PML skipped"
                    else:
                        pml = _x(r["lossviz_over_pml"]) + few(b)
                    if a:
                        cell = f"{_ms(a['time_ms'])} ms{few(a)} · {r['lossviz_over_floor']:.1f}x · {pml}"
                    elif b and b.get("time_ms") is not None:
                        cell = f"PML {_ms(b['time_ms'])} ms{few(b)} · {r['pml_over_floor']:.1f}x"
                    else:
                        cell = "skipped"
                    cells.append(cell)
                lines.append(f"| {p.lossviz or 'n/a'} | {p.pml or 'n/a'} | " + " | ".join(cells) + " |")
            kept = ", ".join(f"{100 * by[(B, D, K)]['batch']['active_anchors']:.0f}%" for B in cols)
            lines += ["", f"MS mining keeps pairs for {kept} of the anchors.", ""]

    B_mem, B_ops, D0 = bs[-1], bs[0], dims[0]
    mem_ks = [K for K in ks if (B_mem, D0, K) in by]
    lines += [(f"**Peak tensor memory** (MiB, B = {B_mem}, D = {D0}: lossviz / PML) and **aten ops** "
               f"(forward + backward, top-level, B = {B_ops}, D = {D0}, K = {ks[0]}: lossviz / PML)"), "",
              "| lossviz | pytorch-metric-learning | " + " | ".join(f"MiB, K = {K}" for K in mem_ks)
              + " | aten ops |",
              "|---|---|" + "---|" * (len(mem_ks) + 1)]
    for i, p in enumerate(PAIRINGS):
        cells = []
        for K in mem_ks:
            r = ratios(by[(B_mem, D0, K)])[i]
            b = by[(B_mem, D0, K)]["pml"].get(p.pml) if p.pml else None
            pml = "skipped" if b and b.get("skipped") else _ms(r["pml_peak_mib"])
            ratio = r["memory_lossviz_over_pml"]
            cells.append(f"{_ms(r['lossviz_peak_mib'])} / {pml}" + (f" ({_x(ratio)})" if ratio is not None else ""))
        c = by.get((B_ops, D0, ks[0]))
        r = ratios(c)[i] if c else {}
        cells.append(f"{_f(r.get('lossviz_aten_ops'), '{}')} / {_f(r.get('pml_aten_ops'), '{}')}")
        lines.append(f"| {p.lossviz or 'n/a'} | {p.pml or 'n/a'} | " + " | ".join(cells) + " |")
    floor_mem = [_ms(by[(B_mem, D0, K)]["floor"]["peak_mib"]) for K in mem_ks]
    floor_ops = by[(B_ops, D0, ks[0])]["floor"]["aten_ops"] if (B_ops, D0, ks[0]) in by else "n/a"
    lines.append("| floor | | " + " | ".join(floor_mem) + f" | {floor_ops} |")

    notes = [f"* {p.lossviz or '(none)'} / {p.pml or '(none)'}: {p.note}" for p in PAIRINGS if p.note]
    skipped = sorted({f"{name} at B = {c['B']}, K = {c['K']}: {m['skipped']}"
                      for c in configs for name, m in c["pml"].items() if m.get("skipped")})
    lines += ["", "Notes:", ""] + notes + [f"* {s}" for s in skipped]
    lines += ["", *markdown_ms(result)]
    if result.get("scaling"):
        lines += ["", *markdown_scaling(result)]
    return "\n".join(lines)


def markdown_ms(result: dict) -> list[str]:
    """``ms`` (with mining) against MultiSimilarityLoss + Miner at every (D, K, B): time and peak
    memory, each as lossviz / PML."""
    configs = result["configs"]
    bs = sorted({c["B"] for c in configs})
    lines = ["**ms_loss (with mining) / MultiSimilarityLoss + MultiSimilarityMiner**, time and peak "
             "memory at every benchmark size", "",
             "| D | K | " + " | ".join(f"B = {B}" for B in bs) + " |", "|---|---|" + "---|" * len(bs)]
    for D, K in sorted({(c["D"], c["K"]) for c in configs}):
        cells = []
        for B in bs:
            c = next((c for c in configs if (c["B"], c["D"], c["K"]) == (B, D, K)), None)
            row = next((r for r in ratios(c) if r["lossviz"] == "ms" and r["pml"]), None) if c else None
            cells.append("n/a" if row is None else
                         f"{_x(row['lossviz_over_pml'])} time · {_x(row['memory_lossviz_over_pml'])} memory")
        lines.append(f"| {D} | {K} | " + " | ".join(cells) + " |")
    return lines


def markdown_scaling(result: dict) -> list[str]:
    """The scaling table: time and peak memory of every lossviz loss as B grows."""
    sc = result["scaling"]
    rows = sc["rows"]
    bs = [r["B"] for r in rows]
    names = list(rows[0]["lossviz"])
    lines = [(f"**Scaling** (D = {sc['D']}, K = {sc['K']}, median of {sc['repeats']} runs): time · peak tensor "
              f"memory, forward + backward from the embeddings. \"(blocks)\" is "
              f"`lossviz.distributed.backward_in_blocks` with {sc['block_rows']} anchors per block, whose "
              f"memory grows as {sc['block_rows']} x B instead of B²."), "",
             "| lossviz | " + " | ".join(f"B = {B}" for B in bs) + " |", "|---|" + "---|" * len(bs)]

    def cell(m):
        return f"{_ms(m['time_ms'])} ms · {_ms(m['peak_mib'])} MiB"

    lines.append("| floor | " + " | ".join(cell(r["floor"]) for r in rows) + " |")
    for name in names:
        lines.append(f"| {name} | " + " | ".join(cell(r["lossviz"][name]) for r in rows) + " |")
    return lines


# ------------------------------------------------------------------------------------------------
# Command line
# ------------------------------------------------------------------------------------------------

def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--repeats", type=int, help="timed runs per measurement, median (default 20)")
    p.add_argument("--warmup", type=int, help="timed warm-up runs, not counted (default 3)")
    p.add_argument("--batch-sizes", type=_ints, help="comma-separated B (default 64,256,1024)")
    p.add_argument("--dims", type=_ints, help="comma-separated embedding dims D (default 128,512)")
    p.add_argument("--ks", type=_ints, help="comma-separated samples per class K (default 4,8)")
    p.add_argument("--budget", type=float, default=6.0,
                   help="seconds of timed runs per measurement before its repeats are cut (min 3)")
    p.add_argument("--pml-max-gib", type=float, default=1.5,
                   help="skip a PML loss whose B^3 or pair x pair intermediates would need more")
    p.add_argument("--scaling-sizes", type=_ints,
                   help="comma-separated B of the scaling table (default 64,128,...,8192; empty: none)")
    p.add_argument("--scaling-dim", type=int, default=128, help="D of the scaling table (default 128)")
    p.add_argument("--scaling-k", type=int, default=4, help="K of the scaling table (default 4)")
    p.add_argument("--scaling-repeats", type=int, help="timed runs per scaling measurement (default 5)")
    p.add_argument("--block-rows", type=int, help=f"anchors per block of the block path (default {BLOCK_ROWS})")
    p.add_argument("--no-scaling", action="store_true", help="skip the scaling table")
    p.add_argument("--quick", action="store_true",
                   help="a small grid for a smoke test (B 16,32, D 8, K 4, 2 repeats, 1 warm-up)")
    p.add_argument("--json", type=Path, default=None,
                   help="where to write the results (default bench/results/losses-<device>.json)")
    p.add_argument("--markdown", action="store_true", help="print the README tables at the end")
    args = p.parse_args(argv)
    defaults = (dict(batch_sizes=[16, 32], dims=[8], ks=[4], repeats=2, warmup=1, scaling_sizes=[16, 32],
                     scaling_repeats=2, block_rows=8) if args.quick else
                dict(batch_sizes=[64, 256, 1024], dims=[128, 512], ks=[4, 8], repeats=20, warmup=3,
                     scaling_sizes=[64 * 2**i for i in range(8)], scaling_repeats=5, block_rows=BLOCK_ROWS))
    for name, value in defaults.items():  # what is given on the command line wins, --quick or not
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.json is None:
        args.json = ROOT / "bench" / "results" / f"losses-{torch.device(args.device).type}.json"
    if args.quick and args.scaling_dim == 128:
        args.scaling_dim = 8
    if args.no_scaling:
        args.scaling_sizes = []
    for B in args.scaling_sizes:
        if B % args.scaling_k or args.scaling_k < 2:
            p.error(f"scaling batch size {B} is not a multiple of --scaling-k = {args.scaling_k} >= 2")
    for B in args.batch_sizes:
        for K in args.ks:
            if K < 2 or B % K:
                p.error(f"batch size {B} is not a multiple of K = {K} >= 2")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device available")
    old_threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        try:
            pml = _pml()
        except ImportError:
            pml = None
        configs = []
        for D in args.dims:
            for K in args.ks:
                for B in args.batch_sizes:
                    configs.append(run_config(B, D, K, args, pml))
        scaling = run_scaling(args) if args.scaling_sizes else None
    finally:
        torch.set_num_threads(old_threads)
    result = {
        "machine": machine(device, args.threads),
        "args": {"data": "make_batch(latent=32, noise=0.75)", "repeats": args.repeats, "warmup": args.warmup, "budget_s": args.budget,
                 "batch_sizes": args.batch_sizes, "dims": args.dims, "ks": args.ks,
                 "pml_max_gib": args.pml_max_gib, "quick": args.quick, "classes": CLASSES,
                 "scaling_sizes": args.scaling_sizes},
        "pairings": [{"lossviz": p.lossviz, "pml": p.pml, "note": p.note} for p in PAIRINGS],
        "configs": configs,
        "scaling": scaling,
        "ratios": [{"B": c["B"], "D": c["D"], "K": c["K"], "rows": ratios(c)} for c in configs],
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.json}")
    if args.markdown:
        print()
        print(markdown(result))
    return result


if __name__ == "__main__":
    main()
