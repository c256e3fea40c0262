"""Everything a command's stages will need, checked before the first of them, so a bad
setting fails in seconds with the cause and the fix instead of after a weekend of training:
training's own checks (harness/train/preflight.py: backend, method, model, memory plan), disk
for checkpoints, the eval engine and its GPU memory, and the judge (its rubric, its API key,
and that its endpoint answers `/models` and serves the configured model).

`check_run(cfg, stages)` is called once where a command starts (harness/cli.py).
"""

from __future__ import annotations

import importlib
import logging
import os
import shutil
from pathlib import Path
from urllib.parse import urlparse

from omegaconf import DictConfig

from harness.errors import HarnessError
from harness.models.load import check_causal_lm
from harness.train.preflight import checkpoint_bytes, memory_settings, train_checks

log = logging.getLogger(__name__)


def check_disk(path: str | Path, need: int, what: str) -> None:
    """Refuse when the filesystem holding `path` has less than `need` bytes free."""
    probe = Path(path).expanduser().resolve()
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < need:
        raise HarnessError(
            f"not enough disk for {what}: {need / 2**20:.0f} MiB needed, {free / 2**20:.0f} MiB "
            f"free on {probe}. Fix: free space there, point run_dir (or run_name) at a larger "
            f"disk, or lower train.save_total_limit.")


def _hosted(url: str) -> bool:
    host = urlparse(url).hostname or ""
    return url.startswith("https://") and host not in ("localhost", "127.0.0.1", "::1")


def check_endpoint(base_url: str, api_key_env: str, models: list[str], what: str,
                   timeout_s: float = 10.0) -> None:
    """The key is exported where a hosted endpoint needs one, the endpoint answers
    `GET /models`, and it serves every model named in `models`."""
    import openai

    key = os.environ.get(api_key_env)
    if not key and _hosted(base_url):
        raise HarnessError(f"{what} at {base_url} needs an API key, and ${api_key_env} is not "
                           f"set. Fix: export {api_key_env}=<your key> (or set the "
                           f"api_key_env setting to the variable that holds it).")
    client = openai.OpenAI(base_url=base_url, api_key=key or "EMPTY", timeout=timeout_s,
                           max_retries=0)
    try:
        served = {m.id for m in client.models.list()}
    except openai.AuthenticationError as e:
        raise HarnessError(f"{what} at {base_url} refused the key in ${api_key_env} ({e}). "
                           f"Fix: export a valid key.") from e
    except openai.APIError as e:
        raise HarnessError(f"{what} at {base_url} does not answer GET /models ({e}). Fix: start "
                           f"the server (or check the URL; it usually ends in /v1).") from e
    missing = [m for m in models if m not in served]
    if missing and served:
        raise HarnessError(f"{what} at {base_url} does not serve {missing}; it serves "
                           f"{sorted(served)[:10]}. Fix: set the model name to a served one.")


def check_judge(jcfg: DictConfig) -> None:
    """The judge settings: the rubric loads, and a configured endpoint serves the judge model."""
    from harness.judge.rubric import load_rubric
    from harness.paths import project_path

    load_rubric(project_path(jcfg.rubric))
    if jcfg.base_url:
        check_endpoint(str(jcfg.base_url), str(jcfg.api_key_env), [str(jcfg.model)],
                       "the judge (judge.base_url)")


def check_eval_memory(cfg: DictConfig, model_config) -> None:
    """On a GPU, `eval.batch_size` sequences (times the samples per prompt) of
    `data.format.max_length` tokens (prompts are cut to leave room for the new tokens) must fit
    beside the weights."""
    from harness.eval.engines.pool import eval_device
    from harness.train import vram

    e = cfg.eval
    device = eval_device(e)
    if e.engine != "hf" or device == "cpu" or not memory_settings(cfg.train)["check"]:
        return
    import torch

    props = torch.cuda.get_device_properties(torch.device(device))
    tokens = int(cfg.data.format.max_length)
    dtype_bytes = 4 if str(cfg.model.get("dtype") or "float32") == "float32" else 2
    vram.check_generation(vram.Shapes.from_config(model_config), int(e.batch_size) * int(e.n_samples),
                          tokens, dtype_bytes, props.name, int(props.total_memory))


def check_eval_engine(ecfg: DictConfig) -> None:
    """The eval settings' engine: a configured endpoint answers, vLLM is installed when named."""
    if ecfg.engine == "openai" and ecfg.openai.base_url:
        check_endpoint(str(ecfg.openai.base_url), str(ecfg.openai.api_key_env),
                       [str(v) for v in ecfg.openai.models.values()],
                       "the eval endpoint (eval.openai.base_url)")
    if ecfg.engine == "vllm" and importlib.util.find_spec("vllm") is None:
        raise HarnessError("eval.engine=vllm needs vLLM. Fix: pip install -e '.[vllm]' on a "
                           "CUDA machine, or use eval.engine=hf.")


def pending(cfg: DictConfig, stages: tuple[str, ...] | list[str]) -> list[str]:
    """The stages a command will run: those named, and the upstream ones not yet finished."""
    from harness.rundir import is_finished
    from harness.stages import UPSTREAM, stage_dir

    todo: list[str] = []
    for name in stages:
        chain, up = [name], UPSTREAM.get(name)
        while up and not is_finished(stage_dir(cfg, up)):
            chain.insert(0, up)
            up = UPSTREAM.get(up)
        todo += [s for s in chain if s not in todo]
    return todo


def check_run(cfg: DictConfig, stages: tuple[str, ...] | list[str]) -> None:
    """Everything the stages this command runs will need, checked before the first of them."""
    todo, config = pending(cfg, stages), None
    if "train" in todo:
        config = train_checks(cfg.train, cfg.model, cfg.cache_dir)[3]
        check_disk(cfg.run_dir, checkpoint_bytes(cfg.train, config), "the training checkpoints")
    elif {"format", "eval"} & set(todo):
        from harness.models.load import resolve_model_path

        config = check_causal_lm(resolve_model_path(cfg.model, cfg.cache_dir), cfg.model)
    if "eval" in todo:
        check_eval_engine(cfg.eval)
        check_eval_memory(cfg, config)
        if cfg.eval.judge.enabled:
            check_judge(cfg.judge)
    log.info("preflight: %s ready", ", ".join(todo) or "nothing to run")
