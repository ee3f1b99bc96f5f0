"""The hierarchical VAE with a VampPrior on its top layer (Tomczak & Welling 2018, the "HVAE + VampPrior").

p(z_T) = (1/K) sum_k q(z_T | u_k) over K learned pseudo-inputs u_k in data space, encoded through the
hvae's deterministic bottom-up path to the top layer's posterior q(z_T|.) (``vamp.VampMixture``); the lower
conditionals p(z_i|z_{i+1}), the inference network and the likelihood are the hvae's (hvae.py). As in the
paper's two-layer model, q(z_T|x) is a function of x alone, which is what top-down (ladder) inference has;
with ``inference='bottom-up'`` q(z_T|x) is a marginal over the layers below (no closed form), so that is
refused. The pseudo-inputs pass hardtanh(0, 1) when the likelihood needs data in [0, 1] (as in vamp.py).

The top layer's KL has no closed form (the prior is a mixture): its entry of ``elbo_parts`` is the
single-sample rate log q(z_T|x) - log p(z_T); the lower layers stay closed form given the layer above
(hvae.py decides by the top prior's type). Temperature scales each component's std.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from torch import Tensor

from .base import Capabilities, register
from .hvae import HierarchicalVAE, HVAEConfig
from .vamp import PseudoInputs, VampMixture, check_n_pseudo


@dataclass(frozen=True)
class HVAEVampConfig(HVAEConfig):
    n_pseudo: int = 500               # K, the number of learned pseudo-inputs (mixture components of p(z_T))

    def __post_init__(self) -> None:
        super().__post_init__()
        check_n_pseudo(self.n_pseudo)
        if self.inference != "top-down":
            raise ValueError(f"inference={self.inference!r}: hvae-vamp encodes its pseudo-inputs to q(z_T|u) "
                             "through the bottom-up path of ladder inference; allowed: 'top-down'")


@register("hvae-vamp", HVAEVampConfig)
class HierarchicalVampVAE(PseudoInputs, HierarchicalVAE):
    """The hvae with p(z_T) = mean_k q(z_T | u_k) over learned pseudo-inputs u_k."""

    # as the hvae: its own prior, a mean-field encode() summary, and no closed-form total KL (here even the
    # top layer's KL is a single-sample rate: the prior is a mixture)
    capabilities = Capabilities(standard_prior=False, gaussian_posterior=False, closed_form_kl=False)

    def pseudo_posteriors(self) -> tuple[Tensor, Tensor]:
        """(mu, logvar) of q(z_T | u_k) for every pseudo-input: (K, d_T) each."""
        return self._bottom_up(self.pseudo_inputs())[-1]

    def top_prior(self, n: int, temperature: float = 1.0) -> VampMixture:
        """p(z_T) = (1/K) sum_k q(z_T | u_k), batch shape (n,); ``temperature`` scales every component's std."""
        mu, logvar = self.pseudo_posteriors()
        return VampMixture(mu, logvar + 2 * math.log(temperature), n)
