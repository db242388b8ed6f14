"""Drop-in nn.Modules of the paper's model: HA-Net (NFA, NFE), RE-GCN, the two heads, and the
whole multi-task model (`HDML`) or its graph half on given features (`HDMLOnFeatures`)."""

from .hanet import BACKBONES, HANet
from .hdml import HDML, HDMLOnFeatures, HDMLOutput
from .heads import EdgeHead, NodeHead
from .nfa import NFA
from .nfe import NFE
from .regcn import REGCN, NodeChannelAttention, REGCNLayer

#: Every model by the name its checkpoints record.
MODELS = {"HDML": HDML, "HDMLOnFeatures": HDMLOnFeatures}

__all__ = ["BACKBONES", "HDML", "MODELS", "NFA", "NFE", "REGCN", "EdgeHead", "HANet", "HDMLOnFeatures",
           "HDMLOutput", "NodeChannelAttention", "NodeHead", "REGCNLayer"]
