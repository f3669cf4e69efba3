"""Cross-view and temporal attention at the encoder's lowest resolution.

Surround cameras overlap only with their neighbours, so each camera's tokens attend to the
tokens of itself and its adjacent cameras (Semi-SMD's spatial fusion, SurroundDepth's
cross-view transformer restricted to the rig graph). Neighbours come from a fixed index table
built once from the rig adjacency, so the attention is one batched gather + one attention call
with static shapes (exportable); cameras with fewer neighbours are padded and masked.
The temporal block attends from the current tokens of a camera to its previous frame's tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def neighbour_table(
    adjacency: torch.Tensor, n_views: int, include_self: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Index table (N, M) of each camera's neighbours and its validity mask (N, M).

    `adjacency` is (E, 2) camera index pairs; attention goes both ways. Rows are padded with the
    camera's own index and masked out, M being the largest neighbourhood.
    """
    pairs = torch.as_tensor(adjacency, dtype=torch.long).reshape(-1, 2).tolist()
    neighbours: list[list[int]] = [[i] if include_self else [] for i in range(n_views)]
    for i, j in pairs:
        if not (0 <= i < n_views and 0 <= j < n_views) or i == j:
            raise ValueError(f"adjacency pair ({i}, {j}) is not two different camera indices in [0, {n_views})")
        for a, b in ((i, j), (j, i)):
            if b not in neighbours[a]:
                neighbours[a].append(b)
    lonely = [i for i, n in enumerate(neighbours) if not n]
    if lonely:
        raise ValueError(f"cameras {lonely} have no neighbour in the adjacency and cannot attend without include_self")
    width = max(len(n) for n in neighbours)
    table = torch.tensor([n + [i] * (width - len(n)) for i, n in enumerate(neighbours)], dtype=torch.long)
    mask = torch.tensor([[k < len(n) for k in range(width)] for n in neighbours], dtype=torch.bool)
    return table, mask


def ring_adjacency(n_views: int) -> torch.Tensor:
    """Pairs (i, i+1 mod N): the adjacency of cameras listed in order around the vehicle."""
    if n_views < 2:
        return torch.zeros((0, 2), dtype=torch.long)
    pairs = sorted({tuple(sorted((i, (i + 1) % n_views))) for i in range(n_views)})
    return torch.tensor(pairs, dtype=torch.long)


class AttentionBlock(nn.Module):
    """Pre-norm multi-head attention from query tokens to key tokens, then an MLP; both residual."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 2.0) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, dim)
        self.to_kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, query: torch.Tensor, keys: torch.Tensor, key_bias: torch.Tensor | None = None) -> torch.Tensor:
        """query (S, Lq, C), keys (S, Lk, C), key_bias additive (S or 1, 1, 1, Lk) (-inf masks a key)."""
        s, lq, c = query.shape
        q = self.to_q(self.norm_q(query)).reshape(s, lq, self.heads, c // self.heads).transpose(1, 2)
        k, v = (
            self.to_kv(self.norm_kv(keys))
            .reshape(s, -1, 2, self.heads, c // self.heads)
            .permute(2, 0, 3, 1, 4)
            .unbind(0)
        )
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=key_bias)
        x = query + self.proj(attended.transpose(1, 2).reshape(s, lq, c))
        return x + self.mlp(x)


def _tokens(x: torch.Tensor) -> torch.Tensor:
    """(S, C, h, w) -> (S, h*w, C)."""
    return x.flatten(2).transpose(1, 2)


class CrossViewAttention(nn.Module):
    """Each camera's low-resolution tokens attend to its own and its neighbours' tokens.

    Tokens carry a learned embedding of their camera (index in the rig) and a convolutional
    position encoding (a depthwise 3x3 conv, valid for any feature size).
    """

    def __init__(self, dim: int, heads: int, max_cameras: int) -> None:
        super().__init__()
        self.camera_embedding = nn.Parameter(torch.randn(max_cameras, dim) * 0.02)
        self.position = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.block = AttentionBlock(dim, heads)

    def forward(self, features: torch.Tensor, table: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """features (B, N, C, h, w); table/mask (N, M) from `neighbour_table` -> same shape as features."""
        b, n, c, h, w = features.shape
        x = features.flatten(0, 1)
        tokens = _tokens(x + self.position(x)).reshape(b, n, h * w, c) + self.camera_embedding[:n, None, :]
        keys = tokens[:, table].reshape(b * n, -1, c)  # (B*N, M*h*w, C)
        bias = torch.zeros(mask.shape, dtype=tokens.dtype, device=tokens.device).masked_fill(~mask, float("-inf"))
        bias = bias[:, :, None].expand(n, mask.shape[1], h * w).reshape(n, -1).repeat(b, 1)  # (B*N, M*h*w)
        out = self.block(tokens.reshape(b * n, h * w, c), keys, bias[:, None, None, :])
        return out.transpose(1, 2).reshape(b, n, c, h, w)


class TemporalAttention(nn.Module):
    """Each camera's tokens attend to the same camera's tokens of the previous frame."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.position = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.frame_embedding = nn.Parameter(torch.randn(2, dim) * 0.02)  # current, previous
        self.block = AttentionBlock(dim, heads)

    def forward(self, features: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        """features, previous (B, N, C, h, w) -> fused features of the same shape."""
        b, n, c, h, w = features.shape
        x, p = features.flatten(0, 1), previous.flatten(0, 1)
        query = _tokens(x + self.position(x)) + self.frame_embedding[0]
        keys = _tokens(p + self.position(p)) + self.frame_embedding[1]
        out = self.block(query, keys)
        return out.transpose(1, 2).reshape(b, n, c, h, w)
