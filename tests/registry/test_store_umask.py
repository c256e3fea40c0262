"""A team registry is readable by the team: promoted files follow the user's umask, also for
adapters whose weights were written 0600 (safetensors does that)."""

from __future__ import annotations

import os
import stat

from conftest import make_adapter

from harness.io import sha256_tree
from harness.registry.store import Registry


def test_a_promoted_version_and_the_registry_files_follow_the_umask(tmp_path, tiny_model):
    old = os.umask(0o022)
    try:
        adapter = tmp_path / "adapter"
        make_adapter(tiny_model, adapter)
        weights = adapter / "adapter_model.safetensors"
        os.chmod(weights, 0o600)  # as safetensors leaves it under some versions
        with Registry.open(tmp_path / "registry") as reg:
            reg.promote("proj", adapter, sha256_tree(adapter), {"base_model": tiny_model},
                        {"action": "promote", "run": "r1"})
            version = reg.live("proj")
        files = [p for p in (tmp_path / "registry").rglob("*") if p.is_file() and not p.is_symlink()]
        modes = {str(p.relative_to(tmp_path / "registry")): stat.S_IMODE(p.stat().st_mode) for p in files}
        assert version / "adapter" / "adapter_model.safetensors" in files
        assert {m for name, m in modes.items() if name != ".lock"} == {0o644}, modes
    finally:
        os.umask(old)
