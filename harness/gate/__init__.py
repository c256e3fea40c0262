"""The deploy gate: thresholds frozen before eval, paired statistics, a verdict."""
