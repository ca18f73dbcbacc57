import torch

from batches import fit, make_batch
from sigmarec.models.pop import Pop, PopConfig


def test_pop_learns_the_training_frequency_order_and_ignores_the_sequence(one_thread):
    torch.manual_seed(0)
    seqs = [[1, 2, 2, 3, 3, 3], [3, 3, 2, 4], [4, 3, 3, 2, 3]]  # targets: 3 x7, 2 x4, 4 x1
    batch = make_batch(seqs, 6)
    model = Pop(PopConfig(), n_items=5, max_len=6)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    fit(model, batch, 200, opt)
    scores = model.score_all(batch.inputs[:2]).detach()
    assert torch.equal(scores[0], scores[1])  # the same list for everyone
    assert scores[0, 1:].argsort(descending=True)[:3].tolist() == [2, 1, 3]  # items 3, 2, 4
    freq = torch.tensor([0, 4, 7, 1, 0], dtype=torch.float) / 12  # items 1..5: 1 and 5 never targets
    probs = torch.softmax(scores[0, 1:], dim=0)
    assert torch.allclose(probs[1:4], freq[1:4], atol=0.03)
