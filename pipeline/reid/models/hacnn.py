"""Harmonious Attention CNN (HA-CNN) for person re-identification.

After Li, Zhu and Gong, "Harmonious Attention Network for Person Re-identification",
CVPR 2018, written from the paper for this project. Input is a 160 x 64 RGB crop
(ImageNet mean/std normalised). One global stream of Inception blocks is modulated after
each of its three levels by a Harmonious Attention (HA) module:

* soft attention ``A = sigmoid(conv1x1(S * C))`` multiplies the level output, where S is a
  spatial map (channel mean -> 3x3 conv stride 2 -> upsample -> 1x1 conv) and C a
  squeeze-excite channel vector;
* hard attention regresses a translation (fixed scale) for each of T horizontal regions,
  initialised to T equal stripes; the regions are cut with ``affine_grid``/``grid_sample``.

A weight-shared, narrower local stream processes the T regions; at each level its input is
enhanced by the region cut from the global stream at that level (cross-attention
interaction). Global and local features are 512-d each; the embedding is the
L2-normalised concatenation of their L2-normalised values (1024-d).

Shapes (N images, T regions), default widths:
    stem [N,32,80,32] -> level1 [N,128,40,16] -> level2 [N,256,20,8] -> level3 [N,384,10,4]
    local regions: [N*T,32,20,32] -> [N*T,64,10,16] -> [N*T,128,5,8] -> [N*T,192,3,4]
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn


class ConvBNReLU(nn.Sequential):
    """Conv2d (no bias) -> BatchNorm -> ReLU."""

    def __init__(self, cin: int, cout: int, k: int = 1, s: int = 1, p: int = 0) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, k, s, p, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )


class InceptionA(nn.Module):
    """Resolution-keeping Inception block: four branches of ``cout // 4`` channels."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        m = cout // 4
        self.b1 = nn.Sequential(ConvBNReLU(cin, m), ConvBNReLU(m, m, 3, 1, 1))
        self.b2 = nn.Sequential(
            ConvBNReLU(cin, m), ConvBNReLU(m, m, 3, 1, 1), ConvBNReLU(m, m, 3, 1, 1)
        )
        self.b3 = nn.Sequential(nn.AvgPool2d(3, 1, 1), ConvBNReLU(cin, m))
        self.b4 = ConvBNReLU(cin, cout - 3 * m)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b1(x), self.b2(x), self.b3(x), self.b4(x)], 1)


