"""Cross-rank pair losses: two CPU processes (gloo, loopback) equal one process on the whole batch."""

import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import lossviz as lv
from lossviz import distributed

CASES = [
    ("ms", {}), ("ms", dict(mining=False, beta=40.0)), ("contrastive", {}), ("triplet", {}),
    ("triplet", dict(mining="semihard")), ("binomial", {}), ("lifted", {}),
]


def _batch():
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(24, 6, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 5, (24,), generator=g)
    labels[:5] = torch.arange(5)
    labels[5:10] = torch.arange(5)  # every class has a positive somewhere
    return emb, labels


def _worker(rank, world, port, out_dir):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        torch.set_num_threads(1)
        emb, labels = _batch()
        n = emb.shape[0] // world
        out = {}
        for name, knobs in CASES:
            local = emb[rank * n:(rank + 1) * n].clone().requires_grad_(True)
            share = distributed.pair_loss(lv.PAIR_LOSSES[name], local, labels[rank * n:(rank + 1) * n], **knobs)
            share.backward()
            out[(name, tuple(sorted(knobs.items())))] = (float(distributed.total(share)), local.grad.clone())
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
    for p in procs:
        p.join(timeout=300)
        assert p.exitcode == 0, f"rank process exited with {p.exitcode}"
    return {r: torch.load(out_dir / f"rank{r}.pt") for r in range(2)}


@pytest.mark.parametrize("name, knobs", CASES)
def test_two_processes_equal_one_process(two_ranks, name, knobs):
    emb, labels = _batch()
    emb = emb.clone().requires_grad_(True)
    loss = lv.PAIR_LOSSES[name](lv.similarity(emb), labels, **knobs)
    loss.backward()
    key = (name, tuple(sorted(knobs.items())))
    n = emb.shape[0] // 2
    for rank in (0, 1):
        total, grad = two_ranks[rank][key]
        assert abs(total - float(loss.detach())) < 1e-10
        assert torch.allclose(grad, emb.grad[rank * n:(rank + 1) * n], atol=1e-10, rtol=0)


def test_single_process_falls_back_to_the_plain_loss():
    emb, labels = _batch()
    assert torch.allclose(distributed.pair_loss(lv.ms_loss, emb, labels), lv.ms_loss(lv.similarity(emb), labels))


@pytest.mark.parametrize("name", sorted(lv.PAIR_LOSSES))
def test_a_block_of_anchors_equals_those_rows_of_the_full_loss(name):
    emb, labels = _batch()
    S = lv.similarity(emb)
    fn = lv.PAIR_LOSSES[name]
    full = fn(S, labels)
    blocks = [fn(S[i:i + 8], labels, anchors=torch.arange(i, i + 8)) * 8 / 24 for i in (0, 8, 16)]
    assert torch.allclose(sum(blocks), full, atol=1e-12)


def test_bad_anchors_are_refused():
    emb, labels = _batch()
    S = lv.similarity(emb)
    with pytest.raises(ValueError, match="anchors"):
        lv.ms_loss(S[:4], labels, anchors=torch.arange(3))
    with pytest.raises(ValueError, match="anchors"):
        lv.ms_loss(S[:4], labels, anchors=torch.tensor([0, 1, 2, 99]))
    with pytest.raises(ValueError, match="square"):
        lv.ms_loss(S[:4], labels)
