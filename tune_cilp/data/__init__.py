"""Data layer: raw course files, the synthetic generator, FiftyOne, and arrays for training."""

from tune_cilp.data.arrays import LABELS, CilpArrays
from tune_cilp.data.fiftyone_io import add_predictions, export_dataset, import_export, ingest_raw
from tune_cilp.data.fiftyone_load import load_dataset_arrays
from tune_cilp.data.load import (
    default_data_dir,
    default_raw_dir,
    detect_source,
    ensure_default_raw,
    load_arrays,
)
from tune_cilp.data.split import DEFAULT_SPLIT, split_mask
from tune_cilp.data.synthetic import generate_raw
from tune_cilp.data.xyza import depth_to_xyza

__all__ = [
    "DEFAULT_SPLIT",
    "LABELS",
    "CilpArrays",
    "add_predictions",
    "default_data_dir",
    "default_raw_dir",
    "depth_to_xyza",
    "detect_source",
    "ensure_default_raw",
    "export_dataset",
    "generate_raw",
    "import_export",
    "ingest_raw",
    "load_arrays",
    "load_dataset_arrays",
    "split_mask",
]
