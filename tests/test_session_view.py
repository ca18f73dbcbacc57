import torch

from batches import left_padded
from sigmarec.models.layers.sessions import normalise_starts, session_view


def naive_sessions(seq, starts):
    out = []
    for i, (item, s) in enumerate(zip(seq, starts)):
        if s or i == 0:
            out.append([])
        out[-1].append(item)
    return out


def test_session_view_matches_a_naive_split_and_maps_back():
    g = torch.Generator().manual_seed(0)
    seqs = [[1, 2, 3, 4, 5, 6], [7], [8, 9, 10, 11], [], [12, 13, 14, 15, 16, 17, 18]]
    width = 9
    inputs = left_padded(seqs, width)
    starts = torch.rand(inputs.shape, generator=g) < 0.35
    view = session_view(inputs, starts)
    for b, seq in enumerate(seqs):
        flags = starts[b, width - len(seq):].tolist()
        expect = naive_sessions(seq, flags) if seq else []
        assert view.n_sessions[b] == len(expect)
        for s, items in enumerate(expect):
            assert view.lengths[b, s] == len(items)
            assert view.items[b, s, : len(items)].tolist() == items
            assert (view.items[b, s, len(items):] == 0).all()
        assert (view.items[b, len(expect):] == 0).all() and (view.lengths[b, len(expect):] == 0).all()
    # every position maps to its own item, padding to -1 / 0
    assert torch.equal(view.to_flat(view.items[..., None])[..., 0], inputs)
    assert ((view.session < 0) == (inputs == 0)).all()
    # a window that begins mid-session starts a session at its first real item
    assert normalise_starts(inputs, torch.zeros_like(starts))[0].tolist() == [False] * 3 + [True] + [False] * 5
    # no session information: one session per row
    one = session_view(inputs, None)
    assert one.n_sessions.tolist() == [1, 1, 1, 0, 1]
