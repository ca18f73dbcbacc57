"""BERT4Rec (Sun et al., CIKM 2019): a bidirectional Transformer trained by cloze (masked item) prediction.

Training (Section 3.6): each window's items (its inputs plus its newest target) have each real position replaced
by the ``[mask]`` token with probability ``mask_prob``; the encoder sees the whole masked sequence in both
directions, and every masked position predicts its original item (full-softmax CE over all items by default).
A row where no position was drawn gets its newest item masked, the case inference asks for.
Inference (Section 3.6): ``[mask]`` is appended after the history and its output scores every item, so the model
never sees the item it predicts. Output layer (Eq. 7): ``GELU(h W + b)`` (then LayerNorm, as in the authors'
code), a dot product with the shared item embeddings plus a per-item bias, folded into one extra dimension of
both vectors so scoring stays a plain dot product (evaluator, export, retrieval).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from sigmarec.config import check
from sigmarec.data.batching import Batch
from sigmarec.models.base import SPLIT_POINT_TRAINING, ModelConfig, SequentialRecommender
from sigmarec.models.layers.init import init_weights
from sigmarec.models.layers.losses import NextItemLoss, next_item_loss
from sigmarec.models.layers.transformer import CausalEncoder


@dataclass
class BERT4RecConfig(ModelConfig):
    hidden_size: int = 64  # paper: 64
    n_layers: int = 2  # paper: 2
    n_heads: int = 2  # paper: 2
    dropout: float = 0.1  # paper: 0.1
    attn_dropout: float = 0.1
    mask_prob: float = 0.2  # rho, the cloze masking proportion. Paper: 0.6 on the sparse Beauty and Steam, 0.2 on the
    # denser MovieLens sets; the code default is the paper's general one, the Amazon presets use 0.4 (chosen on validation)
    loss: NextItemLoss = "ce"  # ce = full softmax over all items at the masked positions (library default) | bce | sampled
    n_negatives: int = 100  # for loss=sampled
    init_std: float = 0.02  # truncated normal, as BERT

    def __post_init__(self) -> None:
        super().__post_init__()
        check("model.mask_prob", 0.0 < self.mask_prob <= 1.0, "a probability in (0, 1]", self.mask_prob)


class BERT4Rec(SequentialRecommender):
    """See the module docstring. Item ids 1..N, 0 = padding, N + 1 = ``[mask]``."""

    config_class = BERT4RecConfig
    # a window yields about mask_prob of its positions as targets per epoch (SASRec: all of them), so it needs the
    # long schedule of the models that learn from few targets per window
    train_defaults = SPLIT_POINT_TRAINING

    def __init__(self, cfg: BERT4RecConfig, n_items: int, max_len: int) -> None:
        super().__init__(cfg, n_items, max_len)
        d = cfg.hidden_size
        self.mask_id = n_items + 1
        self.item = nn.Embedding(n_items + 2, d, padding_idx=0)
        self.encoder = CausalEncoder(d, max_len, cfg.n_layers, cfg.n_heads, cfg.dropout, cfg.attn_dropout, causal=False)
        self.head = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.LayerNorm(d))
        self.item_bias = nn.Parameter(torch.zeros(n_items + 1))
        init_weights(self, cfg.init_std)
        with torch.no_grad():
            self.item.weight[0].zero_()

    def encode(self, seq: torch.Tensor) -> torch.Tensor:
        """Bidirectional hidden states ``[B, L, d]`` of a left-padded sequence that may hold ``[mask]`` tokens."""
        return self.encoder(self.item(seq) * self.cfg.hidden_size**0.5, seq)

    def _output(self, h: torch.Tensor) -> torch.Tensor:
        """``[..., d + 1]``: the output layer's vector and a 1 that meets the item bias (Eq. 7)."""
        out = self.head(h)
        return torch.cat([out, out.new_ones(*out.shape[:-1], 1)], dim=-1)

    def cloze_sequence(self, batch: Batch) -> torch.Tensor:
        """A window's items: its inputs followed by its newest target, left-padded, at most ``max_len`` wide."""
        last = batch.targets[:, -1:]
        seq = torch.cat([batch.inputs, last], dim=1)
        if bool((last == 0).any()):  # a row without a final target: keep its inputs, padded on the left
            seq = torch.where(last > 0, seq, torch.cat([torch.zeros_like(last), batch.inputs], dim=1))
        return seq[:, -self.max_len:]

    def loss(self, batch: Batch) -> torch.Tensor:
        seq = self.cloze_sequence(batch)
        real = seq > 0
        masked = (torch.rand(seq.shape, device=seq.device) < self.cfg.mask_prob) & real
        none = ~masked.any(dim=1) & real[:, -1]
        masked[:, -1] |= none  # rows with nothing drawn predict their newest item
        h = self.encode(torch.where(masked, torch.full_like(seq, self.mask_id), seq))
        return next_item_loss(self._output(h[masked]), seq[masked], self.item_embeddings(), self.cfg.loss, self.cfg.n_negatives)

    def user_representation(self, inputs: torch.Tensor) -> torch.Tensor:
        mask = torch.full_like(inputs[:, :1], self.mask_id)
        seq = torch.cat([inputs, mask], dim=1)[:, -self.max_len:]
        return self._output(self.encode(seq)[:, -1])

    def item_embeddings(self) -> torch.Tensor:
        """``[N + 1, d + 1]``: the shared item embeddings (without ``[mask]``) and each item's output bias."""
        return torch.cat([self.item.weight[: self.n_items + 1], self.item_bias.unsqueeze(-1)], dim=-1)
