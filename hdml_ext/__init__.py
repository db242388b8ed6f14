"""hdml_ext: C++/CUDA kernels and PyTorch modules for Hierarchical Deep Multi-task Learning
with Attention Mechanism for Similarity Learning (HDML).

    import hdml_ext
    dist, idx = hdml_ext.ops.knn(features, k=50)
    adj = hdml_ext.ops.fgraph_adjacency(idx)
"""

import torch  # noqa: F401  (loads libtorch, which _C links against)

from ._version import __version__

try:
    from . import _C  # noqa: F401  (loading the library registers torch.ops.hdml.*)
except ImportError as error:  # pragma: no cover - only without a build
    raise ImportError(
        "hdml_ext's compiled kernels (hdml_ext._C) could not be loaded: "
        f"{error}. Build them with `pip install --no-build-isolation -e .` "
        "from the source checkout (see README.md)."
    ) from error

from . import cluster, data, engine, graph, metrics, nn, ops, reid

__all__ = ["__version__", "cluster", "data", "engine", "graph", "metrics", "nn", "ops", "reid"]
