"""BERT4Rec: cloze training masks what it predicts, inference appends [mask] (never the target), attention is
bidirectional, the output bias folds into the dot product."""

from __future__ import annotations

import dataclasses

import torch

from sigmarec.models.bert4rec import BERT4Rec, BERT4RecConfig

from batches import left_padded, make_batch

N_ITEMS, MAX_LEN = 30, 8


def model(**kw) -> BERT4Rec:
    torch.manual_seed(0)
    cfg = dataclasses.replace(BERT4RecConfig(), hidden_size=16, n_layers=1, dropout=0.0, attn_dropout=0.0, **kw)
    return BERT4Rec(cfg, N_ITEMS, MAX_LEN)


def test_cloze_sequence_is_the_inputs_then_the_newest_target():
    m = model()
    batch = make_batch([[1, 2, 3, 4], [5, 6], list(range(1, 10))], MAX_LEN)
    seq = m.cloze_sequence(batch)
    assert seq.tolist() == [[0, 0, 0, 0, 1, 2, 3, 4], [0, 0, 0, 0, 0, 0, 5, 6], [2, 3, 4, 5, 6, 7, 8, 9]]


def test_training_feeds_mask_tokens_where_it_predicts_and_predicts_the_originals():
    m = model(mask_prob=0.4)
    batch = make_batch([[1, 2, 3, 4, 5, 6], [7, 8, 9], [10, 11]], MAX_LEN)
    seen = {}
    encode = m.encode
    m.encode = lambda seq: seen.setdefault("seq", seq) is not None and encode(seq)
    torch.manual_seed(3)
    m.loss(batch)
    fed, orig = seen["seq"], m.cloze_sequence(batch)
    masked = fed == m.mask_id
    assert masked.any(dim=1).all()  # every row predicts something
    assert (orig[masked] > 0).all()  # only real items are masked, never padding
    assert torch.equal(fed[~masked], orig[~masked])  # the rest is unchanged


def test_inference_appends_mask_and_never_sees_the_target():
    m = model().eval()
    seen = {}
    encode = m.encode
    m.encode = lambda seq: seen.setdefault("seq", seq) is not None and encode(seq)
    inputs = left_padded([[4, 5, 6], list(range(1, 9))], MAX_LEN)
    with torch.no_grad():
        m.user_representation(inputs)
    fed = seen["seq"]
    assert (fed[:, -1] == m.mask_id).all()
    assert fed[0].tolist() == [0, 0, 0, 0, 4, 5, 6, m.mask_id]
    assert fed[1].tolist() == [2, 3, 4, 5, 6, 7, 8, m.mask_id]  # the oldest item gives way to [mask]


def test_attention_is_bidirectional():
    m = model().eval()
    a, b = left_padded([[1, 2, 3, 4]], MAX_LEN), left_padded([[1, 2, 3, 9]], MAX_LEN)
    with torch.no_grad():
        ha, hb = m.encode(a), m.encode(b)
    assert not torch.allclose(ha[0, -4], hb[0, -4])  # the first item's state sees a later item


def test_scores_are_the_output_layer_times_items_plus_a_bias():
    m = model().eval()
    with torch.no_grad():
        m.item_bias.normal_()
        inputs = left_padded([[1, 2, 3], [7]], MAX_LEN)
        seq = torch.cat([inputs, torch.full_like(inputs[:, :1], m.mask_id)], 1)[:, -MAX_LEN:]
        out = m.head(m.encode(seq)[:, -1])
        expected = out @ m.item.weight[: N_ITEMS + 1].T + m.item_bias
        torch.testing.assert_close(m.score_all(inputs), expected)
