"""Batched training augmentation on uint8 image tensors, vectorised on their device.

Images are decoded and resized once (see ``datasets.load_image_array``) and can stay on
the training device as uint8; each batch is then augmented as one tensor, with no
per-sample Python loop: colour jitter, random grayscale, per-batch style mixing,
horizontal flip, zero-pad-and-crop (a random shift), random erasing, and ImageNet
normalisation. All randomness comes from the ``torch.Generator`` passed in (it must live
on the images' device), so a seeded run is reproducible on one device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_GRAY = (0.299, 0.587, 0.114)


def normalize(images: torch.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    """uint8 [N,H,W,3] RGB -> float32 [N,3,H,W] mean/std normalised (on its device)."""
    x = images.permute(0, 3, 1, 2).float().div_(255.0)
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - m) / s


@dataclass(frozen=True)
class AugmentConfig:
    """What :func:`augment` does to a batch.

    Attributes:
        pad: maximum shift in pixels of the pad-and-crop (0: off).
        flip: random horizontal flip with probability 0.5.
        erase_p: probability of one random-erasing rectangle per image.
        erase_area: erased area range as a fraction of the image.
        erase_ratio: smallest aspect ratio (and 1/largest) of the rectangle.
        jitter_p: probability of colour jitter per image.
        brightness, contrast, saturation: jitter strengths (factor in 1 +- value).
        gray_p: probability of converting an image to grayscale (3 equal channels).
        style_p: probability of mixing an image's per-channel mean/std with those of
            another image of the batch (a random mix weight), a cheap style change that
            keeps the content.
    """

    pad: int = 10
    flip: bool = True
    erase_p: float = 0.5
    erase_area: tuple[float, float] = (0.02, 0.4)
    erase_ratio: float = 0.3
    jitter_p: float = 0.0
    brightness: float = 0.2
    contrast: float = 0.15
    saturation: float = 0.2
    gray_p: float = 0.0
    style_p: float = 0.0

    def __post_init__(self) -> None:
        for name in ("erase_p", "jitter_p", "gray_p", "style_p"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"augmentation {name} must be in [0, 1], got {value}")
        if self.pad < 0:
            raise ValueError(f"augmentation pad must be >= 0, got {self.pad}")
        lo, hi = self.erase_area
        if not 0.0 < lo <= hi < 1.0:
            raise ValueError(f"erase_area must satisfy 0 < low <= high < 1, got {lo, hi}")
        if not 0.0 < self.erase_ratio <= 1.0:
            raise ValueError(f"erase_ratio must be in (0, 1], got {self.erase_ratio}")


def _uniform(n: int, lo: float, hi: float, gen: torch.Generator, device) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen, device=device)


def _colour_affine(x: torch.Tensor, cfg: AugmentConfig,
                   gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch's colour changes as one affine map per image: (M [N,3,3], b [N,3]) with
    ``out = M @ rgb + b`` on RGB in [0, 1].

    Style mixing, brightness, contrast, saturation and grayscale are each affine in the
    RGB vector (contrast and style use image statistics, taken once from ``x``), so they
    compose into one matrix and are applied in a single pass over the pixels.
    """
    n, dev, dt = x.shape[0], x.device, x.dtype
    eye = torch.eye(3, device=dev, dtype=dt).expand(n, 3, 3)
    w = torch.tensor(_GRAY, device=dev, dtype=dt)
    to_gray = w.view(1, 1, 3).expand(n, 3, 3)  # every output channel = gray
    m, b = eye.clone(), torch.zeros(n, 3, device=dev, dtype=dt)
    # Statistics over the pixels of the NHWC memory the batch came in (a fast reduction).
    var, mu = torch.var_mean(x.permute(0, 2, 3, 1).reshape(n, -1, 3), dim=1)  # [N,3]
    if cfg.style_p > 0 and n > 1:
        on = (torch.rand(n, generator=gen, device=dev) < cfg.style_p).to(dt).view(n, 1)
        sigma = var.clamp_min(1e-6).sqrt()
        partner = torch.randperm(n, generator=gen, device=dev)
        lam = torch.rand(n, 1, generator=gen, device=dev, dtype=dt)
        mu_mix = lam * mu + (1 - lam) * mu[partner]
        sigma_mix = lam * sigma + (1 - lam) * sigma[partner]
        scale = 1 + on * (sigma_mix / sigma - 1)
        m = torch.diag_embed(scale)
        b = on * (mu_mix - scale * mu)
    if cfg.jitter_p > 0:
        on = (torch.rand(n, generator=gen, device=dev) < cfg.jitter_p).to(dt)

        def factor(strength: float) -> torch.Tensor:
            return (1 + on * (_uniform(n, -strength, strength, gen, dev))).view(n, 1, 1)

        bright, contrast, sat = (factor(cfg.brightness), factor(cfg.contrast),
                                 factor(cfg.saturation))
        m, b = bright * m, bright[:, :, 0] * b
        # contrast about the image's mean gray level (after the steps so far)
        mean_gray = ((m @ mu.unsqueeze(2)).squeeze(2) + b) @ w  # [N]
        m = contrast * m
        b = contrast[:, :, 0] * b + (1 - contrast[:, :, 0]) * mean_gray.view(n, 1)
        sat_map = sat * eye + (1 - sat) * to_gray
        m, b = sat_map @ m, (sat_map @ b.unsqueeze(2)).squeeze(2)
    if cfg.gray_p > 0:
        on = (torch.rand(n, generator=gen, device=dev) < cfg.gray_p).view(n, 1, 1)
        gray_m, gray_b = to_gray @ m, (to_gray @ b.unsqueeze(2)).squeeze(2)
        m = torch.where(on, gray_m, m)
        b = torch.where(on.view(n, 1), gray_b, b)
    return m, b


