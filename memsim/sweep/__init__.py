"""Design-space sweeps: a TOML spec of axes over crossbar presets, mappings, pruning and networks; a local process
pool or a Ray cluster; one atomic record per point; a results table with accuracy, energy, latency and area; plots."""
from .cost import CostModel, LayerActivity, layer_cost, load_cost_model, network_cost
from .spec import SweepError, SweepSpec, load_spec, parse_spec, point_key

__all__ = ["SweepSpec", "SweepError", "load_spec", "parse_spec", "point_key", "run_sweep", "dry_run", "table",
           "status", "plot_all", "CostModel", "LayerActivity", "layer_cost", "network_cost", "load_cost_model"]


def __getattr__(name):
    if name in ("run_sweep", "dry_run"):
        from . import runner
        return getattr(runner, name)
    if name in ("table", "status", "write_tables"):
        from . import results
        return getattr(results, name)
    if name == "plot_all":
        from .plots import plot_all
        return plot_all
    raise AttributeError(name)
