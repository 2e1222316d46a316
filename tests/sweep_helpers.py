"""A tiny digits MSNN checkpoint and sweep specs for the sweep tests (seconds, not minutes)."""
from pathlib import Path

from memsim.training.config import parse_config
from memsim.training.loop import train


def tiny_checkpoint(folder: Path, layers=(64, 12, 10)) -> Path:
    cfg = parse_config({"network": {"layers": list(layers), "time_steps": 6},
                        "training": {"epochs": 1, "batch_size": 64, "learning_rate": 2e-2},
                        "output": {"dir": str(folder / "run"), "plot": False}}, source="tiny")
    return Path(train(cfg, progress=False, log=lambda *_: None, max_batches=6).checkpoint)


def write_spec(folder: Path, ckpt: Path, axes: str, base_extra: str = "", name: str = "tiny") -> Path:
    p = folder / f"{name}.toml"
    p.write_text(f'name = "{name}"\n[base]\ncheckpoint = "{ckpt}"\npreset = "hfox_1t1r_64"\nmode = "noisy"\n'
                 f'chips = 2\nlimit = 120\n{base_extra}\n[axes]\n{axes}\n')
    return p


def tiny_ann_checkpoint(folder: Path, layers=(64, 16, 10)) -> Path:
    cfg = parse_config({"network": {"kind": "ann", "layers": list(layers)},
                        "training": {"epochs": 1, "batch_size": 64},
                        "output": {"dir": str(folder / "ann"), "plot": False}}, source="tiny ann")
    return Path(train(cfg, progress=False, log=lambda *_: None, max_batches=6).checkpoint)
