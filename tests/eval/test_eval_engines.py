"""Generation engines: transformers batched (greedy and sampled), an OpenAI-compatible endpoint
(our own server over the tiny model and an adapter, on loopback), and vLLM where installed."""

from __future__ import annotations

import pytest
from conftest import make_adapter

from harness.benchmarks import load_humaneval
from harness.errors import HarnessError
from harness.eval.engines.base import Decoding
from harness.eval.engines.hf import HFEngine
from harness.eval.engines.openai import OpenAIEngine
from harness.models.load import load_model, load_tokenizer
from harness.serve.app import ServerThread, create_app


@pytest.fixture(scope="module")
def setup(tiny_model, tmp_path_factory):
    adapter = make_adapter(tiny_model, tmp_path_factory.mktemp("adapter"))
    tok = load_tokenizer(tiny_model)
    problems = load_humaneval(limit=3)
    prompts = [tok(p.prompt, add_special_tokens=False)["input_ids"] for p in problems]
    return tiny_model, adapter, tok, prompts, problems[0].stop_words


def test_sampling_draws_n_reproducible_samples_per_prompt(setup):
    model_ref, _, tok, prompts, stop = setup
    prompts = prompts[:2]
    engine = HFEngine(load_model(model_ref), tok, batch_size=2, max_new_tokens=8)
    hot = Decoding(n=3, temperature=1.5, top_p=1.0, seed=7)
    first = engine.generate(prompts, stop=stop, decoding=hot)
    assert [len(g.outputs) for g in first] == [3, 3] and all(g.seconds > 0 for g in first)
    assert [g.outputs for g in engine.generate(prompts, stop=stop, decoding=hot)] == \
        [g.outputs for g in first]  # same seed, same samples
    other = engine.generate(prompts, stop=stop, decoding=Decoding(n=3, temperature=1.5, seed=8))
    assert [g.outputs for g in other] != [g.outputs for g in first]
    assert all(not any(s in o for s in stop) for g in first for o in g.outputs)


def test_decoding_settings_are_validated():
    assert Decoding().describe() == "greedy"
    assert "temperature 0.8" in Decoding(n=5, temperature=0.8, top_p=0.95).describe()
    with pytest.raises(HarnessError, match="identical samples"):
        Decoding(n=2)
    with pytest.raises(HarnessError, match="top_p"):
        Decoding(temperature=0.5, top_p=0)


def test_the_openai_engine_matches_transformers_and_names_each_model(setup):
    model_ref, adapter, tok, prompts, stop = setup
    app = create_app(model_ref, adapters={"cand": adapter}, served_name="base")
    with ServerThread(app) as server:
        remote = {name: OpenAIEngine(server.base_url, name, tok, concurrency=2, max_new_tokens=12)
                  for name in ("base", "cand")}
        got = {name: e.generate(prompts, stop=stop, desc=name) for name, e in remote.items()}
        sampled = remote["cand"].generate(prompts[:1], stop=stop,
                                          decoding=Decoding(n=2, temperature=1.5, seed=3))
        again = remote["cand"].generate(prompts[:1], stop=stop,
                                        decoding=Decoding(n=2, temperature=1.5, seed=3))
        with pytest.raises(HarnessError, match="serves 'nope'"):
            OpenAIEngine(server.base_url, "nope", tok, max_retries=0).generate(prompts[:1])
    local = {name: HFEngine(load_model(model_ref, adapter=a), tok, batch_size=1, max_new_tokens=12)
             for name, a in (("base", None), ("cand", adapter))}
    for name, engine in local.items():  # greedy through HTTP = greedy in-process, per model
        assert [g.outputs for g in got[name]] == [g.outputs for g in engine.generate(prompts, stop=stop)]
    assert [g.outputs for g in got["base"]] != [g.outputs for g in got["cand"]]
    assert len(sampled[0].outputs) == 2 and sampled[0].outputs == again[0].outputs  # seeded


def test_the_vllm_engine_serves_the_adapter_per_request(setup):
    pytest.importorskip("vllm", reason="vLLM is not installed (it needs a CUDA GPU)")
    import torch

    if not torch.cuda.is_available():
        pytest.skip("vLLM needs a CUDA GPU")
    from harness.eval.engines.vllm import VLLMEngine, load_llm

    model_ref, adapter, _, prompts, stop = setup
    llm = load_llm(model_ref, max_lora_rank=8, seed=0)
    base, cand = VLLMEngine(llm, None, 12), VLLMEngine(llm, adapter, 12)
    got_base, got_cand = base.generate(prompts, stop=stop), cand.generate(prompts, stop=stop)
    assert [len(g.outputs) for g in got_base] == [1, 1, 1]
    assert [g.outputs for g in got_base] != [g.outputs for g in got_cand]


def test_generation_goes_to_the_gpu_when_there_is_one_and_the_device_is_recorded(setup):
    import torch
    from omegaconf import OmegaConf

    from harness.eval.engines.pool import EnginePool, engine_settings, eval_device, placement

    assert placement("cpu") == {}
    assert placement("cuda") == {"device_map": {"": "cuda:0"}}  # straight onto the GPU
    assert placement("cuda:1") == {"device_map": {"": "cuda:1"}}
    e = OmegaConf.create({"engine": "hf", "batch_size": 2, "max_new_tokens": 4})
    detected = "cuda" if torch.cuda.is_available() else "cpu"
    assert eval_device(e) == detected and engine_settings(e)["device"] == detected
    if not torch.cuda.is_available():
        with pytest.raises(HarnessError, match="no CUDA GPU"):
            eval_device(OmegaConf.merge(e, {"device": "cuda"}))
    model_ref, adapter, tok, prompts, _ = setup
    model_cfg = OmegaConf.create({"dtype": "float32"})
    with EnginePool(e, model_cfg, model_ref, adapter, tok) as pool:
        engine = pool.get("candidate")
        assert engine.model.device.type == detected
        assert len(engine.generate(prompts[:2])) == 2


class _StandInVLLM:
    """Records how the engine calls vLLM, which needs a CUDA GPU and cannot run here."""

    def __init__(self, **kwargs):
        self.kwargs, self.calls = kwargs, []

    def generate(self, prompts, params, lora_request=None, use_tqdm=True):
        from types import SimpleNamespace

        self.calls.append(len(prompts))
        return [SimpleNamespace(outputs=[SimpleNamespace(text="x\ndef y")]) for _ in prompts]


def test_the_vllm_engine_takes_every_prompt_at_once(monkeypatch):
    import sys
    from types import ModuleType, SimpleNamespace

    fake = ModuleType("vllm")
    fake.LLM = _StandInVLLM
    fake.SamplingParams = lambda **kw: SimpleNamespace(**kw)
    inputs, lora = ModuleType("vllm.inputs"), ModuleType("vllm.lora.request")
    inputs.TokensPrompt = dict
    lora.LoRARequest = lambda *a: a
    for name, module in {"vllm": fake, "vllm.inputs": inputs, "vllm.lora": ModuleType("vllm.lora"),
                         "vllm.lora.request": lora}.items():
        monkeypatch.setitem(sys.modules, name, module)
    from harness.eval.engines.vllm import VLLMEngine, load_llm

    llm = load_llm("/models/base", max_lora_rank=16, seed=0, gpu_memory_utilization=0.8)
    assert "max_num_seqs" not in llm.kwargs and llm.kwargs["enable_lora"] is True
    got = VLLMEngine(llm, "/adapters/cand", max_new_tokens=8).generate(
        [[1, 2]] * 300, stop=["\ndef"])
    assert llm.calls == [300] and got[0].outputs == ["x"]  # one call, cut at the stop word
