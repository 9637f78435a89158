"""P2P: instance-wise grouped feature selection ("From Pixels to Perception", ICML 2025)."""

from p2pvision.models.p2p.checkpoint import load_p2p, save_p2p
from p2pvision.models.p2p.config import P2PConfig
from p2pvision.models.p2p.model import P2PModel

__all__ = ["P2PConfig", "P2PModel", "load_p2p", "save_p2p"]
