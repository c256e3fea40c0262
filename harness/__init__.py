"""Fine-tune a code LLM on a team's git history and prove, before deploy, that it is better."""

__version__ = "0.1.0"
