"""Mine a git repository into training records (entry point: `stage.run`)."""
