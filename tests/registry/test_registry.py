"""Promote and roll back real adapters; kill the promotion at every step and check that the
old live model stays live (or the new one is completely live), never anything in between."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from registry_runs import compose, make_run, three_runs

from harness.errors import HarnessError
from harness.io import read_json, sha256_tree
from harness.registry.commands import live_adapters, promote, promote_run, rollback, status
from harness.registry.store import Registry
from harness.rundir import STAGE_JSON
from harness.serve.cli import adapters_for


@pytest.fixture(scope="module")
def runs(tiny_model, tmp_path_factory) -> dict[str, Path]:
    return three_runs(tiny_model, tmp_path_factory.mktemp("runs"))


def live_sha(registry: Path, name: str = "project") -> str:
    """The sha256 of what the registry says is live, verified against its manifest."""
    live = Registry(registry).live(name)
    info = read_json(live / "inference.json")
    assert sha256_tree(live / "adapter") == info["adapter_sha256"]
    return info["adapter_sha256"]


def adapter_sha(run: Path) -> str:
    return sha256_tree(run / "train" / "adapter")


def test_promote_keeps_the_previous_version_and_rollback_restores_it(runs, tmp_path, tiny_model):
    registry = tmp_path / "registry"
    first = promote(compose(runs["r1"], [f"registry.dir={registry}"]))
    assert first["version"] == "v0001" and first["decision"] == "deploy" and not first["forced"]
    info = read_json(registry / "project" / "versions" / "v0001" / "inference.json")
    assert info["base_model"]["ref"] == tiny_model
    assert info["adapter_sha256"] == adapter_sha(runs["r1"])
    assert info["tokenizer"]["hash"] and "tokenizer.json" in info["tokenizer"]["files_sha256"]
    assert info["source"]["run"] == "r1" and info["source"]["decision"] == "deploy"

    promote(compose(runs["r2"], [f"registry.dir={registry}"]))
    assert live_sha(registry) == adapter_sha(runs["r2"])
    assert Registry(registry).state("project")["previous"] == ["v0001"]
    assert os.readlink(registry / "project" / "live") == "versions/v0002"

    back = rollback(compose(runs["r2"], [f"registry.dir={registry}", "registry.reason=latency"]))
    assert back["version"] == "v0001" and back["replaced"] == "v0002"
    assert live_sha(registry) == adapter_sha(runs["r1"])
    with pytest.raises(HarnessError, match="no previous version"):
        rollback(compose(runs["r2"], [f"registry.dir={registry}"]))

    # promoting r2 again reuses its stored version instead of copying it
    assert promote_run(runs["r2"], registry)["version"] == "v0002"
    history = Registry(registry).history()
    assert [(e["seq"], e["action"], e["version"]) for e in history] == [
        (1, "promote", "v0001"), (2, "promote", "v0002"), (3, "rollback", "v0001"),
        (4, "promote", "v0002")]
    assert history[2]["reason"] == "latency" and all(e["user"] for e in history)
    shown = status(compose(runs["r2"], [f"registry.dir={registry}"]))
    assert shown["names"]["project"]["live"] == "v0002"


def test_only_a_deploy_verdict_is_promoted_unless_forced_with_a_reason(runs, tmp_path):
    registry = tmp_path / "registry"
    with pytest.raises(HarnessError, match=r"no-deploy .*--force"):
        promote_run(runs["bad"], registry)
    with pytest.raises(HarnessError, match="needs a reason"):
        promote_run(runs["bad"], registry, force=True, reason="  ")
    assert Registry(registry).names() == []
    event = promote(compose(runs["bad"], [f"registry.dir={registry}", "registry.force=true",
                                          "registry.reason='hotfix, approved by the team lead'",
                                          "registry.name=svc"]))
    assert event["forced"] and event["decision"] == "no-deploy"
    assert Registry(registry).history()[0]["reason"] == "hotfix, approved by the team lead"
    assert live_sha(registry, "svc") == adapter_sha(runs["bad"])


def test_an_adapter_changed_after_training_or_after_eval_is_refused(tiny_model, tmp_path):
    registry = tmp_path / "registry"
    run = make_run(tmp_path / "runs", "edited", tiny_model, seed=4)
    weights = run / "train" / "adapter" / "adapter_model.safetensors"
    original = weights.read_bytes()
    weights.write_bytes(original[:-8] + b"\0" * 8)
    with pytest.raises(HarnessError, match="modified after training"):
        promote_run(run, registry)
    weights.write_bytes(original)
    stamp = (run / "gate" / STAGE_JSON).stat().st_mtime + 60
    os.utime(run / "train" / STAGE_JSON, (stamp, stamp))  # trained again after the verdict
    with pytest.raises(HarnessError, match="trained again after it was evaluated"):
        promote_run(run, registry)
    assert not (registry / "project").exists()


KILL = """
import os, signal, sys
from harness.registry import store
from harness.registry.commands import promote_run

