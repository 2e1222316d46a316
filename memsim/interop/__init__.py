"""Networks from other frameworks: NIR graphs (snnTorch, Norse, SpikingJelly, Sinabs, Rockpool, Lava) in memsim."""
from .nir import NIRError, NIRNetwork, export_nir, import_nir

__all__ = ["import_nir", "export_nir", "NIRNetwork", "NIRError"]
