"""A sweep point evaluator for tests/test_worker_death.py: a point whose ``tile.size`` is 13 kills its worker
process (as the operating system's out-of-memory killer would), any other returns a record at once. Module-level,
so that spawned pool workers can import it."""
import os
import time


def evaluate(resolved: dict) -> dict:
    if resolved["preset"].get("tile.size") == 13:
        os._exit(137)
    time.sleep(0.05)
    return {"config": resolved, "status": "ok", "metrics": {"accuracy": resolved["preset"]["tile.size"] / 100},
            "elapsed_s": 0.05}
