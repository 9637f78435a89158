"""Regions: partitioners that split images into regions, and batched torch ops between pixels and regions."""

from p2pvision.regions.ops import (
    num_regions,
    region_adjacency,
    region_areas,
    region_mean,
    region_sum,
    region_to_pixel,
    relabel_contiguous,
)
from p2pvision.regions.partition import (
    FelzenszwalbPartitioner,
    GridPartitioner,
    Partitioner,
    PixelPartitioner,
    SlicPartitioner,
    WatershedPartitioner,
    fast_slic_available,
    make_partitioner,
    merge_small_regions,
    partition_batch,
    partitioner_names,
    resolve_slic_backend,
)

__all__ = [
    "FelzenszwalbPartitioner",
    "GridPartitioner",
    "Partitioner",
    "PixelPartitioner",
    "SlicPartitioner",
    "WatershedPartitioner",
    "fast_slic_available",
    "make_partitioner",
    "merge_small_regions",
    "num_regions",
    "partition_batch",
    "partitioner_names",
    "region_adjacency",
    "region_areas",
    "region_mean",
    "region_sum",
    "region_to_pixel",
    "relabel_contiguous",
    "resolve_slic_backend",
]
