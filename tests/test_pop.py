import numpy as np
import torch

from batches import fit, make_batch
from sigmarec.models.pop import Pop, PopConfig


def test_learned_pop_learns_the_training_frequency_order_and_ignores_the_sequence(one_thread):
    torch.manual_seed(0)
    seqs = [[1, 2, 2, 3, 3, 3], [3, 3, 2, 4], [4, 3, 3, 2, 3]]  # targets: 3 x7, 2 x4, 4 x1
    batch = make_batch(seqs, 6)
    model = Pop(PopConfig(scores="learned"), n_items=5, max_len=6)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    fit(model, batch, 200, opt)
    scores = model.score_all(batch.inputs[:2]).detach()
    assert torch.equal(scores[0], scores[1])  # the same list for everyone
    assert scores[0, 1:].argsort(descending=True)[:3].tolist() == [2, 1, 3]  # items 3, 2, 4
    freq = torch.tensor([0, 4, 7, 1, 0], dtype=torch.float) / 12  # items 1..5: 1 and 5 never targets
    probs = torch.softmax(scores[0, 1:], dim=0)
    assert torch.allclose(probs[1:4], freq[1:4], atol=0.03)


class _Split:
    """The one thing Pop reads from a split: the training targets (Split.train_targets, tested in test_protocols)."""

    def train_targets(self, last=0):
        return np.array([1, 3, 1, 2, 3, 3, 4, 3])  # 1 x2, 2 x1, 3 x4, 4 x1, 5 x0


class _Data:
    n_items = 5


def test_count_pop_ranks_by_training_targets_and_training_moves_no_item(one_thread):
    model = Pop.from_data(PopConfig(), _Data(), max_len=6, split=_Split())
    inputs = make_batch([[1, 2, 3], [5]], 6).inputs
    before = model.score_all(inputs).detach()
    torch.testing.assert_close(before[0], before[1])
    torch.testing.assert_close(before[0, 1:], torch.log1p(torch.tensor([2.0, 1.0, 4.0, 1.0, 0.0])))
    # training fits only the temperature: the item table has no gradient and the order stays
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["log_temperature"]
    torch.manual_seed(0)
    fit(model, make_batch([[1, 3, 3, 3], [2, 4, 3]], 6), 50, torch.optim.Adam(model.parameters(), lr=0.1))
    after = model.score_all(inputs).detach()
    assert float(model.log_temperature.detach()) != 0.0
    assert torch.equal(after[0, 1:].argsort(descending=True, stable=True), before[0, 1:].argsort(descending=True, stable=True))
    # the counts travel with the state dict, so a reloaded model ranks the same without its split
    fresh = Pop(PopConfig(), n_items=5, max_len=6)
    fresh.load_state_dict(model.state_dict())
    torch.testing.assert_close(fresh.score_all(inputs), model.score_all(inputs))