class InceptionB(nn.Module):
    """Reduction Inception block (stride 2): two conv branches and a max-pool branch."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        m = cout // 4
        self.b1 = nn.Sequential(ConvBNReLU(cin, m), ConvBNReLU(m, m, 3, 2, 1))
        self.b2 = nn.Sequential(
            ConvBNReLU(cin, m), ConvBNReLU(m, m, 3, 1, 1), ConvBNReLU(m, m, 3, 2, 1)
        )
        self.b3 = nn.Sequential(nn.MaxPool2d(3, 2, 1), ConvBNReLU(cin, cout - 2 * m))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b1(x), self.b2(x), self.b3(x)], 1)


class HarmoniousAttention(nn.Module):
    """Soft (spatial x channel) and hard (regional) attention for one level.

    ``forward(x)`` returns (soft mask [N,C,H,W] in (0,1), translations [N,T,2] in (-1,1)
    as (tx, ty) in affine_grid's normalised coordinates).
    """

    def __init__(self, channels: int, num_regions: int, region_scale: float) -> None:
        super().__init__()
        self.spatial_down = ConvBNReLU(1, 1, 3, 2, 1)
        self.spatial_up = ConvBNReLU(1, 1)
        hidden = max(channels // 16, 4)
        self.channel = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, hidden, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1),
        )
        self.fuse = nn.Sequential(
            nn.Conv2d(channels, channels, 1, bias=False), nn.BatchNorm2d(channels)
        )
        self.num_regions = num_regions
        self.regressor = nn.Linear(channels, num_regions * 2)
        # Start from T equal horizontal stripes (tx = 0, ty = stripe centres): the regressor
        # only learns offsets from a sensible layout instead of from random crops.
        centres = [-1 + region_scale * (2 * i + 1) for i in range(num_regions)]
        bias = torch.tensor([[0.0, math.atanh(max(min(c, 0.999), -0.999))] for c in centres])
        nn.init.zeros_(self.regressor.weight)
        with torch.no_grad():
            self.regressor.bias.copy_(bias.flatten())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, w = x.shape[-2:]
        s = self.spatial_down(x.mean(1, keepdim=True))
        s = F.interpolate(s, size=(h, w), mode="bilinear", align_corners=False)
        s = self.spatial_up(s)
        c = self.channel(x)
        soft = torch.sigmoid(self.fuse(s * c))
        pooled = F.adaptive_avg_pool2d(x, 1).flatten(1)
        theta = torch.tanh(self.regressor(pooled)).view(-1, self.num_regions, 2)
        return soft, theta


class HACNN(nn.Module):
    """HA-CNN re-id model (see module docstring); ``forward`` returns embeddings.

    Args:
        num_regions: T, number of local regions (horizontal stripes at initialisation).
        widths: channels of the global stream after each of the three levels.
        local_widths: channels of the (shared) local stream at each level.
        feature_dim: size of the global and of the local feature (embedding is twice it).
        input_hw: input (height, width); must be divisible by 8 * num_regions in height.
    """

    name = "hacnn"
    mean = (0.485, 0.456, 0.406)
    std = (0.229, 0.224, 0.225)

    def __init__(
        self,
        *,
        num_regions: int = 4,
        widths: tuple[int, int, int] | list[int] = (128, 256, 384),
        local_widths: tuple[int, int, int] | list[int] = (64, 128, 192),
        feature_dim: int = 512,
        input_hw: tuple[int, int] | list[int] = (160, 64),
        stem_channels: int = 32,
    ) -> None:
        super().__init__()
        self.num_regions = num_regions
        self.widths = tuple(int(w) for w in widths)
        self.local_widths = tuple(int(w) for w in local_widths)
        self.feature_dim = feature_dim
        self.input_hw = (int(input_hw[0]), int(input_hw[1]))
        self.stem_channels = stem_channels
        self.embedding_dim = 2 * feature_dim
        self.region_scale = 1.0 / num_regions

        self.stem = ConvBNReLU(3, stem_channels, 3, 2, 1)
        ins = (stem_channels, *self.widths[:2])
        self.levels = nn.ModuleList(
            nn.Sequential(InceptionA(cin, cout), InceptionB(cout, cout))
            for cin, cout in zip(ins, self.widths, strict=True)
        )
        self.attention = nn.ModuleList(
            HarmoniousAttention(c, num_regions, self.region_scale) for c in self.widths
        )
        local_ins = (stem_channels, *self.local_widths[:2])
        self.local_levels = nn.ModuleList(
            InceptionB(cin, cout) for cin, cout in zip(local_ins, self.local_widths, strict=True)
        )
        # Level 1 regions come straight from the stem (same width); deeper ones are projected
        # from the wider global stream onto the narrower local stream before being added.
        self.local_proj = nn.ModuleList(
            [nn.Identity()]
            + [ConvBNReLU(g, loc) for g, loc in zip(self.widths[:2], local_ins[1:], strict=True)]
        )
        self.global_fc = nn.Sequential(
            nn.Linear(self.widths[2], feature_dim), nn.BatchNorm1d(feature_dim), nn.ReLU()
        )
        self.local_fc = nn.Sequential(
            nn.Linear(self.local_widths[2] * num_regions, feature_dim),
            nn.BatchNorm1d(feature_dim),
            nn.ReLU(),
        )
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, (nn.BatchNorm2d, nn.BatchNorm1d)):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def config(self) -> dict:
        """Constructor kwargs (JSON-serialisable) that rebuild this model."""
        return {
            "num_regions": self.num_regions,
            "widths": list(self.widths),
            "local_widths": list(self.local_widths),
            "feature_dim": self.feature_dim,
            "input_hw": list(self.input_hw),
            "stem_channels": self.stem_channels,
        }

    def _crop_regions(self, x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """Cut T regions of height H/T, full width, from x [N,C,H,W] -> [N*T,C,H/T,W]."""
        n, c, h, w = x.shape
        t = self.num_regions
        affine = x.new_zeros(n * t, 2, 3)
        affine[:, 0, 0] = 1.0
        affine[:, 1, 1] = self.region_scale
        affine[:, :, 2] = theta.reshape(n * t, 2).to(x.dtype)
        grid = F.affine_grid(affine, [n * t, c, h // t, w], align_corners=False)
        src = x.unsqueeze(1).expand(n, t, c, h, w).reshape(n * t, c, h, w)
        return F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    def features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Un-normalised branch features.

        Args:
            x: [N,3,H,W] RGB, ImageNet-normalised, H x W = input_hw.

        Returns:
            {"global": [N, feature_dim], "local": [N, feature_dim]}.
        """
        n = x.shape[0]
        g = self.stem(x)
        local = None
        for level, attention, local_block, proj in zip(
            self.levels, self.attention, self.local_levels, self.local_proj, strict=True
        ):
            level_in = g
            g = level(level_in)
            soft, theta = attention(g)
            g = g * soft
            regions = proj(self._crop_regions(level_in, theta))
            local = local_block(regions if local is None else local + regions)
        g = F.adaptive_avg_pool2d(g, 1).flatten(1)
        local = F.adaptive_avg_pool2d(local, 1).flatten(1).reshape(n, -1)
        return {"global": self.global_fc(g), "local": self.local_fc(local)}

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """[N,3,H,W] normalised RGB -> [N, 2*feature_dim] L2-normalised embedding."""
        feats = self.features(x)
        joint = torch.cat(
            [F.normalize(feats["global"], dim=1), F.normalize(feats["local"], dim=1)], 1
        )
        return F.normalize(joint, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Same as :meth:`embed`: the contract is identical in training and evaluation."""
        return self.embed(x)
