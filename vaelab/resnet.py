"""Residual convolutional bodies for images (``arch="resnet"``). No probability in here.

Stages run from full resolution down: stage 0 works at H x W, each later stage first halves the size
with a stride-2 3x3 convolution (the decoder: nearest 2x upsampling + 3x3 convolution) and then applies
its residual blocks. A block is pre-activation (He et al. 2016): x + conv(act(norm(conv(act(norm(x)))))),
its last convolution initialised to zero so every block starts as the identity (SkipInit / Fixup style,
as VDVAE scales its last layer down). Sizes that do not halve evenly round up (the encoder pads); the
decoder's output is cropped back to H x W by its caller.

This module knows nothing of vaelab's other modules: the activation arrives as a factory.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from torch import Tensor, nn

NORMS = ("group", "batch", "none")
MAX_GROUPS = 8      # GroupNorm groups per layer (fewer when the width is not divisible): >= 4 channels each
LAST_SIDE = 8       # default channels: halve until the last stage is at most this many px (4..8)
Act = Callable[[], nn.Module]


@dataclass(frozen=True)
class ResNetSpec:
    """The resnet fields of a model config: channels per stage (full resolution first), residual blocks per
    stage (one entry: every stage), normalisation (group | batch | none)."""

    channels: tuple[int, ...]
    blocks: tuple[int, ...] = (1,)
    norm: str = "group"

    def blocks_per_stage(self) -> tuple[int, ...]:
        return self.blocks * len(self.channels) if len(self.blocks) == 1 else self.blocks


def default_channels(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Channels per stage by image size: enough halvings that the last stage is 4..8 px on its shorter side
    (at least one), widths 32, 64, 128, 256 (capped): 8 px -> (32, 64); 28/32 px -> (32, 64, 128) at 7/8 px;
    64 px -> (32, 64, 128, 256) at 8 px."""
    side = min(shape[1], shape[2])
    halvings = max(1, math.ceil(math.log2(max(side, 1) / LAST_SIDE)))
    return tuple(min(32 * 2 ** s, 256) for s in range(halvings + 1))


def check_spec(shape: tuple[int, ...], spec: ResNetSpec) -> None:
    """Every check of the resnet fields for images of ``shape`` (C, H, W); ValueError naming the bad value."""
    ch, blocks = spec.channels, spec.blocks
    if not ch or any(not isinstance(c, int) or c < 1 for c in ch):
        raise ValueError(f"channels={ch!r} must list one width >= 1 per stage, full resolution first, "
                         "e.g. (32, 64, 128)")
    if not blocks or any(not isinstance(b, int) or b < 0 for b in blocks) or len(blocks) not in (1, len(ch)):
        raise ValueError(f"blocks={blocks!r} must be 1 entry (every stage) or {len(ch)} (one per stage for "
                         f"channels={ch}) of residual block counts >= 0")
    if spec.norm not in NORMS:
        raise ValueError(f"norm={spec.norm!r} is not known; allowed: {list(NORMS)}")
    side = min(shape[1], shape[2])
    if 2 ** (len(ch) - 1) > side:
        raise ValueError(f"channels={ch} has {len(ch)} stages, which halve the image {len(ch) - 1} times: that needs "
                         f"a side >= {2 ** (len(ch) - 1)} px; got {shape[1]}x{shape[2]}. Use fewer stages, "
                         f"e.g. channels={default_channels(shape)}")


def grid(shape: tuple[int, ...], stages: int) -> tuple[int, int]:
    """Spatial size (h, w) of the last stage: every halving rounds up."""
    f = 2 ** (stages - 1)
    return math.ceil(shape[1] / f), math.ceil(shape[2] / f)


def norm_layer(kind: str, ch: int) -> nn.Module:
    if kind == "group":
        return nn.GroupNorm(math.gcd(ch, MAX_GROUPS), ch)
    if kind == "batch":  # train mode: an example's output depends on the rest of its batch
        return nn.BatchNorm2d(ch)
    return nn.Identity()


class ResBlock(nn.Module):
    """(B, ch, h, w) -> (B, ch, h, w): x + f(x), f = [norm, act, conv3x3] x 2, last conv zero-initialised."""

    def __init__(self, ch: int, norm: str, act: Act) -> None:
        super().__init__()
        self.f = nn.Sequential(norm_layer(norm, ch), act(), nn.Conv2d(ch, ch, 3, padding=1),
                               norm_layer(norm, ch), act(), nn.Conv2d(ch, ch, 3, padding=1))
        nn.init.zeros_(self.f[-1].weight)
        nn.init.zeros_(self.f[-1].bias)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.f(x)


def _blocks(n: int, ch: int, norm: str, act: Act) -> list[nn.Module]:
    return [ResBlock(ch, norm, act) for _ in range(n)]


class ResNetDown(nn.Sequential):
    """Encoder body: (B, C, H, W) -> (B, channels[-1], h, w), (h, w) = ``grid(shape, stages)``."""

    def __init__(self, in_ch: int, spec: ResNetSpec, act: Act) -> None:
        ch, blocks = spec.channels, spec.blocks_per_stage()
        layers: list[nn.Module] = [nn.Conv2d(in_ch, ch[0], 3, padding=1), *_blocks(blocks[0], ch[0], spec.norm, act)]
        for s in range(1, len(ch)):
            layers += [nn.Conv2d(ch[s - 1], ch[s], 3, stride=2, padding=1), *_blocks(blocks[s], ch[s], spec.norm, act)]
        layers += [norm_layer(spec.norm, ch[-1]), act()]
        super().__init__(*layers)


class ResNetUp(nn.Sequential):
    """Decoder body: (B, channels[-1], h, w) -> (B, out_ch, h * 2**(S-1), w * 2**(S-1)); crop to H x W after."""

    def __init__(self, out_ch: int, spec: ResNetSpec, act: Act) -> None:
        ch, blocks = spec.channels, spec.blocks_per_stage()
        layers: list[nn.Module] = []
        for s in reversed(range(1, len(ch))):
            layers += [*_blocks(blocks[s], ch[s], spec.norm, act), nn.Upsample(scale_factor=2, mode="nearest"),
                       nn.Conv2d(ch[s], ch[s - 1], 3, padding=1)]
        layers += [*_blocks(blocks[0], ch[0], spec.norm, act), norm_layer(spec.norm, ch[0]), act(),
                   nn.Conv2d(ch[0], out_ch, 3, padding=1)]
        super().__init__(*layers)