step, run, registry = sys.argv[1:]
kill = lambda: os.kill(os.getpid(), signal.SIGKILL)
if step == "copying":
    copy, copied = store._copy, []
    def _copy(src, dst):
        copied.append(src)
        if len(copied) == 2:
            kill()
        return copy(src, dst)
    store._copy = _copy
else:
    method = {"staged": "_stage_version", "committed": "_commit", "linked": "_link"}[step]
    original = getattr(store.Registry, method)
    def after(self, *args):
        result = original(self, *args)
        kill()
        return result
    setattr(store.Registry, method, after)
promote_run(run, registry)
"""


@pytest.mark.parametrize("step, committed", [("copying", False), ("staged", False),
                                             ("committed", True), ("linked", True)])
def test_a_promotion_killed_at_any_step_leaves_one_complete_live_model(runs, tmp_path, step,
                                                                        committed, tiny_model):
    registry = tmp_path / "registry"
    promote_run(runs["r1"], registry)
    res = subprocess.run([sys.executable, "-c", KILL, step, str(runs["r2"]), str(registry)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == -9, res.stderr[-2000:]

    # straight after the kill, before anything repairs it: the live model is complete
    expected = adapter_sha(runs["r2" if committed else "r1"])
    assert live_sha(registry) == expected
    with Registry.open(registry) as reg:  # the next writer finishes or undoes the promotion
        assert not list(registry.glob("project/versions/.*"))
        assert os.readlink(registry / "project" / "live") == f"versions/{reg.state('project')['live']}"
        history = reg.history()
    assert list(live_adapters(registry, tiny_model)) == ["project"]
    assert [e["run"] for e in history] == (["r1", "r2"] if committed else ["r1"])
    assert [e["seq"] for e in history] == list(range(1, len(history) + 1))
    # and the registry works on: the promotion can simply be run again
    promote_run(runs["r2"], registry)
    assert live_sha(registry) == adapter_sha(runs["r2"])
    assert len(Registry(registry).history()) == 2


def test_a_torn_history_line_is_dropped_and_the_committed_event_restored(runs, tmp_path):
    registry = tmp_path / "registry"
    promote_run(runs["r1"], registry)
    log = registry / "history.jsonl"
    log.write_text(log.read_text()[:-20])  # the writer died in the middle of its only line
    assert Registry(registry).history() == []
    with Registry.open(registry) as reg:
        assert [e["run"] for e in reg.history()] == ["r1"]


def test_the_server_takes_live_adapters_checked_against_their_manifest(runs, tmp_path,
                                                                        tiny_model):
    registry = tmp_path / "registry"
    promote_run(runs["r1"], registry, name="alpha")
    promote_run(runs["r2"], registry, name="beta")
    live = live_adapters(registry, tiny_model)
    assert sorted(live) == ["alpha", "beta"]
    cfg = compose(runs["r1"], [f"registry.dir={registry}", "serve.registry=true",
                               f"+serve.adapters.gamma={runs['r1'] / 'train' / 'adapter'}"])
    assert adapters_for(cfg.serve, cfg.registry, tiny_model) == {
        **live, "gamma": str(runs["r1"] / "train" / "adapter")}
    assert sha256_tree(live["beta"]) == adapter_sha(runs["r2"])
    with pytest.raises(HarnessError, match="trained on"):
        live_adapters(registry, str(tmp_path / "another-model"))
    (Path(live["alpha"]) / "adapter_config.json").write_text("{}")
    with pytest.raises(HarnessError, match="modified by hand"):
        live_adapters(registry, tiny_model)
