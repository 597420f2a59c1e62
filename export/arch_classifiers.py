"""PyTorch definitions of the two Ptolemy classifiers (export and training only; never
imported by the runtime).

Both are parametrised by width so that smaller own models use the same code; at the
default sizes their state-dict keys and shapes equal the published checkpoints'
(``load_state_dict(..., strict=True)``), see docs/ALGORITHM.md#square-classifier, #hole-classifier.

Tensors are N×C×H×W ([row, col] spatial order); sizes in px.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class SquareClassifier(nn.Module):
    """Low-magnification square classifier (docs/ALGORITHM.md#square-classifier).

    Stage k (k = 1..len(kernels)): ``layer{k}`` conv (no bias, stride 1, no padding) → ReLU
    → ``bn{k}`` BatchNorm2d (eps 1e-5) → MaxPool(3, stride 2, padding 1).
    Head ``linear``: conv channels→1, head_kernel×head_kernel, with bias, no padding.

    Input N×1×240×240 float32 (240 px square crops at the published sizes).
    ``forward`` returns logits of shape N×1 (N×(h·w) if the head output is not 1×1).
    """

    family = "square_cnn"

    def __init__(self, channels: int = 64, kernels: Sequence[int] = (5, 5, 3, 3, 3), head_kernel: int = 6):
        super().__init__()
        self.channels = int(channels)
        self.kernels = tuple(int(k) for k in kernels)
        self.head_kernel = int(head_kernel)
        cin = 1
        for k, ks in enumerate(self.kernels, start=1):
            setattr(self, f"layer{k}", nn.Conv2d(cin, self.channels, ks, bias=False))
            setattr(self, f"bn{k}", nn.BatchNorm2d(self.channels))
            cin = self.channels
        self.linear = nn.Conv2d(self.channels, 1, self.head_kernel, bias=True)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)

    @property
    def n_stages(self) -> int:
        return len(self.kernels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for k in range(1, self.n_stages + 1):
            x = getattr(self, f"layer{k}")(x)
            x = torch.relu(x)
            x = getattr(self, f"bn{k}")(x)
            x = self.pool(x)
        x = self.linear(x)
        return x.flatten(1)


class HoleClassifier(nn.Module):
    """Medium-magnification hole classifier (docs/ALGORITHM.md#hole-classifier).

    Stage k (k = 0..n_stages-1): ``convs.k`` conv (no bias, no padding; 5×5 for the first,
    3×3 after) → ``bns.k`` BatchNorm2d (eps 1e-5) → ReLU → MaxPool(3, stride 2, padding 0).
    Then mean over both spatial axes → ``final`` Linear channels→1. With ``pooling``
    "centre" the mean is weighted by a Gaussian about the centre of the last feature map
    (`centre_weights`, standard deviation ``centre_sigma`` × the map's height / width), so
    the score comes mostly from the hole's inside rather than the film around it (a crop is
    one lattice cell centred on its hole).

    Input N×1×H×W float32, any H, W for which every stage has a non-empty output
    (≥ 63 px for four stages). ``forward`` returns logits of shape N×1.
    """

    family = "hole_cnn"

    def __init__(self, channels: int = 128, n_stages: int = 4, pooling: str = "mean", centre_sigma: float = 0.15):
        super().__init__()
        if pooling not in ("mean", "centre"):
            raise ValueError(f"pooling must be 'mean' or 'centre', got {pooling!r}")
        self.pooling, self.centre_sigma = pooling, float(centre_sigma)
        self.channels = int(channels)
        self.kernels = tuple([5] + [3] * (int(n_stages) - 1))
        cin = 1
        convs, bns = [], []
        for ks in self.kernels:
            convs.append(nn.Conv2d(cin, self.channels, ks, bias=False))
            bns.append(nn.BatchNorm2d(self.channels))
            cin = self.channels
        self.convs = nn.ModuleList(convs)
        self.bns = nn.ModuleList(bns)
        self.final = nn.Linear(self.channels, 1)
        self.pool = nn.MaxPool2d(3, stride=2, padding=0)

    @property
    def n_stages(self) -> int:
        return len(self.kernels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv, bn in zip(self.convs, self.bns):
            x = self.pool(torch.relu(bn(conv(x))))
        if self.pooling == "centre":
            w = centre_weights(x.shape[2], x.shape[3], self.centre_sigma, x.dtype)
            x = (x * w).sum(dim=(2, 3))
        else:
            x = x.mean(dim=(2, 3))
        return self.final(x)


def centre_weights(h: int, w: int, sigma: float, dtype=torch.float32) -> torch.Tensor:
    """h×w weights (sum 1) of a Gaussian about the map centre: cell (i, j) at
    u = (i + 0.5) / h − 0.5, v = (j + 0.5) / w − 0.5, weight ∝ exp(−(u² + v²) / (2 sigma²)).

    >>> w = centre_weights(3, 5, 0.15)
    >>> tuple(w.shape), round(float(w.sum()), 6), int(w.argmax()) == 7
    ((3, 5), 1.0, True)
    """
    u = (torch.arange(h, dtype=dtype) + 0.5) / h - 0.5
    v = (torch.arange(w, dtype=dtype) + 0.5) / w - 0.5
    g = torch.exp(-(u[:, None] ** 2 + v[None, :] ** 2) / (2.0 * sigma * sigma))
    return g / g.sum()


def min_hole_input(n_stages: int = 4) -> int:
    """Smallest H (or W) in px for which every stage of HoleClassifier has output ≥ 1 px."""
    size = 1
    kernels = [5] + [3] * (n_stages - 1)
    for ks in reversed(kernels):
        size = (size - 1) * 2 + 3  # pool input
        size = size + ks - 1  # conv input
    return size
