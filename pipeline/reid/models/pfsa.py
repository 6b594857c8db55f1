"""Parameter-free spatial attention network (Wang, Fan, Wang, Jiao, Schiele, 2018).

A ResNet-50 (last stride 1) whose global average pooling is complemented by a
spatial attention layer without learned parameters: the final feature map is
aggregated over channels into one activation per position, a softmax over all
positions turns it into attention weights, and the attention-weighted sum of the
feature vectors is added to the plain average. The attention thus re-injects the
spatial configuration of strong activations (which GAP discards) at zero
parameter cost. Our implementation; 2048-d BNNeck embedding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.reid.models.resnet import BNNeck, ResNet50Trunk

__all__ = ["PFSANet", "spatial_attention"]


def spatial_attention(x: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Parameter-free spatial attention map.

    Args:
        x: [N, C, H, W] feature map.
        temperature: Softmax temperature (a constant, not learned): lower = peakier.

    Returns:
        [N, 1, H, W] non-negative weights that sum to 1 over H x W for each sample.
    """
    n, _, h, w = x.shape
    activation = x.mean(dim=1).view(n, h * w)
    return torch.softmax(activation / temperature, dim=1).view(n, 1, h, w)


class PFSANet(nn.Module):
    """ResNet-50 + parameter-free spatial attention pooling, 2048-d embedding.

    Args:
        input_hw: Input (height, width) in pixels (any size works; 256 x 128 default).
        last_stride: Stride of ResNet layer4.
        temperature: Softmax temperature of the attention.
    """

    name = "pfsa"

    def __init__(self, *, input_hw: tuple[int, int] | list[int] = (256, 128),
                 last_stride: int = 1, temperature: float = 1.0) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.input_hw = (int(input_hw[0]), int(input_hw[1]))
        self.last_stride = last_stride
        self.temperature = float(temperature)
        self.embedding_dim = 2048
        self.trunk = ResNet50Trunk(last_stride=last_stride)
        self.neck = BNNeck(self.embedding_dim)

    def config(self) -> dict:
        """Constructor kwargs (JSON-serialisable)."""
        return {"input_hw": list(self.input_hw), "last_stride": self.last_stride,
                "temperature": self.temperature}

    def features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Un-normalised features.

        Args:
            x: [N, 3, H, W] RGB, ImageNet-normalised.

        Returns:
            {"global": [N, 2048]} BNNeck output of GAP + attention pooling.
        """
        x = self.trunk.stem(x)
        for layer in self.trunk.layers:
            x = layer(x)
        weights = spatial_attention(x, self.temperature)
        attended = (x * weights).sum(dim=(2, 3))
        pooled = F.adaptive_avg_pool2d(x, 1).flatten(1) + attended
        return {"global": self.neck(pooled)}

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """[N, 3, H, W] -> [N, 2048] L2-normalised embedding."""
        return F.normalize(self.features(x)["global"], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Same as :meth:`embed`."""
        return self.embed(x)
