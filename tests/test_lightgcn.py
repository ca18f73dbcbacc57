"""LightGCN and BPR-MF: propagation against a dense reference, the graph holds training interactions only,
unknown users are folded in, and a trained run reloads to the same metrics."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from sigmarec.config import DataConfig, ProtocolConfig
from sigmarec.data.catalog import load_dataset
from sigmarec.data.protocols import make_split
from sigmarec.models.bprmf import BPRMF, BPRMFConfig
from sigmarec.models.lightgcn import LightGCN, LightGCNConfig, normalised_adjacency

from batches import left_padded


def test_propagation_matches_a_dense_reference():
    users, items = np.array([0, 0, 1, 2, 2, 2]), np.array([1, 2, 2, 1, 3, 4])
    n_users, n_items = 4, 5  # user 3 and item 5 have no interactions
    torch.manual_seed(0)
    model = LightGCN(dataclasses.replace(LightGCNConfig(), hidden_size=6, n_layers=3), n_items, 10, n_users=n_users,
                     interactions=(users, items))
    n = n_users + n_items + 1
    a = np.zeros((n, n))
    a[users, n_users + items] = a[n_users + items, users] = 1
    d = a.sum(1)
    inv = np.where(d > 0, np.maximum(d, 1) ** -0.5, 0.0)
    a_hat = torch.tensor(inv[:, None] * a * inv[None, :], dtype=torch.float32)
    torch.testing.assert_close(normalised_adjacency(users, items, n_users, n_items).to_dense(), a_hat)
    e = model.embedding.weight.detach()
    layers = [e]
    for _ in range(3):
        layers.append(a_hat @ layers[-1])
    expected = torch.stack(layers).mean(0)
    with torch.no_grad():
        torch.testing.assert_close(model.propagate(), expected, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(model.item_embeddings(), expected[n_users:])
        # user 3 is isolated: its final vector is its own embedding / (K + 1)
        torch.testing.assert_close(model.propagate()[3], e[3] / 4)


def test_the_graph_holds_training_interactions_only(tmp_path):
    data = load_dataset(DataConfig(dataset="synthetic", synthetic_users=60, cache_dir=str(tmp_path)))
    split = make_split(data, ProtocolConfig(), 20)
    model = LightGCN.from_data(LightGCNConfig(), data, 20, split=split)
    edges = model.adjacency.coalesce().indices().numpy()
    pairs = {(int(u), int(i) - data.n_users) for u, i in edges.T if u < data.n_users}
    for u in range(data.n_users):
        seq = data.sequence(u)
        assert {i for uu, i in pairs if uu == u} == set(seq[:-2].tolist())  # leave-one-out: the last two held out


def test_unknown_users_are_folded_in_from_their_history():
    torch.manual_seed(0)
    model = BPRMF(dataclasses.replace(BPRMFConfig(), hidden_size=8), 10, 6, n_users=3)
    inputs = left_padded([[1, 2], [3], [4, 5, 6]], 6)
    with torch.no_grad():
        rep = model.user_representation(inputs, users=torch.tensor([1, -1, 7]))
        torch.testing.assert_close(rep[0], model.user.weight[1])
        torch.testing.assert_close(rep[1], model.item.weight[3])
        torch.testing.assert_close(rep[2], model.item.weight[4:7].mean(0))
