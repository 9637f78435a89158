"""Data: the built-in semi-synthetic set, loaders for local data sets, joint transforms, export."""

from p2pvision.data.semisynthetic import SemiSyntheticConfig, SemiSyntheticDataset, semisynthetic

__all__ = ["SemiSyntheticConfig", "SemiSyntheticDataset", "semisynthetic"]
