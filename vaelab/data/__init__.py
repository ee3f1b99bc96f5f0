"""Datasets as tensors: embedded digits and photos32, MNIST, Fashion-MNIST and CIFAR-10 (checksummed
downloads), swiss roll, shapes (drawn sprites with ground-truth factors), image folders, arrays; 8-bit data
stays uint8 until the batch."""
from .datasets import (  # noqa: F401
    BINARIZE, BUILTIN, CROPS, DataInfo, Dataset, batches, check_binarize, check_finite, data_options,
    for_evaluation, info_dict, load_dataset, load_from_info, split_validation,
)
from .store import dequantize  # noqa: F401
from ..fileio import find_cache_dir  # noqa: F401  (the cache root lives at the bottom layer)
from .paths import DATA_DIR_ENV, find_data_dir  # noqa: F401
from .datasets import info_from_dict  # noqa: F401
from .recorded import data_roots, load_recorded, resolve_recorded  # noqa: F401
