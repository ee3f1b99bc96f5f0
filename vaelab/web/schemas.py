"""Request bodies of the explorer's JSON API, validated by pydantic.

Strict types (no "3" for 3, no true for 1), no unknown fields, and no NaN/Infinity anywhere (Python's
JSON parser accepts the non-standard ``NaN`` and ``Infinity`` tokens; these models reject them). Limits
that depend on the model (latent length, pixel count, class range, test-set size) are checked by the
endpoints, which know the model.
"""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

MAX_N = 256          # images per /api/sample call
MAX_STEPS = 64       # images per /api/interpolate call
MAX_TEMPERATURE = 10.0
Z_LIMIT = 1e3        # |z_i| allowed in /api/decode
X_LIMIT = 1e6        # |x_i| allowed in /api/encode
MAX_VECTOR = 1 << 20  # hard cap on list lengths before the model-specific checks
MAX_K = 5000         # importance samples per /api/likelihood call

LatentValue = Annotated[float, Field(ge=-Z_LIMIT, le=Z_LIMIT, allow_inf_nan=False)]
PixelValue = Annotated[float, Field(ge=-X_LIMIT, le=X_LIMIT, allow_inf_nan=False)]
Label = Annotated[int, Field(ge=0)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class DecodeRequest(_Request):
    z: list[LatentValue] = Field(min_length=1, max_length=MAX_VECTOR)  # one code, latent_dim numbers
    y: Label | None = None                                             # class, conditional models only


class EncodeRequest(_Request):
    index: Annotated[int, Field(ge=0)] | None = None                   # a test image of the map
    x: list[PixelValue] | None = Field(None, min_length=1, max_length=MAX_VECTOR)  # or flat pixels
    y: Label | None = None                                             # class of x (conditional models)

    @model_validator(mode="after")
    def _one_source(self) -> "EncodeRequest":
        if (self.index is None) == (self.x is None):
            raise ValueError("send exactly one of 'index' (a test image) or 'x' (flat pixel list)")
        return self


class LikelihoodRequest(_Request):
    x: list[PixelValue] = Field(min_length=1, max_length=MAX_VECTOR)  # flat pixels of one example
    y: Label | None = None                                             # its class (conditional models)
    k: Annotated[int, Field(ge=1, le=MAX_K)] = 100                     # importance samples (IWAE_k)
    seed: Annotated[int, Field(ge=0, le=2 ** 31 - 1)] = 0              # same seed, same estimate


class SampleRequest(_Request):
    n: Annotated[int, Field(ge=1, le=MAX_N)] = 16
    temperature: Annotated[float, Field(gt=0, le=MAX_TEMPERATURE, allow_inf_nan=False)] = 1.0
    y: Label | None = None


class InterpolateRequest(_Request):
    i: Annotated[int, Field(ge=0)]
    j: Annotated[int, Field(ge=0)]
    steps: Annotated[int, Field(ge=2, le=MAX_STEPS)] = 8
    method: Literal["linear", "slerp"] = "linear"
    y: Label | None = None


SCHEMAS: dict[str, type[BaseModel]] = {
    "/api/decode": DecodeRequest, "/api/encode": EncodeRequest,
    "/api/sample": SampleRequest, "/api/interpolate": InterpolateRequest, "/api/likelihood": LikelihoodRequest,
}
