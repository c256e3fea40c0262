"""Shared fixtures: the offline tiny model (built once per session) and real git repos."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def harness_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("harness-cache")


@pytest.fixture(scope="session")
def tiny_model(harness_cache) -> str:
    """Directory of the tiny Llama + tokenizer (random weights, ChatML template, FIM tokens)."""
    from harness.models.tiny import build_tiny_model

    return str(build_tiny_model(harness_cache))


def git(repo: Path, *args: str, env: dict | None = None) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True, env={**os.environ, **(env or {})}).stdout.strip()
