"""Moved to harness/sweep.py (sweeps rank whole runs, not training). This name stays only because
conf/hydra/callbacks/sweep_summary.yaml (`_target_: harness.train.sweep.SweepSummary`) and
older notes point here; drop it once they name harness.sweep."""

from harness.sweep import SweepSummary, objective, task_result

__all__ = ["SweepSummary", "objective", "task_result"]
