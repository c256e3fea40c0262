"""Format mined records into a tokenized chat + FIM dataset (entry point: `stage.run`)."""
