import torch

from batches import make_batch
from sigmarec.models.layers.prefixes import random_prefixes, shift_right


def test_shift_right_pads_with_zero():
    x = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]])
    out = shift_right(x, torch.tensor([0, 2]))
    assert out.tolist() == [[1, 2, 3, 4], [0, 0, 5, 6]]


def test_random_prefixes_match_a_naive_split():
    seqs = [[1, 2, 3, 4, 5], [6, 7], [8, 9, 10, 11, 12, 13, 14]]
    batch = make_batch(seqs, 6)
    batch.targets[1] = 0  # a row with no target is dropped
    seen = set()
    g = torch.Generator().manual_seed(0)
    for _ in range(60):
        s = random_prefixes(batch.inputs, batch.targets, g)
        assert s.rows.tolist() == [0, 2]
        for r, row in enumerate(s.rows.tolist()):
            window = seqs[row][-7:]
            prefix = [i for i in s.prefix[r].tolist() if i]
            cut = len(prefix)
            assert prefix == window[:cut]
            assert s.next_item[r].item() == window[cut]
            future = [i for i in s.future[r].tolist() if i]
            assert future == window[cut:][::-1]
            assert s.future[r, -1].item() == window[cut]
            assert s.prefix[r, -1].item() != 0  # left-padded: newest item in the last column
            seen.add((row, cut))
    # every split point of every row is drawn (6 of row 2's window of 7, 4 of row 0)
    assert len(seen) == 4 + 6
