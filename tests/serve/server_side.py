"""Watching the server from inside its process, where HTTP cannot tell (tests only)."""

from __future__ import annotations

from typing import Any


def record_generations(engine: Any, monkeypatch: Any) -> list[int]:
    """A list that gets each generation's token count as it ends, on the server side; the real
    `generate` still does the work."""
    finished: list[int] = []
    generate = engine.generate

    def recorded(*args: Any, **kwargs: Any) -> Any:
        gen = generate(*args, **kwargs)
        finished.append(gen.n_tokens)
        return gen

    monkeypatch.setattr(engine, "generate", recorded)
    return finished
