"""Order Matters (lossviz.papers.order_matters): the pointer log-likelihood and the order-search loss
against loops written from the formulas (values and gradients), the process block against a
hand-written LSTM, permutation invariance, the writer's two code paths, panels and bad input."""

import itertools
import math

import pytest
import torch

from lossviz.papers import order_matters as O

pytestmark = pytest.mark.usefixtures("one_thread")


def loop_log_likelihood(logits, target):
    """log p(Y_pi | X) = sum_j log( e^{u^j_{pi_j}} / sum_i e^{u^j_i} ), one example and one step at a time."""
    out = []
    for b in range(logits.shape[0]):
        total = 0.0
        for j in range(logits.shape[1]):
            den = sum(torch.exp(logits[b, j, i]) for i in range(logits.shape[2]) if logits[b, j, i] > -math.inf)
            total = total + torch.log(torch.exp(logits[b, j, target[b, j]]) / den)
        out.append(total)
    return torch.stack(out)


@pytest.mark.parametrize("masked", [False, True])
def test_pointer_log_likelihood_matches_the_loop(masked):
    g = torch.Generator().manual_seed(0)
    B, J, N = 4, 3, 5
    logits = torch.randn(B, J, N, generator=g, dtype=torch.float64)
    target = torch.stack([torch.randperm(N, generator=g)[:J] for _ in range(B)])
    if masked:                                      # a masking writer: earlier choices are -inf
        for b in range(B):
            for j in range(J):
                logits[b, j, target[b, :j]] = -math.inf
    a, b_ = logits.clone().requires_grad_(True), logits.clone().requires_grad_(True)
    ours, ref = O.pointer_log_likelihood(a, target), loop_log_likelihood(b_, target)
    assert torch.allclose(ours, ref, atol=1e-12)
    ours.sum().backward()
    ref.sum().backward()
    finite = logits > -math.inf
    assert torch.allclose(a.grad[finite], b_.grad[finite], atol=1e-12)
    assert bool((a.grad[~finite] == 0).all())
    assert torch.allclose(O.pointer_nll(logits, target), -ref.detach().mean(), atol=1e-12)


def test_order_search_loss_and_weights_against_closed_forms():
    g = torch.Generator().manual_seed(1)
    logp = -torch.rand(5, 6, generator=g, dtype=torch.float64) * 4
    idx = torch.tensor([0, 3, 5, 1, 1])
    fixed = sum(-logp[b, idx[b]] for b in range(5)) / 5
    best = sum(-max(logp[b].tolist()) for b in range(5)) / 5
    marginal = sum(-math.log(sum(math.exp(v) for v in logp[b].tolist())) for b in range(5)) / 5
    assert abs(float(O.order_search_loss(logp, "fixed", idx)) - float(fixed)) < 1e-12
    assert abs(float(O.order_search_loss(logp, "max")) - best) < 1e-12
    assert abs(float(O.order_search_loss(logp, "lse")) - marginal) < 1e-12
    # the weights each mode puts on the orders (General Pair Weighting over orders)
    w_fix, w_max, w_lse = (O.order_weights(logp, m, idx if m == "fixed" else None) for m in ("fixed", "max", "lse"))
    assert torch.equal(w_fix, torch.nn.functional.one_hot(idx, 6).double())
    assert torch.equal(w_max, torch.nn.functional.one_hot(logp.argmax(1), 6).double())
    assert torch.allclose(w_lse, torch.softmax(logp, 1), atol=1e-12)
    for w in (w_fix, w_max, w_lse):
        assert torch.allclose(w.sum(1), torch.ones(5, dtype=torch.float64))
    # lse -> max as one order dominates; lse <= every fixed order's loss
    assert float(O.order_search_loss(logp, "lse")) <= float(O.order_search_loss(logp, "max"))


