"""Where the project's own files live (conf/, judges/, datasets/benchmarks/), independent of
the directory the user runs `harness` from."""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = PROJECT_ROOT / "conf"


def project_path(path: str | Path) -> Path:
    """`path` as given if it exists (relative to the cwd), else relative to the project root."""
    p = Path(path).expanduser()
    return p if p.is_absolute() or p.exists() else PROJECT_ROOT / p
