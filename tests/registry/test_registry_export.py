"""Promotion with export.on_promote: the registry keeps the verified GGUF files, Modelfile and
merged model beside the adapter, with checksums, and rollback brings the previous ones back."""

from __future__ import annotations

from pathlib import Path

import pytest
from registry_runs import compose, three_runs

from harness.errors import HarnessError
from harness.io import read_json, sha256_file
from harness.registry.commands import live_exports, promote, rollback, status
from harness.registry.store import Registry
from harness.rundir import MANIFEST

EXPORT = ["export.on_promote=true", "export.types=[f16]", "export.ollama.type=f16",
          "export.verify.new_tokens=4"]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runs(tiny_model, tmp_path_factory) -> dict[str, Path]:
    return three_runs(tiny_model, tmp_path_factory.mktemp("runs"))


def live_gguf_sha(registry: Path) -> str:
    export = Path(live_exports(registry)["project"])
    return sha256_file(next(export.glob("gguf/*-f16.gguf")))


def test_promotion_keeps_the_export_and_rollback_restores_the_previous_one(runs, tmp_path):
    registry = tmp_path / "registry"
    first = promote(compose(runs["r1"], [f"registry.dir={registry}", *EXPORT]))
    info = read_json(registry / "project" / "versions" / "v0001" / "inference.json")
    assert info["export"]["gguf"]["f16"]["status"] == "pass"
    assert first["export_sha256"] == sha256_file(runs["r1"] / "export" / MANIFEST)
    r1_gguf = sha256_file(next((runs["r1"] / "export" / "gguf").glob("*-f16.gguf")))
    assert live_gguf_sha(registry) == r1_gguf
    assert (Path(live_exports(registry)["project"]) / "gguf" / "Modelfile").exists()

    promote(compose(runs["r2"], [f"registry.dir={registry}", *EXPORT]))
    assert live_gguf_sha(registry) != r1_gguf  # another adapter, another model
    assert "export" in status(compose(runs["r2"], [f"registry.dir={registry}"]))["names"]["project"]

    rollback(compose(runs["r2"], [f"registry.dir={registry}"]))
    assert live_gguf_sha(registry) == r1_gguf

    live = Registry(registry).live("project")
    with open(live / "export" / "gguf" / "Modelfile", "a") as f:
        f.write("PARAMETER temperature 2\n")
    with pytest.raises(HarnessError, match="modified by hand"):
        live_exports(registry)


def test_a_run_the_gate_refused_is_not_exported(runs, tmp_path):
    with pytest.raises(HarnessError, match="only a deploy"):
        promote(compose(runs["bad"], [f"registry.dir={tmp_path / 'registry'}", *EXPORT]))
    assert not (runs["bad"] / "export").exists() and not (runs["bad"] / "export.partial").exists()
