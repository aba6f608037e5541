"""Data layer: raw files, the synthetic generator, FiftyOne, and arrays for training.

The formats, the XYZA conversion and the FiftyOne layout are described in docs/DATA.md.

Public surface (what the other layers use):
- ``load_arrays(source=None, ...)``: the one loading function; any source -> CilpArrays.
- ``CilpArrays`` and the facts ``LABELS``, ``IMAGE_SIZE``, ``MAX_RANGE``, ``DEFAULT_SEED``.
- ``generate_raw``: the synthetic generator; ``ensure_default_raw``, ``default_data_dir``,
  ``synthetic_set``, ``is_synthetic``, ``DEFAULT_SOURCE``: the built-in synthetic sets
  (``synthetic:seed``, the default, and ``synthetic:balanced``) and where they live.
- ``detect_source``: which kind a source is ("raw", "export", "synthetic", "fiftyone").
- FiftyOne: ``ingest_raw``, ``import_export``, ``export_dataset``, ``add_predictions``.
- ``depth_to_xyza``: the XYZA conversion.
- ``held_out_mask``, ``check_test_fraction``: the optional test split (``--test-fraction``), a
  seeded, class-stratified share of the validation scenes.

Everything else (the per-source readers ``read_raw``, ``read_export``, ``read_dataset``,
``read_default``, the split helpers) is internal to the package.
"""

from tune_cilp.data.arrays import CilpArrays
from tune_cilp.data.constants import DEFAULT_SEED, IMAGE_SIZE, LABELS, MAX_RANGE
from tune_cilp.data.default_set import (
    DEFAULT_SOURCE,
    default_data_dir,
    ensure_default_raw,
    is_synthetic,
    synthetic_set,
)
from tune_cilp.data.fiftyone_data import add_predictions, export_dataset, import_export, ingest_raw
from tune_cilp.data.load import DATASET_FLAGS, detect_source, load_arrays
from tune_cilp.data.split import check_test_fraction, held_out_mask
from tune_cilp.data.synthetic import generate_raw
from tune_cilp.data.xyza import depth_to_xyza

__all__ = [
    "DATASET_FLAGS",
    "DEFAULT_SEED",
    "DEFAULT_SOURCE",
    "IMAGE_SIZE",
    "LABELS",
    "MAX_RANGE",
    "CilpArrays",
    "add_predictions",
    "check_test_fraction",
    "default_data_dir",
    "depth_to_xyza",
    "detect_source",
    "ensure_default_raw",
    "export_dataset",
    "generate_raw",
    "held_out_mask",
    "import_export",
    "ingest_raw",
    "is_synthetic",
    "load_arrays",
    "synthetic_set",
]