def _flip_shift(images: torch.Tensor, pad: int, flip: bool,
                gen: torch.Generator) -> torch.Tensor:
    """Random horizontal flip and shift by up to ``pad`` pixels, on uint8 [N,H,W,C], as
    one gather. The border shows the ImageNet mean colour (zero after normalisation), so
    shifted crops look like neutral background rather than black bars. With C == 4 each
    pixel moves as one int32 (much faster than gathering bytes)."""
    n, h, w, c = images.shape
    dev = images.device
    hp, wp = h + 2 * pad, w + 2 * pad
    fill = torch.tensor([round(255 * v) for v in IMAGENET_MEAN] + [0] * (c - 3),
                        dtype=torch.uint8)
    if c == 4:
        # One int32 per pixel: filling, copying and gathering words, not bytes.
        padded = torch.full((n, hp, wp), int(fill.view(torch.int32)), dtype=torch.int32,
                            device=dev)
        padded[:, pad:pad + h, pad:pad + w] = images.view(torch.int32).view(n, h, w)
    else:
        padded = fill.to(dev).repeat(n, hp, wp, 1)
        padded[:, pad:pad + h, pad:pad + w] = images
    offs = torch.randint(0, 2 * pad + 1, (n, 2), generator=gen, device=dev)
    rows = offs[:, :1] + torch.arange(h, device=dev)  # [N,H]
    cols = offs[:, 1:] + torch.arange(w, device=dev)  # [N,W]
    if flip:
        flipped = torch.rand(n, generator=gen, device=dev) < 0.5
        cols = torch.where(flipped.view(n, 1), wp - 1 - cols, cols)
    index = (rows[:, :, None] * wp + cols[:, None, :]).view(n, h * w)
    if c == 4:
        return padded.view(n, hp * wp).gather(1, index).view(torch.uint8).view(n, h, w, 4)
    out = padded.view(n, hp * wp, c).gather(1, index.unsqueeze(2).expand(n, h * w, c))
    return out.view(n, h, w, c)


