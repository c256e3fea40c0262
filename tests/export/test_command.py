"""`harness export` on a trained tiny run: GGUF files, Modelfile and the vLLM directory,
every file verified against the merged model and listed with its checksum in the manifest;
a rerun does nothing, an interrupted export resumes, a broken converter fails loudly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import make_cfg
from export_runs import merged_llama, trained_run

from harness.errors import HarnessError
from harness.export import command, gguf_file, verify
from harness.export.vocab import read_vocab
from harness.io import read_json
from harness.rundir import MANIFEST

pytestmark = pytest.mark.slow
SMALL = ["export.types=[f16,q8_0]", "export.verify.new_tokens=4", "export.mini_eval.holes=3",
         "export.mini_eval.max_new_tokens=8", "export.name=proj"]


def config(run: Path, extra: list[str] = ()):
    return make_cfg(run, overrides=[f"run_name={run.name}", *SMALL, *extra])


@pytest.fixture(scope="module")
def exported(tiny_model, tmp_path_factory):
    run = trained_run(tmp_path_factory.mktemp("runs"), tiny_model)
    summary = command.export(config(run))
    return run, summary


def test_export_writes_verified_files_listed_with_checksums(exported):
    run, summary = exported
    out = run / "export"
    manifest = read_json(out / MANIFEST)
    command.check_files(out, manifest)  # every file is the one the manifest lists
    assert sorted(p.name for p in (out / "gguf").iterdir()) == ["Modelfile", "proj-f16.gguf",
                                                                "proj-q8_0.gguf"]
    f16 = manifest["gguf"]["f16"]["verification"]
    assert f16["status"] == "pass" and f16["tokenization"]["identical"] and f16["metadata"]["ok"]
    assert f16["vs_merged_f16"]["greedy_identical"] == 1.0
    assert f16["vs_merged_f16"]["max_abs_logit_error"] == 0.0
    q8 = manifest["gguf"]["q8_0"]["verification"]
    assert q8["vs_merged"]["max_abs_logit_error"] > 0 and q8["tolerance"] == {"min_top1_agreement": 0.9}
    assert summary["files"]["q8_0"]["status"] == q8["status"]
    mini = manifest["mini_eval"]
    assert mini["items"] == 3 and mini["mode"] == "fim"
    assert set(mini) >= {"merged", "f16", "q8_0"} and mini["f16"]["same_output_as_merged"] == 1.0
    modelfile = (out / "gguf" / "Modelfile").read_text()
    assert modelfile.startswith("FROM ./proj-q8_0.gguf\n") and "{{ if .Suffix }}<|fim_prefix|>" in modelfile
    assert 'PARAMETER stop "<|im_end|>"' in modelfile
    readme = (out / "merged" / "README.md").read_text()
    assert f"vllm serve {(out / 'merged').resolve()} --served-model-name proj" in readme
    assert manifest["source"]["adapter_sha256"] == read_json(run / "train" / MANIFEST)["adapter_sha256"]


def test_a_second_export_of_the_same_model_does_nothing(exported, monkeypatch):
    run, _ = exported
    before = {p.name: p.stat().st_mtime_ns for p in (run / "export" / "gguf").iterdir()}
    monkeypatch.setattr(command, "write_gguf", lambda *a, **k: pytest.fail("rewrote a GGUF"))
    command.export(config(run))
    assert {p.name: p.stat().st_mtime_ns for p in (run / "export" / "gguf").iterdir()} == before


def test_an_interrupted_export_resumes_without_rewriting_finished_files(tiny_model, tmp_path, monkeypatch):
    run = trained_run(tmp_path, tiny_model, seed=2)
    real_run = command.Checks.run

    def crash_on_q8(self, path, file_type):
        if file_type == "q8_0":
            raise KeyboardInterrupt
        return real_run(self, path, file_type)

    monkeypatch.setattr(command.Checks, "run", crash_on_q8)
    with pytest.raises(KeyboardInterrupt):
        command.export(config(run, ["export.mini_eval.holes=0"]))
    assert not (run / "export").exists()
    written = {p.name: p.stat().st_mtime_ns for p in (run / "export.partial" / "gguf").glob("*.gguf")}
    assert set(written) == {"proj-f16.gguf", "proj-q8_0.gguf"}

    monkeypatch.setattr(command.Checks, "run", real_run)
    monkeypatch.setattr(command, "write_gguf", lambda *a, **k: pytest.fail("rewrote a GGUF"))
    manifest = command.export(config(run, ["export.mini_eval.holes=0"]))
    assert {p.name: p.stat().st_mtime_ns for p in (run / "export" / "gguf").glob("*.gguf")} == written
    assert manifest["mini_eval"]["skipped"] and not (run / "export.partial").exists()


def test_an_f16_file_that_does_not_round_trip_fails_the_export(tiny_model, tmp_path, monkeypatch):
    """Without the Llama Q/K row permutation (a classic converter bug) the file still loads,
    but the model is wrong: the check must catch it and refuse."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    merged = merged_llama(tiny_model, tmp_path)
    n_vocab = json.loads((merged / "config.json").read_text())["vocab_size"]
    out = tmp_path / "gguf"
    out.mkdir()
    monkeypatch.setattr(gguf_file, "permute_qk", lambda w, *a: w)
    gguf_file.write_gguf(merged, out / "bad-f16.gguf", "f16", read_vocab(merged, n_vocab), "bad")
    model = AutoModelForCausalLM.from_pretrained(str(merged), dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(str(merged))
    eos = [tok.convert_tokens_to_ids("<|im_end|>")]
    loaded, gguf_tok = verify.load_gguf(out / "bad-f16.gguf")
    prompts = verify.fixed_prompts(tok, None)
    refs = [verify.Reference.of(m, prompts, 8, eos, tok.pad_token_id)
            for m in (model, verify.rounded_to_f16(model))]
    result = verify.check_export(out / "bad-f16.gguf", "f16", loaded, gguf_tok, *refs, prompts,
                                 {}, {"new_tokens": 8}, eos, tok.pad_token_id)
    assert result["status"] == "fail" and result["tokenization"]["identical"]
    assert result["vs_merged_f16"]["max_abs_logit_error"] > 1e-3
    with pytest.raises(HarnessError, match="does not round-trip"):
        verify.require_f16_pass({"f16": result}, out / "verify.json")
