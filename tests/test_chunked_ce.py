"""The chunked full-softmax cross-entropy: the value and both gradients of F.cross_entropy over all items."""

import pytest
import torch
import torch.nn.functional as F

from sigmarec.models.layers.chunked_ce import chunked_cross_entropy
from sigmarec.models.layers.losses import next_item_loss


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
