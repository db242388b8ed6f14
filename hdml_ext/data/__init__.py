"""Dataset readers: Market-1501 / DukeMTMC-reID folders, identity-per-folder image trees,
pre-extracted features (.npy, face-clustering .bin/.meta), scikit-learn's digits as an embedded
data set, and torch Datasets over images."""

from .digits import load_digits_features, load_digits_reid
from .face_bin import read_bin_meta
from .features import read_features, read_labels
from .image_dataset import ImageDataset, TensorImageDataset
from .image_folder import read_image_folder
from .open import DATASET_KINDS, DatasetError, DataSettings, OpenedDataset, Rows, open_dataset
from .records import FeatureSet, ImageRecord, ReIDRecord, ReIDSplits, TensorSplit, TensorSplits
from .reid import parse_reid_name, read_dukemtmc, read_market1501, read_reid_folders, read_reid_split
from .sampler import FGraphBatch, FGraphSampler, gather_rows

__all__ = [
    "DATASET_KINDS",
    "DataSettings",
    "DatasetError",
    "FGraphBatch",
    "FGraphSampler",
    "FeatureSet",
    "ImageDataset",
    "ImageRecord",
    "OpenedDataset",
    "ReIDRecord",
    "ReIDSplits",
    "Rows",
    "TensorImageDataset",
    "TensorSplit",
    "TensorSplits",
    "gather_rows",
    "load_digits_features",
    "load_digits_reid",
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
]
