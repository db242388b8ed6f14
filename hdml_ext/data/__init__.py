"""Dataset readers: Market-1501 / DukeMTMC-reID folders, identity-per-folder image trees,
pre-extracted features (.npy, face-clustering .bin/.meta), scikit-learn's digits as embedded
data sets (closed-set `digits`, open-set `digit_instances`), and torch Datasets over images."""

from .digit_instances import load_digit_instances_reid
from .digits import load_digits_features, load_digits_reid
from .face_bin import read_bin_meta
from .features import read_features, read_labels
from .image_dataset import ImageDataset, ImageReadError, TensorImageDataset
from .image_folder import read_image_folder
from .open import (
    DATASET_KINDS,
    DatasetError,
    DataSettings,
    DataSplit,
    OpenedDataset,
    input_pipeline,
    load_embedded_splits,
    open_dataset,
)
from .records import FeatureSet, ImageRecord, ReIDRecord, ReIDSplits, TensorSplit, TensorSplits
from .reid import parse_reid_name, read_dukemtmc, read_market1501, read_reid_folders, read_reid_split
from .rows import RowSource, iter_rows, read_rows, source_length
from .sampler import FGraphBatch, FGraphSampler

__all__ = [
    "DATASET_KINDS",
    "DataSettings",
    "DataSplit",
    "DatasetError",
    "FGraphBatch",
    "FGraphSampler",
    "FeatureSet",
    "ImageDataset",
    "ImageReadError",
    "ImageRecord",
    "OpenedDataset",
    "ReIDRecord",
    "ReIDSplits",
    "RowSource",
    "TensorImageDataset",
    "TensorSplit",
    "TensorSplits",
    "input_pipeline",
    "iter_rows",
    "load_digit_instances_reid",
    "load_digits_features",
    "load_digits_reid",
    "load_embedded_splits",
    "open_dataset",
    "parse_reid_name",
    "read_bin_meta",
    "read_dukemtmc",
    "read_features",
    "read_image_folder",
    "read_labels",
    "read_market1501",
    "read_reid_folders",
    "read_reid_split",
    "read_rows",
    "source_length",
]
