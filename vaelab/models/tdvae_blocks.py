"""The networks of the top-down VAE (tdvae.py): a bottom-up ResNet pass, top-down resolutions and the latent
layers with their prior and posterior heads. No probability in here beyond (mu, logvar) pairs.

Resolutions run full size first: resolution s has side ceil(side / 2^s) and ``channels[s]`` channels. The
residual blocks are vaelab.resnet's (pre-activation, last convolution zero-initialised: identity at start).
The heads (prior, posterior, output) have no normalisation: on a 1x1 map a group of one value normalises to a
constant, which would cut z or h off.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from ..resnet import ResBlock

Act = Callable[[], nn.Module]
Pick = Callable[[int, int, "LatentLayer", Tensor, Tensor, Tensor], Tensor]  # (i, s, layer, h, p_mu, p_logvar) -> z


class BottomUp(nn.Module):
    """x (B, C, H, W) -> the activation at every resolution, full size first: [(B, channels[s], h_s, w_s)]."""

    def __init__(self, in_ch: int, channels: tuple[int, ...], blocks: tuple[int, ...], norm: str, act: Act) -> None:
        super().__init__()
        self.stem = nn.Conv2d(in_ch, channels[0], 3, padding=1)
        self.down = nn.ModuleList(nn.Conv2d(channels[s - 1], channels[s], 3, stride=2, padding=1)
                                  for s in range(1, len(channels)))
        self.stages = nn.ModuleList(nn.Sequential(*(ResBlock(ch, norm, act) for _ in range(b)))
                                    for ch, b in zip(channels, blocks))

    def forward(self, x: Tensor) -> list[Tensor]:
        h, out = self.stem(x), []
        for s, stage in enumerate(self.stages):
            if s:
                h = self.down[s - 1](h)                                  # halve the side (rounding up)
            h = stage(h)
            out.append(h)
        return out


class Upsample(nn.Module):
    """(B, c_in, h, w) -> (B, c_out, *size): nearest 2x upsampling, crop to ``size``, 3x3 convolution."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1)

    def forward(self, h: Tensor, size: tuple[int, int]) -> Tensor:
        h = nn.functional.interpolate(h, scale_factor=2, mode="nearest")[..., : size[0], : size[1]]
        return self.conv(h)


class LatentLayer(nn.Module):
    """One stochastic layer at one resolution (VDVAE's top-down block).

    prior(h) -> (p_mu, p_logvar, feature): p(z_l | z_>l) from the top-down state h (B, ch, h, w), its last
    convolution zero-initialised so p starts as N(0, I) and adds nothing to h. posterior(h, a) -> (q_mu,
    q_logvar) from [h, a], a the bottom-up activation at this resolution (VDVAE's merge; NVAE's residual
    q = p + shift learned to use its latents far more slowly here: KL 0.7 against 4.3 nats after 15 epochs on
    binarized digits). absorb(h, feature, z): h + feature + conv1x1(z), then a residual block."""

    def __init__(self, ch: int, z_ch: int, norm: str, act: Act) -> None:
        super().__init__()
        self.z_ch = z_ch
        self.p_net = nn.Sequential(act(), nn.Conv2d(ch, 2 * z_ch + ch, 3, padding=1))
        self.q_net = nn.Sequential(act(), nn.Conv2d(2 * ch, ch, 3, padding=1), act(), nn.Conv2d(ch, 2 * z_ch, 1))
        self.z_proj = nn.Conv2d(z_ch, ch, 1)
        self.block = ResBlock(ch, norm, act)
        nn.init.zeros_(self.p_net[-1].weight)
        nn.init.zeros_(self.p_net[-1].bias)

    def prior(self, h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        out = self.p_net(h)                                              # (B, 2 z_ch + ch, h, w)
        return out[:, : self.z_ch], out[:, self.z_ch: 2 * self.z_ch], out[:, 2 * self.z_ch:]

    def posterior(self, h: Tensor, a: Tensor) -> tuple[Tensor, Tensor]:
        q_mu, q_logvar = self.q_net(torch.cat([h, a], 1)).chunk(2, 1)  # (B, z_ch, h, w) each
        return q_mu, q_logvar

    def absorb(self, h: Tensor, feature: Tensor, z: Tensor) -> Tensor:
        return self.block(h + feature + self.z_proj(z))


class TopDown(nn.Module):
    """The generator's deterministic path: a learned start at the coarsest resolution, per resolution (coarsest
    first) residual blocks then that resolution's latent layers, then upsampling; a 3x3 output convolution.

    ``layers_at[s]``: how many latent layers resolution s has, with ``z_channels[s]`` channels each."""

    def __init__(self, out_ch: int, channels: tuple[int, ...], sizes: list[tuple[int, int]], blocks: tuple[int, ...],
                 z_channels: dict[int, int], layers_per_scale: int, norm: str, act: Act) -> None:
        super().__init__()
        top = len(channels) - 1
        self.sizes = sizes
        self.start = nn.Parameter(torch.zeros(1, channels[top], *sizes[top]))   # h at the coarsest resolution
        self.stages = nn.ModuleList(nn.Sequential(*(ResBlock(ch, norm, act) for _ in range(b)))
                                    for ch, b in zip(channels, blocks))
        self.latents = nn.ModuleDict({str(s): nn.ModuleList(LatentLayer(channels[s], z_channels[s], norm, act)
                                                            for _ in range(layers_per_scale))
                                      for s in z_channels})
        self.up = nn.ModuleList(Upsample(channels[s], channels[s - 1]) for s in range(1, len(channels)))
        self.out = nn.Sequential(act(), nn.Conv2d(channels[0], out_ch, 3, padding=1))

    def layers(self) -> list[tuple[int, LatentLayer]]:
        """Every latent layer with its resolution, in generation order (coarsest first)."""
        return [(int(s), layer) for s in sorted(self.latents, key=int, reverse=True) for layer in self.latents[s]]

    def forward(self, n: int, pick: Pick, output: bool = True) -> Tensor | None:
        """The top-down pass for n examples: (n, out_ch, H, W). At latent layer i (resolution s) it calls
        ``pick(i, s, layer, h, p_mu, p_logvar)`` for the z (n, z_ch, h_s, w_s) to feed on (a prior or posterior
        draw, or a given code). ``output=False``: stop after the last latent layer (None)."""
        h, i, last = self.start.expand(n, -1, -1, -1), 0, len(self.layers())
        for s in reversed(range(len(self.stages))):
            if i == last and not output:
                return None
            h = self.stages[s](h)
            for layer in self.latents[str(s)] if str(s) in self.latents else ():
                p_mu, p_logvar, feature = layer.prior(h)
                h = layer.absorb(h, feature, pick(i, s, layer, h, p_mu, p_logvar))
                i += 1
            if s:
                h = self.up[s - 1](h, self.sizes[s - 1])
        return self.out(h)
