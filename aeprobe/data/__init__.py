"""Offline data generators and loaders: Newson's disks and Diracs, simple shapes, bundled images.

Everything returns tensors (on ``device``) ready for :func:`aeprobe.train.train`; no DataLoader
and no download is ever needed.
"""
from aeprobe.data.diracs import one_hots, random_positions, triangular_diracs
from aeprobe.data.images import (PATCH_SOURCES, digits, image_folder, image_patches, read_idx, resize,
                                 torchvision_dataset)
from aeprobe.data.shapes import ShapeBatch, disks, ellipses, sample_radii, squares

__all__ = ["ShapeBatch", "disks", "squares", "ellipses", "sample_radii", "one_hots", "triangular_diracs",
           "random_positions", "PATCH_SOURCES", "digits", "image_patches", "image_folder", "torchvision_dataset",
           "read_idx", "resize"]
