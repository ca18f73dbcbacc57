"""The fused and the chunked full-softmax cross-entropy: the value and both gradients of F.cross_entropy over all
items."""

import math

import pytest
import torch
import torch.nn.functional as F

from sigmarec.models.layers.chunked_ce import chunked_cross_entropy
from sigmarec.models.layers.losses import next_item_loss
from sigmarec.models.layers.softmax_ce import softmax_cross_entropy


@pytest.mark.parametrize("chunk", [1, 7, 64, 1000])
def test_value_and_gradients_equal_the_materialised_cross_entropy(chunk):
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(13, 8, generator=g, requires_grad=True)
    items = torch.randn(50, 8, generator=g, requires_grad=True)
    targets = torch.randint(0, 50, (13,), generator=g)
    targets[:3] = 7  # repeated targets accumulate
    ref = F.cross_entropy(hidden @ items.T, targets)
    gh, gi = torch.autograd.grad(ref, (hidden, items))
    got = chunked_cross_entropy(hidden, items, targets, chunk)
    ch, ci = torch.autograd.grad(got, (hidden, items))
    torch.testing.assert_close(got, ref)
    torch.testing.assert_close(ch, gh)
    torch.testing.assert_close(ci, gi)


def test_gradcheck_in_float64():
    g = torch.Generator().manual_seed(1)
    hidden = torch.randn(5, 3, generator=g, dtype=torch.float64, requires_grad=True)
    items = torch.randn(11, 3, generator=g, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 11, (5,), generator=g)
    assert torch.autograd.gradcheck(lambda h, i: chunked_cross_entropy(h, i, targets, 4), (hidden, items))


def test_the_library_loss_matches_ce_through_a_padding_row_and_a_temperature():
    g = torch.Generator().manual_seed(2)
    hidden = torch.randn(9, 6, generator=g, requires_grad=True)
    table = torch.randn(21, 6, generator=g, requires_grad=True)  # row 0 = padding, never a candidate
    targets = torch.randint(1, 21, (9,), generator=g)
    a = next_item_loss(hidden, targets, table, "ce", temperature=0.5)
    b = next_item_loss(hidden, targets, table, "ce_chunked", temperature=0.5)
    torch.testing.assert_close(a, b)
    ga = torch.autograd.grad(a, (hidden, table))
    gb = torch.autograd.grad(b, (hidden, table))
    for x, y in zip(ga, gb):
        torch.testing.assert_close(x, y)
    assert gb[1][0].abs().sum() == 0  # the padding row gets no gradient
    with pytest.raises(ValueError, match="chunk"):
        chunked_cross_entropy(hidden, table, targets, 0)


def test_sampled_logq_is_a_cross_entropy_over_corrected_candidates():
    """Hand-built: targets [2, 2, 5] and uniform draws [5, 7] over N = 9 items; expected counts c_i + U / N."""
    from sigmarec.models.layers.losses import sampled_logq_loss

    g = torch.Generator().manual_seed(3)
    hidden = torch.randn(3, 4, generator=g, dtype=torch.float64)
    table = torch.randn(10, 4, generator=g, dtype=torch.float64)
    targets = torch.tensor([2, 2, 5])
    torch.manual_seed(11)
    uniform = torch.randint(1, 10, (2,))
    torch.manual_seed(11)
    got = sampled_logq_loss(hidden, targets, table, 2)
    cand = torch.cat([targets, uniform]).tolist()
    count = {2: 2.0, 5: 1.0}  # among the batch's targets
    expected = 0.0
    for r, target in enumerate(targets.tolist()):
        kept = [j for j, item in enumerate(cand) if j == r or item != target]  # accidental hits of the target dropped
        logits = torch.tensor([float(hidden[r] @ table[cand[j]]) - math.log(count.get(cand[j], 0.0) + 2 / 9) for j in kept],
                              dtype=torch.float64)
        expected += float(torch.logsumexp(logits, 0) - logits[kept.index(r)])
    assert float(got) == pytest.approx(expected / 3, rel=1e-6)  # the logits are taken to float32


