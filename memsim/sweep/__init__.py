"""Design-space sweeps: a TOML spec of axes over crossbar presets, mappings, pruning and networks; a local process
pool or a Ray cluster; one atomic record per point; a results table with accuracy, energy, latency and area; plots."""
from .cost import CostModel, LayerActivity, layer_cost, load_cost_model, network_cost
from .plots import plot_all
from .results import status, table, write_tables
from .runner import dry_run, run_sweep
from .spec import SweepError, SweepSpec, load_spec, parse_spec, point_key

__all__ = ["SweepSpec", "SweepError", "load_spec", "parse_spec", "point_key", "run_sweep", "dry_run", "table",
           "status", "plot_all", "CostModel", "LayerActivity", "layer_cost", "network_cost", "load_cost_model"]
