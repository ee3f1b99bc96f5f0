"""Network bodies (MLP, a small conv net, residual conv stages). No probability in here: outputs are plain tensors."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .resnet import ResNetDown, ResNetSpec, ResNetUp, check_spec, default_channels, grid

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU, "gelu": nn.GELU, "silu": nn.SiLU}
ARCHS = ("mlp", "conv", "resnet")
IMAGE_ARCHS = ("conv", "resnet")  # need (C, H, W) examples


def activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"activation={name!r} is not known; allowed: {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def mlp(sizes: list[int], act: str, final_act: bool = False) -> nn.Sequential:
    """Linear layers between consecutive ``sizes`` with ``act`` between them."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2 or final_act:
            layers.append(activation(act))
    return nn.Sequential(*layers)


def _conv_grid(shape: tuple[int, ...]) -> tuple[int, int]:
    """Spatial size after two stride-2 convolutions."""
    return math.ceil(shape[1] / 4), math.ceil(shape[2] / 4)


class Encoder(nn.Module):
    """x (B, *shape) [+ condition (B, K)] -> (B, out_dim): a conv/resnet body (images), then an MLP head."""

    def __init__(self, shape: tuple[int, ...], hidden: tuple[int, ...], out_dim: int,
                 arch: str = "mlp", act: str = "relu", n_cond: int = 0, resnet: ResNetSpec | None = None) -> None:
        super().__init__()
        check_body(shape, hidden, arch, act, resnet)
        self.arch = arch
        if arch == "resnet":
            assert resnet is not None  # check_body refuses a missing spec
            gh, gw = grid(shape, len(resnet.channels))
            self.features = nn.Sequential(ResNetDown(shape[0], resnet, lambda: activation(act)), nn.Flatten())
            in_dim = resnet.channels[-1] * gh * gw
        elif arch == "conv":
            gh, gw = _conv_grid(shape)
            self.features = nn.Sequential(
                nn.Conv2d(shape[0], 32, 3, stride=2, padding=1), activation(act),
                nn.Conv2d(32, 64, 3, stride=2, padding=1), activation(act), nn.Flatten())
            in_dim = 64 * gh * gw
        else:
            self.features = nn.Flatten()
            in_dim = math.prod(shape)
        self.head = mlp([in_dim + n_cond, *hidden, out_dim], act)

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        h = self.features(x)  # (B, F)
        if cond is not None:
            h = torch.cat([h, cond], dim=-1)
        return self.head(h)


def out_shape(shape: tuple[int, ...], out_mult: int) -> tuple[int, ...]:
    """The decoder's output shape: ``out_mult`` parameters per value of the first (channel) axis."""
    return (shape[0] * out_mult, *shape[1:])


class Decoder(nn.Module):
    """z (B, d) [+ condition (B, K)] -> (B, out_mult * C, *rest) unconstrained outputs (logits, means, mixture params).

    ``out_mult`` is how many numbers the likelihood needs per data value (1 for Bernoulli/Gaussian).
    """

    def __init__(self, shape: tuple[int, ...], hidden: tuple[int, ...], in_dim: int,
                 arch: str = "mlp", act: str = "relu", n_cond: int = 0, out_mult: int = 1,
                 resnet: ResNetSpec | None = None) -> None:
        super().__init__()
        check_body(shape, hidden, arch, act, resnet)
        shape = out_shape(shape, out_mult)
        self.shape = shape
        self.arch = arch
        if arch == "resnet":
            assert resnet is not None
            self.grid = (resnet.channels[-1], *grid(shape, len(resnet.channels)))
            self.head = mlp([in_dim + n_cond, *reversed(hidden), math.prod(self.grid)], act)
            self.body = ResNetUp(shape[0], resnet, lambda: activation(act))
        elif arch == "conv":
            gh, gw = _conv_grid(shape)
            self.grid = (64, gh, gw)
            self.head = mlp([in_dim + n_cond, *reversed(hidden), 64 * gh * gw], act, final_act=True)
            self.body = nn.Sequential(
                nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1), activation(act),
                nn.ConvTranspose2d(32, shape[0], 4, stride=2, padding=1))
        else:
            self.head = mlp([in_dim + n_cond, *reversed(hidden), math.prod(shape)], act)

    def forward(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        if cond is not None:
            z = torch.cat([z, cond], dim=-1)
        h = self.head(z)
        lead = z.shape[:-1]
        if self.arch != "mlp":
            h = self.body(h.reshape(-1, *self.grid))  # (B', C, >= H, >= W): halvings rounded up
            h = h[:, :, : self.shape[1], : self.shape[2]]
        return h.reshape(*lead, *self.shape)

    def start_outputs_at(self, out: Tensor) -> bool:
        """Set the last layer's bias so the outputs start at ``out`` (*shape) where the rest of that layer
        gives 0: one bias per output value (mlp), the channel means of ``out`` (conv, resnet: a bias per
        channel). False, nothing changed, when ``out`` is not shaped as the outputs (out_mult > 1)."""
        last = self.head[-1] if self.arch == "mlp" else self.body[-1]
        if tuple(out.shape) != tuple(self.shape) or last.bias is None:
            return False
        with torch.no_grad():
            last.bias.copy_(out.flatten() if self.arch == "mlp" else out.flatten(1).mean(1))  # (D,) or (C,)
        return True


def check_body(input_shape: tuple[int, ...], hidden: tuple[int, ...], arch: str, act: str,
               resnet: ResNetSpec | None = None) -> None:
    """Checks shared by the MLP/conv/resnet encoder-decoder configs."""
    if any(not isinstance(h, int) or isinstance(h, bool) or not 1 <= h <= 65536 for h in hidden):
        raise ValueError(f"hidden={hidden!r} sizes must be integers in 1..65536")
    if arch not in ARCHS:
        raise ValueError(f"arch={arch!r} is not known; allowed: {list(ARCHS)}")
    if arch in IMAGE_ARCHS and len(input_shape) != 3:
        raise ValueError(f"arch={arch!r} needs image data (C, H, W); got example shape {input_shape}")
    if arch == "resnet":
        if resnet is None:
            raise ValueError("arch='resnet' needs its channels, blocks and norm (a ResNetSpec)")
        check_spec(input_shape, resnet)
    activation(act)


def resnet_channels(input_shape: tuple[int, ...], arch: str, channels: tuple[int, ...]) -> tuple[int, ...]:
    """A config's ``channels`` as stored: () means the default for the image size when arch is 'resnet'
    (``resnet.default_channels``); other archs have no stages, so channels must stay ()."""
    if arch != "resnet":
        if channels:
            raise ValueError(f"channels={channels!r} only applies to arch='resnet'; got arch={arch!r}")
        return ()
    if len(input_shape) != 3:
        raise ValueError(f"arch='resnet' needs image data (C, H, W); got example shape {input_shape}")
    return tuple(channels) or default_channels(input_shape)
