"""Train a LoRA/QLoRA adapter on the formatted dataset (entry point: `stage.run`)."""