def test_sampled_logq_trains_the_table_and_matches_its_name_in_next_item_loss():
    g = torch.Generator().manual_seed(4)
    hidden = torch.randn(6, 5, generator=g, requires_grad=True)
    table = torch.randn(30, 5, generator=g, requires_grad=True)
    targets = torch.tensor([1, 4, 4, 9, 20, 29])
    torch.manual_seed(0)
    value = next_item_loss(hidden, targets, table, "sampled_logq", n_negatives=8)
    value.backward()
    assert torch.isfinite(value) and table.grad[targets].abs().sum() > 0 and table.grad[0].abs().sum() == 0


def test_fused_ce_equals_f_cross_entropy_with_repeated_targets_and_gradcheck():
    g = torch.Generator().manual_seed(4)
    hidden = torch.randn(13, 8, generator=g, requires_grad=True)
    items = torch.randn(50, 8, generator=g, requires_grad=True)
    targets = torch.randint(0, 50, (13,), generator=g)
    targets[:3] = 7
    ref = F.cross_entropy(hidden @ items.T, targets)
    got = softmax_cross_entropy(hidden, items, targets)
    torch.testing.assert_close(got, ref)
    ref_grads = torch.autograd.grad(ref, (hidden, items))
    for x, y in zip(torch.autograd.grad(got, (hidden, items)), ref_grads):
        torch.testing.assert_close(x, y)
    h64, i64 = hidden.detach().double().requires_grad_(), items.detach().double().requires_grad_()
    assert torch.autograd.gradcheck(lambda h, i: softmax_cross_entropy(h, i, targets), (h64, i64))
    # only one input needing a gradient
    frozen = softmax_cross_entropy(hidden, items.detach(), targets)
    torch.testing.assert_close(torch.autograd.grad(frozen, hidden)[0], ref_grads[0])


def test_fused_ce_is_finite_where_the_target_probability_underflows():
    """A target logit 200 below the row's best: exp underflows to 0 in float32; the loss must be the exact 200-ish
    (from the logsumexp), not inf, and match F.cross_entropy."""
    hidden = torch.tensor([[1.0, 0.0], [0.5, 0.5]], requires_grad=True)
    items = torch.tensor([[200.0, 0.0], [0.0, 0.0], [-10.0, 3.0]], requires_grad=True)
    targets = torch.tensor([1, 2])
    got = softmax_cross_entropy(hidden, items, targets)
    ref = F.cross_entropy(hidden @ items.T, targets)
    assert torch.isfinite(got) and got.item() > 90
    torch.testing.assert_close(got, ref)
    for x, y in zip(torch.autograd.grad(got, (hidden, items)), torch.autograd.grad(ref, (hidden, items))):
        torch.testing.assert_close(x, y)


def test_fused_ce_under_autocast_keeps_input_dtypes():
    """Mixed precision (CPU autocast stands in for CUDA's): the matmuls run in bfloat16, the softmax in float32,
    and each gradient comes back in its input's dtype, close to the reference's."""
    g = torch.Generator().manual_seed(5)
    hidden = torch.randn(6, 8, generator=g, requires_grad=True)
    items = torch.randn(20, 8, generator=g, requires_grad=True)
    targets = torch.randint(0, 20, (6,), generator=g)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = softmax_cross_entropy(hidden, items, targets)
        ref = F.cross_entropy((hidden @ items.T).float(), targets)
    assert got.dtype == torch.float32
    gh, gi = torch.autograd.grad(got, (hidden, items))
    rh, ri = torch.autograd.grad(ref, (hidden, items))
    assert gh.dtype == gi.dtype == torch.float32
    torch.testing.assert_close(got, ref, atol=2e-2, rtol=2e-2)
    torch.testing.assert_close(gh, rh, atol=2e-2, rtol=2e-2)
    torch.testing.assert_close(gi, ri, atol=2e-2, rtol=2e-2)
