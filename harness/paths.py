"""Where the project's own files live (conf/, judges/, datasets/benchmarks/), independent of
the directory the user runs `harness` from."""

from __future__ import annotations

import re
from pathlib import Path

from harness.errors import HarnessError

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = PROJECT_ROOT / "conf"


def project_path(path: str | Path) -> Path:
    """`path` as given if it exists (relative to the cwd), else relative to the project root."""
    p = Path(path).expanduser()
    return p if p.is_absolute() or p.exists() else PROJECT_ROOT / p


# A run name becomes a directory under runs/ and reports/: one plain path component.
RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def check_run_name(name: object) -> str:
    """`name` if it is a plain directory name, else a HarnessError naming the rule and the fix
    (`run_name=../../x` or `/abs` would otherwise write outside runs/)."""
    text = str(name)
    if not RUN_NAME.fullmatch(text):
        raise HarnessError(
            f"run_name={text!r} is not a plain name: it becomes runs/<run_name>/, so it must start "
            "with a letter or digit and hold only letters, digits and . _ - (no '/', no "
            "'..' path, at most 128 characters). Fix: pass e.g. run_name=my-run-1."
        )
    return text
