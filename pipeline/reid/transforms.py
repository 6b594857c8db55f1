"""Batched training augmentation on uint8 image tensors (cheap on a 2-core CPU).

Images are decoded and resized once (see ``datasets.load_image_array``); each batch is
then augmented as a tensor: horizontal flip, zero-pad-and-crop, random erasing, and
ImageNet normalisation. All randomness comes from the ``torch.Generator`` passed in, so a
seeded run is reproducible.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F  # noqa: N812

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize(images: torch.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    """uint8 [N,H,W,3] RGB -> float32 [N,3,H,W] mean/std normalised."""
    x = images.permute(0, 3, 1, 2).float().div_(255.0)
    m = torch.tensor(mean, dtype=x.dtype).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - m) / s


def augment(
    images: torch.Tensor,
    *,
    generator: torch.Generator,
    pad: int = 10,
    flip: bool = True,
    erase_p: float = 0.5,
    erase_area: tuple[float, float] = (0.02, 0.4),
    erase_ratio: float = 0.3,
) -> torch.Tensor:
    """Augment a uint8 [N,H,W,3] RGB batch; returns normalised float32 [N,3,H,W].

    Padding is zero in normalised space (the mean colour), so crops shifted into the
    border look like neutral background rather than black bars.
    """
    x = normalize(images)
    n, _, h, w = x.shape
    if flip:
        mask = torch.rand(n, generator=generator) < 0.5
        x = torch.where(mask.view(n, 1, 1, 1), x.flip(3), x)
    if pad > 0:
        padded = F.pad(x, (pad, pad, pad, pad))
        offs = torch.randint(0, 2 * pad + 1, (n, 2), generator=generator).tolist()
        x = torch.stack([padded[i, :, dy : dy + h, dx : dx + w] for i, (dy, dx) in enumerate(offs)])
    if erase_p > 0:
        coins = torch.rand(n, generator=generator).tolist()
        for i in range(n):
            if coins[i] >= erase_p:
                continue
            # Up to 10 tries to find a rectangle that fits, as in Zhong et al. (AAAI 2020).
            for _ in range(10):
                u = torch.rand(3, generator=generator).tolist()
                area = h * w * (erase_area[0] + u[0] * (erase_area[1] - erase_area[0]))
                log_r = math.log(erase_ratio) + u[1] * (-2 * math.log(erase_ratio))
                eh = int(round(math.sqrt(area * math.exp(log_r))))
                ew = int(round(math.sqrt(area / math.exp(log_r))))
                if 0 < eh < h and 0 < ew < w:
                    y0 = int(u[2] * (h - eh))
                    x0 = int(torch.randint(0, w - ew + 1, (1,), generator=generator))
                    x[i, :, y0 : y0 + eh, x0 : x0 + ew] = torch.randn(
                        3, eh, ew, generator=generator
                    )
                    break
    return x.contiguous()
