"""Data: the built-in semi-synthetic set, loaders for local data sets, joint transforms, region caches, export.

Names are imported on first use, so that light commands (e.g. reading the data cache) do not load torch.
"""

from importlib import import_module

_EXPORTS = {
    "SemiSyntheticConfig": "p2pvision.data.semisynthetic",
    "build_semisynthetic": "p2pvision.data.semisynthetic",
    "SemiSyntheticDataset": "p2pvision.data.builtin",
    "RegionDataset": "p2pvision.data.region_cache",
    "region_maps": "p2pvision.data.region_cache",
    "export_image_folder": "p2pvision.data.export",
    "FileListDataset": "p2pvision.data.folders",
    "ImageFolderDataset": "p2pvision.data.folders",
    "MaskedImageDataset": "p2pvision.data.folders",
    "BamDataset": "p2pvision.data.folders",
    "COCO10_CLASSES": "p2pvision.data.folders",
    "BAM_OBJECT_CLASSES": "p2pvision.data.folders",
    "BAM_SCENE_CLASSES": "p2pvision.data.folders",
    "IMAGE_EXTENSIONS": "p2pvision.data.folders",
    "Cifar10Dataset": "p2pvision.data.cifar",
    "CIFAR10_CLASSES": "p2pvision.data.cifar",
    "ImageNetDataset": "p2pvision.data.imagenet",
    "ImageNet9Dataset": "p2pvision.data.imagenet",
    "IMAGENET9_CLASSES": "p2pvision.data.imagenet",
    "IMAGENET9_VARIANTS": "p2pvision.data.imagenet",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'p2pvision.data' has no attribute '{name}'")
    return getattr(import_module(_EXPORTS[name]), name)
