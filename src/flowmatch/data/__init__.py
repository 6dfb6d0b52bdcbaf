"""Datasets: built-in 2-D toy sets and tabular files (``.csv``, ``.npy``)."""

from flowmatch.data.tabular import DataError, Standardizer, Table, load_table
from flowmatch.data.toy2d import (
    CHECKERBOARD_LOG_DENSITY,
    TOY_DATASETS,
    ToyDataset,
    checkerboard_log_prob,
    eight_gaussians_params,
    list_toy,
    sample_toy,
)

__all__ = [
    "CHECKERBOARD_LOG_DENSITY",
    "TOY_DATASETS",
    "DataError",
    "Standardizer",
    "Table",
    "ToyDataset",
    "checkerboard_log_prob",
    "eight_gaussians_params",
    "list_toy",
    "load_table",
    "sample_toy",
]
