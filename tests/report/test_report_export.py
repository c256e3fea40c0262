"""A run that was exported shows each file's verification and the mini-eval in its report."""

from __future__ import annotations

from report_runs import make_run

from harness.io import atomic_write_json, read_json
from harness.report import stage
from harness.rundir import EVIDENCE, MANIFEST


def verification(status: str, top1: float, err: float, greedy: float) -> dict:
    return {"status": status, "tokenization": {"identical": True},
            "vs_merged": {"top1_agreement": top1, "max_abs_logit_error": err,
                          "greedy_identical": greedy}}


def test_the_export_section_lists_each_file_against_the_merged_model(tmp_path):
    cfg, run = make_run(tmp_path, "shipped", quality=3)
    atomic_write_json(run / "export" / MANIFEST, {  # as `harness export` writes it
        "name": "shipped", "vllm": {"command": "vllm serve runs/shipped/export/merged"},
        "ollama": {"modelfile": "gguf/Modelfile"},
        "gguf": {"f16": {"file": "shipped-f16.gguf", "bytes": 270885600,
                         "verification": verification("pass", 1.0, 0.036, 1.0)},
                 "q4_0": {"file": "shipped-q4_0.gguf", "bytes": 77570848,
                          "verification": verification("warn", 0.828, 13.3, 0.0)}},
        "mini_eval": {"items": 10, "mode": "left_to_right", "merged": {"edit_similarity": 0.218},
                      "f16": {"edit_similarity": 0.218, "same_output_as_merged": 1.0},
                      "q4_0": {"edit_similarity": 0.335, "same_output_as_merged": 0.2}}})
    stage.run(cfg, run / "report")
    folder = tmp_path / "reports" / "shipped"
    md = (folder / "report.md").read_text()
    assert "## Export (GGUF, Ollama, vLLM)" in md and "merged model's edit similarity 0.218" in md
    assert "| q4_0 | shipped-q4_0.gguf | 77570848 | warn | yes | 0.828 | 13.300 | 0.000 | 0.335 | 0.200 |" in md
    evidence = read_json(folder / EVIDENCE)
    assert evidence["export"]["files"]["f16"]["status"] == "pass"


def test_a_run_never_exported_has_no_export_section(tmp_path):
    cfg, run = make_run(tmp_path, "local", quality=3)
    stage.run(cfg, run / "report")
    assert "Export" not in (tmp_path / "reports" / "local" / "report.md").read_text()
