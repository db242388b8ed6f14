"""Drop-in nn.Modules of the paper's model: HA-Net (NFA, NFE), RE-GCN, the two heads, and the
two models answering one interface: the whole multi-task model (`HDML`) and its graph half on
given features (`HDMLOnFeatures`), listed by name in `MODELS`."""

from .base import EDGE_INPUTS, FGraphLinkModel, HDMLOutput
from .hanet import BACKBONES, HANet
from .hdml import HDML, HDMLOnFeatures
from .heads import EdgeHead, NodeHead
from .loss import link_loss
from .nfa import NFA
from .nfe import NFE
from .regcn import REGCN, NodeChannelAttention, REGCNLayer
from .registry import MODELS, model_from_config, model_name

__all__ = ["BACKBONES", "EDGE_INPUTS", "HDML", "MODELS", "NFA", "NFE", "REGCN", "EdgeHead", "FGraphLinkModel",
           "HANet", "HDMLOnFeatures", "HDMLOutput", "NodeChannelAttention", "NodeHead", "REGCNLayer",
           "link_loss", "model_from_config", "model_name"]
