"""What a run records about its data (config.json's ``data`` entry): :class:`DataInfo` and its checked reader."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

BINARIZE = ("none", "dynamic", "static")
CROPS = ("center", "random", "squash")


@dataclass(frozen=True)
class DataInfo:
    name: str                      # dataset name or path it came from
    shape: tuple[int, ...]         # shape of one example, e.g. (1, 28, 28) or (3,)
    n_classes: int = 0             # number of label classes (0: unlabelled)
    is_image: bool = True          # True when examples are (C, H, W) pixels in [0, 1]
    binarize: str = "none"         # none | dynamic | static (Bernoulli draws of the pixels)
    size: int | None = None        # image folders: output side in pixels (resized, then cropped as `crop` says)
    class_names: tuple[str, ...] = ()  # label names, index = class id
    crop: str = "center"           # with size: center (short side resized, center square) | random (train batches
    #                                take random crops of a 1/8 larger resize, evaluation its center) | squash
    flip: bool = False             # training batches flipped left-right at random, p = 1/2 (image data)
    test_fraction: float | None = None  # share of the examples held out as the test split (None: the dataset's own)
    levels: int | None = None      # the data take the values k / (levels - 1), k = 0..levels-1: 256 for 8-bit
    #                                pixels, 2 for binary ones; None: continuous values (a density's support)

    def __post_init__(self) -> None:
        if self.binarize not in BINARIZE:
            raise ValueError(f"binarize={self.binarize!r} is not known; allowed: {list(BINARIZE)}")
        if self.crop not in CROPS:
            raise ValueError(f"crop={self.crop!r} is not known; allowed: {list(CROPS)}")
        if self.size is not None and self.size < 1:
            raise ValueError(f"size={self.size} must be >= 1")
        if self.test_fraction is not None and not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"test_fraction={self.test_fraction} must be in (0, 1)")
        if self.levels is not None and self.levels < 2:
            raise ValueError(f"levels={self.levels} must be >= 2 (or None for continuous data)")

    @property
    def dim(self) -> int:
        """Number of scalar values in one example."""
        return math.prod(self.shape)


def check_binarize(mode: str) -> str:
    if mode not in BINARIZE:
        raise ValueError(f"binarize={mode!r} is not known; allowed: {list(BINARIZE)}")
    return mode


_WHERE = "config.json"


def _bad(field: str, value: Any, rule: str) -> ValueError:
    text = repr(value)
    text = text if len(text) <= 60 else text[:57] + "..."
    return ValueError(f"{_WHERE} field data.{field}={text} must be {rule}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _optional_int(info: dict[str, Any], key: str, low: int) -> int | None:
    value = info.get(key)
    if value is not None and (not _is_int(value) or value < low):
        raise _bad(key, value, f"null or an integer >= {low}")
    return value


def info_from_dict(info: Any) -> DataInfo:
    """The recorded ``data`` entry of a config.json as a :class:`DataInfo`, every field type-checked.

    Runs recorded before crop existed resized by squashing: a missing ``crop`` with a ``size`` reads as
    'squash', so they reload the data they were trained on."""
    if isinstance(info, DataInfo):
        return info
    if not isinstance(info, dict):
        raise ValueError(f"{_WHERE} field 'data' must be an object with the dataset's name and shape; "
                         f"got a {type(info).__name__}")
    fields = {f.name for f in dataclasses.fields(DataInfo)}
    unknown = sorted(set(info) - fields)
    if unknown:
        raise ValueError(f"{_WHERE} field 'data' has unknown key(s) {unknown}; allowed: {sorted(fields)}")
    for need in ("name", "shape"):
        if need not in info:
            raise ValueError(f"{_WHERE} field 'data' lacks {need!r}")
    name, shape = info["name"], info["shape"]
    if not isinstance(name, str) or not name:
        raise _bad("name", name, "a non-empty string (a built-in dataset or a path)")
    if not isinstance(shape, (list, tuple)) or not shape or not all(_is_int(s) and s >= 1 for s in shape):
        raise _bad("shape", shape, "a list of integers >= 1")
    n_classes = info.get("n_classes", 0)
    if not _is_int(n_classes) or n_classes < 0:
        raise _bad("n_classes", n_classes, "an integer >= 0")
    is_image, flip = info.get("is_image", True), info.get("flip", False)
    for key, value in (("is_image", is_image), ("flip", flip)):
        if not isinstance(value, bool):
            raise _bad(key, value, "true or false")
    binarize = info.get("binarize", "none")
    if not isinstance(binarize, str) or binarize not in BINARIZE:
        raise _bad("binarize", binarize, f"one of {list(BINARIZE)}")
    size, levels = _optional_int(info, "size", 1), _optional_int(info, "levels", 2)
    crop = info.get("crop", "squash" if size is not None else "center")
    if not isinstance(crop, str) or crop not in CROPS:
        raise _bad("crop", crop, f"one of {list(CROPS)}")
    fraction = info.get("test_fraction")
    if fraction is not None and (isinstance(fraction, bool) or not isinstance(fraction, (int, float))
                                 or not 0.0 < fraction < 1.0):
        raise _bad("test_fraction", fraction, "null or a number in (0, 1)")
    names = info.get("class_names", [])
    if not isinstance(names, (list, tuple)) or not all(isinstance(c, str) for c in names):
        raise _bad("class_names", names, "a list of strings")
    return DataInfo(name=name, shape=tuple(shape), n_classes=n_classes, is_image=is_image, binarize=binarize,
                    size=size, class_names=tuple(names), crop=crop, flip=flip,
                    test_fraction=None if fraction is None else float(fraction), levels=levels)


def info_dict(info: DataInfo) -> dict[str, Any]:
    return {**dataclasses.asdict(info), "shape": list(info.shape), "class_names": list(info.class_names)}