def test_max_mode_training_step_has_the_gradient_of_the_max_loss():
    """Scoring the orders under no_grad and training on the best one = the gradient of -max_pi log p."""
    torch.manual_seed(0)
    model = O.ReadProcessWrite(11, 8, 2, mask=True).double()
    x, _, sets = O.topk_batch(6, 10, 3, torch.Generator().manual_seed(2))
    x = x.double()
    full = O.order_search_loss(O.order_log_likelihoods(model, x, sets), "max")
    g_full = torch.autograd.grad(full, list(model.parameters()), allow_unused=True)
    with torch.no_grad():
        best = O.order_log_likelihoods(model, x, sets).argmax(1)
    target = sets[torch.arange(6)[:, None], O.all_orders(3)[best]]
    chosen = O.pointer_nll(model(x, target)[0], target)
    g_chosen = torch.autograd.grad(chosen, list(model.parameters()), allow_unused=True)
    assert torch.allclose(full, chosen, atol=1e-12)
    for a, b in zip(g_full, g_chosen):
        assert (a is None and b is None) or torch.allclose(a, b, atol=1e-10)


def lstm_by_hand(cell, x, h, c):
    """An LSTM cell from its equations (gates i, f, g, o in PyTorch's layout)."""
    z = x @ cell.weight_ih.T + cell.bias_ih + h @ cell.weight_hh.T + cell.bias_hh
    i, f, g, o = z.chunk(4, dim=1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def test_process_block_matches_its_equations():
    torch.manual_seed(1)
    block = O.ProcessBlock(6, 3).double()
    m = torch.randn(4, 5, 6, dtype=torch.float64)
    q_star, attention = block(m)
    for b in range(4):
        qs = torch.zeros(1, 12, dtype=torch.float64)
        h = c = torch.zeros(1, 6, dtype=torch.float64)
        for t in range(3):
            h, c = lstm_by_hand(block.lstm, qs, h, c)
            e = torch.stack([m[b, i] @ h[0] for i in range(5)])
            a = torch.exp(e) / torch.exp(e).sum()
            r = sum(a[i] * m[b, i] for i in range(5))
            qs = torch.cat([h[0], r])[None]
            assert torch.allclose(attention[b, t], a, atol=1e-12)
        assert torch.allclose(q_star[b], qs[0], atol=1e-12)
    assert O.ProcessBlock(6, 0)(m)[0].abs().max() == 0          # P = 0: no summary at all


def test_read_process_write_is_permutation_invariant_and_the_lstm_reader_is_not():
    """A property of the architecture (any weights), not a measurement."""
    x, _ = O.sort_batch(64, 5, torch.Generator().manual_seed(3))
    for seed in (0, 1):
        torch.manual_seed(seed)
        assert O.encoder_shift(O.ReadProcessWrite(1, 16, 2), x) < 1e-5
        torch.manual_seed(seed)
        assert O.encoder_shift(O.ReadProcessWrite(1, 16, 2, encoder="lstm"), x) > 0.05


@pytest.mark.parametrize("mask,feed", [(False, True), (True, True), (False, False), (True, False)])
def test_teacher_forced_writer_equals_the_step_by_step_decoder(mask, feed):
    """The one-call teacher-forced writer and the greedy loop agree when fed the greedy choices."""
    torch.manual_seed(2)
    model = O.ReadProcessWrite(1, 12, 1, mask=mask, feed=feed).double()
    x = O.sort_batch(8, 6, torch.Generator().manual_seed(4))[0].double()
    greedy, _ = model(x)
    forced, _ = model(x, greedy.argmax(-1))
    assert torch.allclose(greedy, forced, atol=1e-12)
    if mask:                                        # a masked writer outputs a permutation
        out = greedy.argmax(-1)
        assert torch.equal(out.sort(1).values, torch.arange(6).expand(8, 6))


def test_orders_and_names():
    assert O.all_orders(3).tolist() == [list(p) for p in itertools.permutations(range(3))]
    assert O.order_names(2) == ["1 2", "2 1"]
    sets = torch.tensor([[4, 1, 7], [0, 9, 2]])               # largest first
    perms = O.all_orders(3)
    idx = O.index_order(sets)
    for b in range(2):
        assert sets[b, perms[idx[b]]].tolist() == sorted(sets[b].tolist())
    x, v, s = O.topk_batch(5, 10, 3, torch.Generator().manual_seed(0))
    assert x.shape == (5, 10, 11) and torch.equal(v.gather(1, s), v.sort(1, descending=True).values[:, :3])


def test_bad_input():
    logits, target = torch.randn(2, 3, 4), torch.tensor([[0, 1, 2], [3, 2, 1]])
    with pytest.raises(ValueError, match="integer element indices"):
        O.pointer_nll(logits, target.float())
    with pytest.raises(ValueError, match=r"shape \(2, 3\)"):
        O.pointer_nll(logits, target[:, :2])
    with pytest.raises(ValueError, match=r"in \[0, 4\)"):
        O.pointer_nll(logits, target + 1)
    with pytest.raises(ValueError, match="NaN or \\+Inf"):
        O.pointer_nll(logits * math.nan, target)
    with pytest.raises(ValueError, match="3 dimensions"):
        O.pointer_nll(logits[0], target)
    masked = logits.clone()
    masked[0, 0, 0] = -math.inf
    with pytest.raises(ValueError, match="masked element"):
        O.pointer_nll(masked, target)
    with pytest.raises(ValueError, match="unknown mode"):
        O.order_search_loss(-torch.rand(2, 6), "softmax")
    with pytest.raises(ValueError, match="needs index"):
        O.order_search_loss(-torch.rand(2, 6), "fixed")
    with pytest.raises(ValueError, match="<= 0"):
        O.order_search_loss(torch.rand(2, 6) + 0.1, "max")
    with pytest.raises(ValueError, match=r"in \[0, 6\)"):
        O.order_search_loss(-torch.rand(2, 6), "fixed", torch.tensor([0, 6]))
    with pytest.raises(ValueError, match="unknown encoder"):
        O.ReadProcessWrite(encoder="gru")
    with pytest.raises(ValueError, match="unknown mode"):
        O.train_topk("sorted")
    with pytest.raises(ValueError, match="P \\(process steps\\)"):
        O.train_sort(-1)
    with pytest.raises(ValueError, match="at least 2 seeds"):
        O.paired_runs([0])


def test_training_is_cached_learns_and_drives_the_order_panel():
    run = O.train_sort(1, steps=100, n=4, progress=False)
    assert O.train_sort(1, steps=100, n=4, progress=False) is run
    assert run.history["loss"][-10:].mean() < run.history["loss"][:10].mean() - 1
    assert list(run.evals["iter"]) == [0, 50, 100] and run.scores["accuracy"] > 0.1
    top = O.train_topk("max", steps=40, warmup=20, n_test=200, progress=False)
    assert [s for s, _ in top.snapshots] == [0, 20, 40] and 0 <= top.scores["desc_fraction"] <= 1
    assert top.history["loss"][-5:].mean() < top.history["loss"][:5].mean()
    # the pure-maths panel on its snapshots, driven without a browser
    panel = O.order_panel(top, n_examples=4, n_track=50)
    assert panel.controls["step"].value == 40
    panel.controls["mode"].value = "lse"
    w, lp = panel.state["weights"], panel.state["logp"]
    assert torch.allclose(w, torch.softmax(lp, 0), atol=1e-6)
    panel.controls["mode"].value = "random"
    assert torch.allclose(panel.state["weights"], torch.full((6,), 1 / 6))
    panel.controls["mode"].value = "desc"
    assert float(panel.state["weights"][0]) == 1.0
    panel.controls["mode"].value = "max"
    panel.controls["step"].value = 0
    assert float(panel.state["weights"][panel.state["best"]]) == 1.0
    assert len(panel.state["track"]) == 3
    with pytest.raises(ValueError, match="train_topk run"):
        O.order_panel(run)


def test_train_panels_without_a_browser():
    panel = O.sort_panel(autorun=False, n=4, steps=100)
    assert "press <b>Train</b>" in panel.status.value
    panel.controls["P"].value = 0
    result = panel.train()
    assert result.params["P"] == 0 and result.params["n"] == 4 and "P=0" in panel.status.value
    panel.controls["P"].value = 1
    assert panel.state["stale"]
    top = O.topk_panel(autorun=False, mode="desc", steps=100)
    top.controls["P"].value = 0
    r = top.train()
    assert r.params["mode"] == "desc" and r.params["P"] == 0 and "desc order" in top.status.value
