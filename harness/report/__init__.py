"""Human-readable report and machine-readable evidence of a run (entry point: `stage.run`)."""
