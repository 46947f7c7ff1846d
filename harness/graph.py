"""Graph propagation shared by the graph-based methods (``lightgcn``, ``mcl``).

The symmetric-normalized user-item adjacency ``D^-1/2 A D^-1/2`` over one table of users then
items, a product with it that autograd can differentiate (scipy on the CPU, ``torch.sparse`` on a
GPU), and the combination of propagation layers 0..K.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import sparse



def normalized_adjacency(users: np.ndarray, items: np.ndarray, n_users: int, n_items: int) -> sparse.csr_matrix:
    """``D^-1/2 A D^-1/2`` of the bipartite graph: nodes are users ``0..n_users-1``, then items."""
    pairs = sparse.csr_matrix((np.ones(len(users), np.float32), (users, items)), shape=(n_users, n_items))
    pairs.data[:] = 1.0  # a repeated interaction is one edge
    adjacency = sparse.bmat([[None, pairs], [pairs.T, None]], format="csr")
    degree = np.asarray(adjacency.sum(axis=1)).ravel()
    inv_sqrt = np.divide(1.0, np.sqrt(degree), out=np.zeros_like(degree), where=degree > 0)
    scale = sparse.diags(inv_sqrt.astype(np.float32))
    return (scale @ adjacency @ scale).tocsr().astype(np.float32)


def user_vectors(users: np.ndarray, items: np.ndarray, cold: np.ndarray, examples: Any) -> np.ndarray:
    """Each example's user vector; a user with no training interaction (``cold``) gets the mean of
    their history items' vectors instead."""
    vectors = users[examples.users]
    rows = np.flatnonzero(cold[examples.users])
    if len(rows):
        hist = examples.histories.take(rows)
        sums = np.zeros((len(rows), items.shape[1]), np.float32)
        np.add.at(sums, hist.row_ids(), items[hist.items])
        vectors = vectors.copy()
        vectors[rows] = sums / np.maximum(hist.lengths, 1)[:, None]
    return vectors


def propagate(graph, embedding, layers: int, combine: str = "mean"):
    """Layers 0..K of graph propagation, averaged (LightGCN's ``1/(K+1)``) or summed (MCL's code)."""
    total, current = embedding, embedding
    for _ in range(layers):
        current = graph(current)
        total = total + current
    return total / (layers + 1) if combine == "mean" else total


def graph_product(torch, adjacency: sparse.csr_matrix, device):
    """``x -> A x`` with autograd. ``A`` is symmetric, so the backward pass multiplies by ``A`` too."""
    if device.type != "cpu":
        coo = adjacency.tocoo()
        indices = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
        graph = torch.sparse_coo_tensor(indices, torch.from_numpy(coo.data), adjacency.shape).coalesce().to(device)
        return lambda x: torch.sparse.mm(graph, x)

    # scipy on CPU: deterministic, and about 3x faster per step than torch.sparse.mm on shared cores
    class Product(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return torch.from_numpy(adjacency @ x.detach().numpy())

        @staticmethod
        def backward(ctx, grad):
            return torch.from_numpy(adjacency @ grad.numpy())

    return Product.apply
