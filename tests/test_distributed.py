"""Cross-rank pair losses: two CPU processes (gloo, loopback) equal one process on the whole batch,
for the pair losses and the InfoNCE family, with uneven positive counts and a rank without positives."""

import datetime
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import lossviz as lv
from lossviz import distributed
from lossviz.contrastive import CONTRASTIVE_LOSSES

LOSSES = {**lv.PAIR_LOSSES, **CONTRASTIVE_LOSSES}

CASES = [
    ("ms", {}), ("ms", dict(mining=False, beta=40.0)), ("contrastive", {}), ("triplet", {}),
    ("triplet", dict(mining="semihard")), ("binomial", {}), ("lifted", {}),
    ("nt_xent", {}), ("nt_xent", dict(tau=0.5)), ("supcon", {}), ("hard_nt_xent", dict(frac=0.5)),
    ("simple_contrastive", {}),
]

#: Two halves (ranks) with different numbers of positive pairs: 40 | 8 (the batch of issue 13).
UNEVEN = [0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4, 5, 6, 7, 0, 1]
#: The second half's anchors have no positive at all; the whole batch has.
HALF_WITHOUT = [0, 0, 0, 0, 0, 1, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9]


def _batch():
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(24, 6, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 5, (24,), generator=g)
    labels[:5] = torch.arange(5)
    labels[5:10] = torch.arange(5)  # every class has a positive somewhere
    return emb, labels


