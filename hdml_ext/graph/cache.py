"""The `cache=` file of `build_fgraphs`: `FGraphs` saved with a fingerprint of the features
they were built from. A cache is reused only for the same features; a path holding anything
else is refused and never overwritten (docs/graph.md, "Cache")."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np

from .feature_blocks import FeatureBlocks
from .fgraphs import FILE_FORMAT, FGraphs, read_npz

logger = logging.getLogger(__name__)

#: Rows hashed into a fingerprint (a seeded sample, plus the first and the last row).
FINGERPRINT_ROWS = 1024
_SEED = 1234


def fingerprint(rows: FeatureBlocks) -> str:
    """A JSON string naming the features: shape [N, D], dtype, and the SHA-256 of a seeded
    sample of up to `FINGERPRINT_ROWS` rows. Data of another shape or dtype, or differing in
    any sampled row, give another fingerprint (a change confined to unsampled rows does not)."""
    rng = np.random.default_rng(_SEED)
    sample = rng.choice(rows.num_rows, size=min(rows.num_rows, FINGERPRINT_ROWS), replace=False)
    ids = np.unique(np.concatenate([sample, [0, rows.num_rows - 1]]))
    values = np.ascontiguousarray(rows.rows(ids).cpu().numpy())
    return json.dumps({"shape": [rows.num_rows, rows.dim], "dtype": rows.dtype, "sampled_rows": int(ids.size),
                       "sha256": hashlib.sha256(values.tobytes()).hexdigest()}, sort_keys=True)


def load_cache(path: str | os.PathLike, features_fingerprint: str, k: int) -> FGraphs | None:
    """The first k columns of the cache at `path` when it was built from the features of
    `features_fingerprint` with >= k columns; None when it should be (re)built: no file yet, a
    cache of other features or of fewer columns, or a damaged cache (logged).

    Raises ValueError when `path` holds anything but a cache written by `build_fgraphs` (a
    folder, another .npz, an .npy, a `FGraphs.save` file without a fingerprint): it is left as it is.
    """
    path = Path(path)
    if not path.exists():
        return None
    marks = _marks(path)
    if marks.get("format") != FILE_FORMAT or not marks.get("fingerprint"):
        raise ValueError(
            f"cache should be a path to a kNN cache written by build_fgraphs, or a path that does not "
            f"exist yet; got {path}, which holds something else (left untouched: remove it or pass "
            "another path)"
        )
    if marks["fingerprint"] != features_fingerprint:
        logger.info("build_fgraphs: cache %s was built from other features (%s, now %s); rebuilding it",
                    path, marks["fingerprint"], features_fingerprint)
        return None
    try:
        graphs = FGraphs.load(path)
    except ValueError as error:
        logger.warning("build_fgraphs: cache %s is damaged (%s); rebuilding it", path, error)
        return None
    num_rows = json.loads(features_fingerprint)["shape"][0]
    if graphs.num_nodes != num_rows:
        logger.warning("build_fgraphs: cache %s is damaged (%d rows for N=%d); rebuilding it",
                       path, graphs.num_nodes, num_rows)
        return None
    if graphs.k < k:
        logger.info("build_fgraphs: cache %s holds k=%d columns, k=%d are needed; rebuilding it",
                    path, graphs.k, k)
        return None
    reason = f"loaded from cache {path} (computed by {graphs.backend}: {graphs.reason})"
    graphs = graphs.with_k(k)
    graphs.reason = reason
    logger.info("build_fgraphs: %s", graphs.reason)
    return graphs


def _marks(path: Path) -> dict[str, str]:
    """The "format" and "fingerprint" strings of the file at `path` ({} when it is no .npz)."""
    if not path.is_file():
        return {}
    try:
        return {key: str(value) for key, value in read_npz(path, ("format", "fingerprint")).items()}
    except ValueError:
        return {}
