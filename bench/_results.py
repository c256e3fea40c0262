"""Where every benchmark writes its JSON result, with the machine it ran on."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def write_result(name: str, result: dict) -> Path:
    """bench/results/<name>.json (git-ignored), plus cores, Python and the 1-minute load."""
    machine = {"cpus": os.cpu_count(), "python": platform.python_version(),
               "load_avg_1m": os.getloadavg()[0]}
    out = RESULTS / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**result, "machine": machine}, indent=2) + "\n")
    return out