def with_alpha(images: torch.Tensor) -> torch.Tensor:
    """uint8 [N,H,W,3] -> [N,H,W,4] (a zero fourth byte): the layout :func:`augment`
    moves fastest (one int32 per pixel). Keep resident training images in it."""
    return torch.cat([images, images.new_zeros(*images.shape[:3], 1)], dim=3)


def _erase(x: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    """Random erasing (Zhong et al., AAAI 2020): one rectangle of Gaussian noise per
    chosen image; of up to 10 candidate rectangles per image, the first that fits."""
    n, c, h, w = x.shape
    dev, tries = x.device, 10
    u = torch.rand(n, tries, 4, generator=gen, device=dev)
    lo, hi = cfg.erase_area
    area = h * w * (lo + u[..., 0] * (hi - lo))
    log_r = math.log(cfg.erase_ratio) * (1 - 2 * u[..., 1])
    eh = torch.sqrt(area * torch.exp(log_r)).round()
    ew = torch.sqrt(area / torch.exp(log_r)).round()
    fits = (eh > 0) & (eh < h) & (ew > 0) & (ew < w)
    pick = fits.float().argmax(1).view(n, 1)  # first fitting try (0 if none fits)
    eh, ew = eh.gather(1, pick).view(n, 1, 1), ew.gather(1, pick).view(n, 1, 1)
    y0 = (u[..., 2].gather(1, pick).view(n, 1, 1) * (h - eh)).floor()
    x0 = (u[..., 3].gather(1, pick).view(n, 1, 1) * (w - ew + 1)).floor().clamp(max=w - ew)
    on = ((torch.rand(n, generator=gen, device=dev) < cfg.erase_p) & fits.any(1)).view(n, 1, 1)
    ys = torch.arange(h, device=dev).view(1, h, 1)
    xs = torch.arange(w, device=dev).view(1, 1, w)
    inside = (ys >= y0) & (ys < y0 + eh) & (xs >= x0) & (xs < x0 + ew) & on
    mask = inside.unsqueeze(1).expand(n, c, h, w)
    # Noise only for the erased pixels (about a tenth of the batch), not a full tensor.
    count = int(mask.sum())
    noise = torch.randn(count, generator=gen, device=dev, dtype=x.dtype)
    return x.masked_scatter(mask, noise)


def augment(
    images: torch.Tensor,
    *,
    generator: torch.Generator,
    config: AugmentConfig | None = None,
    **overrides,
) -> torch.Tensor:
    """Augment a uint8 [N,H,W,3] (or [N,H,W,4], see :func:`with_alpha`) RGB batch;
    returns normalised float32 [N,3,H,W].

    Runs on ``images``' device; ``generator`` must be on the same device. Keyword
    ``overrides`` replace fields of ``config`` (e.g. ``erase_p=0``).
    """
    cfg = config or AugmentConfig()
    if overrides:
        cfg = AugmentConfig(**{**cfg.__dict__, **overrides})
    if cfg.pad > 0 or cfg.flip:
        images = _flip_shift(images, cfg.pad, cfg.flip, generator)
    dev = images.device
    mean = torch.tensor(IMAGENET_MEAN, device=dev).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=dev).view(1, 3, 1, 1)
    x = images[..., :3].permute(0, 3, 1, 2).float()
    if cfg.jitter_p > 0 or cfg.gray_p > 0 or cfg.style_p > 0:
        x = x.mul_(1.0 / 255.0)
        m, b = _colour_affine(x, cfg, generator)
        n, _, h, w = x.shape
        x = torch.baddbmm(b.unsqueeze(2), m, x.reshape(n, 3, h * w)).view(n, 3, h, w)
        x = x.clamp_(0.0, 1.0).sub_(mean).div_(std)
    else:
        x = x.sub_(255.0 * mean).div_(255.0 * std)
    if cfg.erase_p > 0:
        x = _erase(x, cfg, generator)
    # The pixels are in NHWC memory (channels_last), as the images were: kept so, since
    # channels_last training needs no copy; .contiguous() gives NCHW memory.
    return x.contiguous(memory_format=torch.channels_last)
