"""The run's preflight: what a run needs is checked before its first expensive step, and each
failure names its fix. The judge endpoint is a real HTTP server on loopback."""

from __future__ import annotations

import logging

import pytest
from conftest import make_cfg
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from harness import preflight
from harness.errors import HarnessError
from harness.rundir import write_stage
from harness.serve.app import ServerThread
from harness.stages import stage_dir


def models_app(served: list[str], key: str | None = None) -> FastAPI:
    """An OpenAI-style `/v1/models` that lists `served`, and answers 401 to a wrong key."""
    app = FastAPI()

    @app.get("/v1/models")
    async def models(request: Request):
        if key and request.headers.get("authorization") != f"Bearer {key}":
            return JSONResponse({"error": {"message": "Incorrect API key"}}, status_code=401)
        return {"object": "list", "data": [{"id": m, "object": "model", "owned_by": "me"}
                                           for m in served]}

    return app


@pytest.fixture
def cfg_for(tmp_path, harness_cache):
    def make(*overrides: str):
        return make_cfg(tmp_path / "run", tmp_path, list(overrides), harness_cache)
    return make


def test_a_hosted_judge_without_its_key_fails_before_any_request(cfg_for, monkeypatch):
    monkeypatch.delenv("JUDGE_KEY_FOR_TEST", raising=False)
    cfg = cfg_for("judge=openai", "judge.api_key_env=JUDGE_KEY_FOR_TEST",
                  "judge.base_url=https://judge.invalid/v1")
    with pytest.raises(HarnessError, match=r"export JUDGE_KEY_FOR_TEST="):
        preflight.check_judge(cfg.judge)


def test_the_judge_endpoint_must_answer_models_and_serve_the_model(cfg_for, monkeypatch):
    monkeypatch.setenv("JUDGE_KEY_FOR_TEST", "right")
    with ServerThread(models_app(["judge-7b"], key="right")) as server:
        ok = cfg_for(f"judge.base_url={server.base_url}", "judge.model=judge-7b",
                     "judge.api_key_env=JUDGE_KEY_FOR_TEST")
        preflight.check_judge(ok.judge)  # served, key accepted
        wrong_model = cfg_for(f"judge.base_url={server.base_url}", "judge.model=gpt-4o",
                              "judge.api_key_env=JUDGE_KEY_FOR_TEST")
        with pytest.raises(HarnessError, match=r"does not serve \['gpt-4o'\].*judge-7b"):
            preflight.check_judge(wrong_model.judge)
        monkeypatch.setenv("JUDGE_KEY_FOR_TEST", "wrong")
        with pytest.raises(HarnessError, match="refused the key in \\$JUDGE_KEY_FOR_TEST"):
            preflight.check_judge(ok.judge)
        url = server.base_url
    down = cfg_for(f"judge.base_url={url}", "judge.model=judge-7b")  # the server has stopped
    with pytest.raises(HarnessError, match=r"does not answer GET /models.*Fix: start"):
        preflight.check_judge(down.judge)


def test_a_rubric_that_does_not_parse_is_refused(cfg_for, tmp_path):
    bad = tmp_path / "rubric.yaml"
    bad.write_text("name: x\ncriteria: [unclosed\n")
    with pytest.raises(HarnessError, match="not valid YAML"):
        preflight.check_judge(cfg_for(f"judge.rubric={bad}").judge)


def test_an_eval_endpoint_must_serve_both_model_names(cfg_for):
    with ServerThread(models_app(["base"])) as server:
        cfg = cfg_for("eval.engine=openai", f"eval.openai.base_url={server.base_url}")
        with pytest.raises(HarnessError, match=r"does not serve \['candidate'\]"):
            preflight.check_eval_engine(cfg.eval)


def test_a_missing_model_directory_is_refused(cfg_for, tmp_path):
    cfg = cfg_for(f"model.name_or_path={tmp_path / 'no-such-model'}")
    with pytest.raises(HarnessError, match="no model there"):
        preflight.check_run(cfg, ["train"])


def test_too_little_disk_for_checkpoints_is_refused(tmp_path):
    with pytest.raises(HarnessError, match=r"not enough disk for the training checkpoints.*Fix"):
        preflight.check_disk(tmp_path / "runs" / "x", 2**60, "the training checkpoints")
    preflight.check_disk(tmp_path / "runs" / "x", 1, "the training checkpoints")


def test_the_memory_plan_is_printed_and_a_run_that_cannot_fit_is_refused(cfg_for, caplog):
    cfg = cfg_for("train.batch_size=8", "train.memory.device_gb=0.5")
    with caplog.at_level(logging.INFO), pytest.raises(HarnessError) as err:
        preflight.check_run(cfg, ["train"])
    assert "memory plan" in caplog.text and "logits" in caplog.text
    assert "will not fit" in str(err.value) and "train.batch_size=" in str(err.value)
    preflight.check_run(cfg_for("train.memory.device_gb=0.01", "train.memory.check=false"),
                        ["train"])  # the plan is printed, the run goes on


def test_a_run_stops_before_mining_when_the_judge_is_unreachable(tmp_path, monkeypatch):
    """`harness run` checks the judge before the first stage, so nothing is written."""
    from harness.cli import main

    monkeypatch.chdir(tmp_path)
    with ServerThread(models_app([])) as server:
        url = server.base_url
    with pytest.raises(SystemExit) as exit_:
        main(["run", "run_name=pf", f"data.repo={tmp_path}", f"judge.base_url={url}",
              f"cache_dir={tmp_path / 'cache'}"])
    assert exit_.value.code == 2
    assert not list((tmp_path / "runs" / "pf").glob("mine*"))


def test_pending_counts_the_unfinished_upstream_stages(cfg_for):
    cfg = cfg_for()
    assert preflight.pending(cfg, ["eval"]) == ["mine", "format", "train", "eval"]
    (cfg_dir := stage_dir(cfg, "train")).mkdir(parents=True)
    write_stage(cfg_dir, "train", "t", {})
    assert preflight.pending(cfg, ["eval"]) == ["eval"]