def _batch_of(labels, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(len(labels), 6, generator=g, dtype=torch.float64), torch.tensor(labels)


BATCHES = {"random": _batch, "uneven": lambda: _batch_of(UNEVEN), "half_without": lambda: _batch_of(HALF_WITHOUT)}


def _worker(rank, world, port, out_dir):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=60))   # a hung collective fails, not waits
    try:
        torch.set_num_threads(1)
        out = {}
        for batch, make in BATCHES.items():
            emb, labels = make()
            n = emb.shape[0] // world
            for name, knobs in CASES:
                local = emb[rank * n:(rank + 1) * n].clone().requires_grad_(True)
                share = distributed.pair_loss(LOSSES[name], local, labels[rank * n:(rank + 1) * n], **knobs)
                share.backward()
                out[(batch, name, tuple(sorted(knobs.items())))] = (float(distributed.total(share)), local.grad.clone())
        # No label twice in the whole batch: every rank refuses it, and both stay connected.
        emb, labels = _batch_of(list(range(16)))
        try:
            distributed.pair_loss(lv.nt_xent_loss, emb[rank * 8:(rank + 1) * 8], labels[rank * 8:(rank + 1) * 8])
            out["no_positive"] = None
        except ValueError as err:
            alive = torch.ones(1)
            dist.all_reduce(alive)
            out["no_positive"] = (str(err), float(alive))
        torch.save(out, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("ranks")
    ctx = mp.get_context("spawn")
    port = _free_port()
    procs = [ctx.Process(target=_worker, args=(r, 2, port, str(out_dir))) for r in range(2)]
    for p in procs:
        p.start()
    try:
        for p in procs:
            p.join(timeout=300)
            assert p.exitcode == 0, f"rank process exited with {p.exitcode}"
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
    return {r: torch.load(out_dir / f"rank{r}.pt") for r in range(2)}


@pytest.mark.parametrize("batch", sorted(BATCHES))
@pytest.mark.parametrize("name, knobs", CASES)
def test_two_processes_equal_one_process(two_ranks, batch, name, knobs):
    emb, labels = BATCHES[batch]()
    emb = emb.clone().requires_grad_(True)
    loss = LOSSES[name](lv.similarity(emb), labels, **knobs)
    loss.backward()
    key = (batch, name, tuple(sorted(knobs.items())))
    n = emb.shape[0] // 2
    for rank in (0, 1):
        total, grad = two_ranks[rank][key]
        assert abs(total - float(loss.detach())) < 1e-10
        assert torch.allclose(grad, emb.grad[rank * n:(rank + 1) * n], atol=1e-10, rtol=0)


def test_a_global_batch_without_positives_is_refused_on_every_rank(two_ranks):
    for rank in (0, 1):
        message, alive = two_ranks[rank]["no_positive"]
        assert "no positive pair" in message and "all ranks" in message
        assert alive == 2.0   # both ranks reached the all-reduce after the error: none was left hanging


def test_single_process_falls_back_to_the_plain_loss():
    emb, labels = _batch()
    for name, knobs in CASES:
        plain = LOSSES[name](lv.similarity(emb), labels, **knobs)
        assert torch.allclose(distributed.pair_loss(LOSSES[name], emb, labels, **knobs), plain, atol=1e-12, rtol=0)


def test_each_loss_declares_what_its_mean_is_over():
    assert {name: distributed.reduction(fn) for name, fn in LOSSES.items()} == {
        "ms": "anchors", "contrastive": "anchors", "triplet": "anchors", "binomial": "anchors",
        "lifted": "anchors", "nt_xent": "positive_pairs", "hard_nt_xent": "positive_pairs",
        "simple_contrastive": "positive_pairs", "supcon": "anchors_with_positive"}
    assert distributed.reduction(lambda S, labels, anchors=None: S.sum()) == "anchors"


def test_counts_of_each_half():
    labels = torch.tensor(UNEVEN)
    halves = torch.arange(8), torch.arange(8, 16)
    # First half: six anchors of class 0 with 6 positives each, two of class 1 with 2; second: 6 + 2.
    assert [distributed.counts(lv.nt_xent_loss, labels, a).tolist() for a in halves] == [[40, 40], [8, 8]]
    assert [distributed.counts(lv.supcon_loss, labels, a).tolist() for a in halves] == [[8, 40], [2, 8]]
    assert [distributed.counts(lv.ms_loss, labels, a).tolist() for a in halves] == [[8, 40], [8, 8]]


@pytest.mark.parametrize("labels", [UNEVEN, HALF_WITHOUT], ids=["uneven", "half_without"])
@pytest.mark.parametrize("edges", [(0, 8, 16), (0, 3, 11, 16)], ids=["halves", "uneven_blocks"])
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_shares_of_blocks_sum_to_the_whole_loss(name, edges, labels):
    emb, labels = _batch_of(labels)
    S = lv.similarity(emb).detach().requires_grad_(True)
    fn = LOSSES[name]
    full = fn(S, labels)
    (g_full,) = torch.autograd.grad(full, S)
    blocks = [torch.arange(a, b) for a, b in zip(edges[:-1], edges[1:])]
    global_counts = sum(distributed.counts(fn, labels, a) for a in blocks)
    total = sum(distributed.share(fn, S[a], labels, a, global_counts) for a in blocks)
    (g,) = torch.autograd.grad(total, S)
    assert abs(total.item() - full.item()) < 1e-12
    assert torch.allclose(g, g_full, atol=1e-12, rtol=0)
    assert full.item() > 0 and g_full.abs().sum() > 0


def test_a_block_without_terms_is_zero_without_calling_the_loss():
    emb, labels = _batch_of(HALF_WITHOUT)
    S = lv.similarity(emb).requires_grad_(True)
    calls = []

    def spy(*args, **kwargs):
        calls.append(1)
        return lv.nt_xent_loss(*args, **kwargs)

    spy.reduction = "positive_pairs"
    block = torch.arange(8, 16)
    part = distributed.share(spy, S[block], labels, block, torch.tensor([34, 34]))
    assert calls == [] and part.item() == 0.0
    part.backward()                 # still attached to S: a rank without terms runs backward too
    assert S.grad is not None and float(S.grad.abs().sum()) == 0.0


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_a_whole_batch_without_positives_is_refused(name):
    emb, labels = _batch_of(list(range(16)))
    S = lv.similarity(emb)
    block = torch.arange(8)
    global_counts = distributed.counts(LOSSES[name], labels, torch.arange(16))
    assert int(global_counts[1]) == 0
    with pytest.raises(ValueError, match="no positive pair"):
        distributed.share(LOSSES[name], S[block], labels, block, global_counts)
    with pytest.raises(ValueError, match="no positive pair"):
        distributed.pair_loss(LOSSES[name], emb, labels)
    with lv.validation(False):      # value checks off: the plain loss's value, 0 for the InfoNCE family
        blocks = torch.arange(8), torch.arange(8, 16)
        total = sum(distributed.share(LOSSES[name], S[a], labels, a, global_counts) for a in blocks)
        assert torch.allclose(total, LOSSES[name](S, labels), atol=1e-12, rtol=0)


def test_a_bad_reduction_is_refused():
    def loss(S, labels, anchors=None):
        return S.sum()

    loss.reduction = "pairs"
    with pytest.raises(ValueError, match="loss.reduction must be one of"):
        distributed.pair_loss(loss, *_batch())


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_a_block_of_anchors_equals_those_rows_of_the_full_loss(name):
    emb, labels = _batch()
    S = lv.similarity(emb)
    fn = LOSSES[name]
    full = fn(S, labels)
    blocks = [torch.arange(i, i + 8) for i in (0, 8, 16)]
    global_counts = sum(distributed.counts(fn, labels, a) for a in blocks)
    assert torch.allclose(sum(distributed.share(fn, S[a], labels, a, global_counts) for a in blocks), full, atol=1e-12)


def test_bad_anchors_are_refused():
    emb, labels = _batch()
    S = lv.similarity(emb)
    with pytest.raises(ValueError, match="anchors"):
        lv.ms_loss(S[:4], labels, anchors=torch.arange(3))
    with pytest.raises(ValueError, match="anchors"):
        lv.ms_loss(S[:4], labels, anchors=torch.tensor([0, 1, 2, 99]))
    with pytest.raises(ValueError, match="square"):
        lv.ms_loss(S[:4], labels)
    with pytest.raises(ValueError, match="anchors"):
        distributed.share(lv.nt_xent_loss, S[:4], labels, torch.tensor([0, 1, 2, 99]), torch.tensor([4, 4]))


@pytest.mark.parametrize("name, knobs", CASES)
@pytest.mark.parametrize("rows", [1, 7, 24, 100])
def test_backward_in_blocks_equals_the_loss_on_the_whole_batch(name, knobs, rows):
    """Blocks of anchors (a block size that does not divide B, one row, the whole batch): the same
    value and the same gradient, into the embeddings and through what made them."""
    emb, labels = _batch()
    w = torch.randn(6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(3), requires_grad=True)
    loss = LOSSES[name](lv.similarity(emb @ w), labels, **knobs)
    want = torch.autograd.grad(loss, w)[0]
    value = distributed.backward_in_blocks(LOSSES[name], emb @ w, labels, rows=rows, **knobs)
    torch.testing.assert_close(value, loss.detach(), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(w.grad, want, rtol=1e-8, atol=1e-10)


def test_backward_in_blocks_without_gradient_and_its_errors():
    emb, labels = _batch()
    value = distributed.backward_in_blocks(lv.ms_loss, emb, labels, rows=5)
    torch.testing.assert_close(value, lv.ms_loss(lv.similarity(emb), labels), rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="rows must be a positive int"):
        distributed.backward_in_blocks(lv.ms_loss, emb, labels, rows=0)
    with pytest.raises(ValueError, match="no positive pair"):
        distributed.backward_in_blocks(lv.ms_loss, emb, torch.arange(24), rows=5)
