"""PyTorch definition of the Ptolemy hole-localiser U-Net (docs/ALGORITHM.md#hole-unet), parametrised.

Development side only (export/, training): the runtime never imports this.

Layout (arrays N×C×H×W, H = rows, W = cols, sizes in px):
- ``down_path.i.conv`` (i = 0..depth-1): conv 3×3, padding 1, bias, then ReLU.
  Block 0: 1→channels; others channels→channels. Outputs of blocks 0..depth-2 are kept as
  skips d0..d(depth-2) and each is max-pooled 2×2 (stride 2, floor) before the next block.
  The last block (bottleneck) is not pooled.
- ``up_path.j.conv`` (j = 0..depth-2): takes skip d(depth-2-j) (deepest first); the current
  tensor is upsampled with PyTorch legacy ``nearest`` to the skip's exact H×W
  (source index = floor(dst × in/out), float32 arithmetic), concatenated as
  [upsampled, skip] on channels, conv 3×3 padding 1 bias (2·channels→channels), ReLU.
- ``last``: conv 3×3, padding 1, bias, channels→1; output = logits (no activation).

At the defaults (channels=64, depth=9) the state-dict keys equal those of the published
checkpoint ``211026_unet_9x64_ep6.torchmodel`` (strict load).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

LAST_BIAS_INIT = -10.0  # training recipe (docs/ALGORITHM.md#training): bias of `last` starts at -10


class ConvBlock(nn.Module):
    """conv 3×3 (padding 1, bias) → ReLU; the conv is stored as ``.conv`` (checkpoint keys)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(x))


class UNet(nn.Module):
    """Ptolemy U-Net. Input N×1×H×W float32 (normalised image), output N×1×H×W logits.

    channels: feature width of every block (px-independent); depth: number of down blocks
    (depth-1 poolings, depth-1 up blocks), at least 3 so that the runtime's strip split
    (full and half resolution in strips, the rest whole) applies.
    """

    def __init__(self, channels: int = 64, depth: int = 9) -> None:
        super().__init__()
        if depth < 3:
            raise ValueError(f"UNet depth must be >= 3, got {depth}")
        self.channels = int(channels)
        self.depth = int(depth)
        c = self.channels
        self.down_path = nn.ModuleList(
            [ConvBlock(1 if i == 0 else c, c) for i in range(depth)])
        self.up_path = nn.ModuleList([ConvBlock(2 * c, c) for _ in range(depth - 1)])
        self.last = nn.Conv2d(c, 1, kernel_size=3, padding=1, bias=True)

    def init_last_bias(self, value: float = LAST_BIAS_INIT) -> None:
        """Set the bias of ``last`` (training recipe: -10, i.e. sigmoid ≈ 4.5e-5 at start)."""
        with torch.no_grad():
            self.last.bias.fill_(value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down_path):
            x = block(x)
            if i < self.depth - 1:
                skips.append(x)
                x = F.max_pool2d(x, 2)  # stride 2, floor
        for j, block in enumerate(self.up_path):
            skip = skips[-1 - j]
            x = F.interpolate(x, size=skip.shape[-2:], mode="nearest")  # legacy floor rule
            x = block(torch.cat([x, skip], dim=1))
        return self.last(x)


def load_published_unet(path) -> UNet:
    """Load the published checkpoint (a state_dict) strictly into UNet(64, 9), eval mode."""
    state = torch.load(path, map_location="cpu")
    model = UNet(64, 9)
    model.load_state_dict(state, strict=True)
    return model.eval()
