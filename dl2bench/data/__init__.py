"""Datasets as uint8 tensors: where they are found (sources), how they are stored (formats), the
image datasets the families share (datasets), splits (splits) and batches (batches). A family
with data of its own kind adds one module here (e.g. `shapes` for segmentation)."""
from .batches import LoaderBatches, ResidentBatches, random_crop_flip, split_batches
from .datasets import IMAGE_DATASETS, load
from .formats import (CIFAR10_CLASSES, IMAGE_SUFFIXES, load_cifar_pickles, load_idx_folder, load_image_folder,
                      load_image_tar, read_idx)
from .sources import DatasetNotFound, Source, cache_dir, default_roots, find, search_roots
from .splits import SPLIT_SEED, Raw, Splits, make_splits, one_per_class, test_split

__all__ = ["CIFAR10_CLASSES", "LoaderBatches", "ResidentBatches", "random_crop_flip", "split_batches", "IMAGE_DATASETS", "load", "IMAGE_SUFFIXES",
           "load_cifar_pickles", "load_idx_folder", "load_image_folder", "load_image_tar", "read_idx",
           "DatasetNotFound", "Source", "cache_dir", "default_roots", "find", "search_roots", "SPLIT_SEED",
           "Raw", "Splits", "make_splits", "one_per_class", "test_split"]
