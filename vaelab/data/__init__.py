"""Datasets as tensors: embedded digits, MNIST (IDX, checksummed download), swiss roll, image folders, arrays."""
from .datasets import (  # noqa: F401
    BINARIZE, BUILTIN, DataInfo, Dataset, batches, check_binarize, check_finite, for_evaluation, info_dict, load_dataset,
    load_from_info, split_validation,
)
from .paths import DATA_DIR_ENV, find_cache_dir, find_data_dir  # noqa: F401
from .datasets import info_from_dict  # noqa: F401
from .recorded import data_roots, load_recorded, resolve_recorded  # noqa: F401
