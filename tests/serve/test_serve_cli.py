"""`harness serve`'s start-up checks: they run before the model is loaded."""

from __future__ import annotations

import dataclasses

import pytest
from conftest import make_cfg

from harness.errors import HarnessError
from harness.serve.app import Limits
from harness.serve.cli import limits_for, serve


def test_the_configured_limits_are_the_in_process_defaults(tmp_path):
    assert limits_for(make_cfg(tmp_path).serve) == Limits()
    assert dataclasses.asdict(limits_for(make_cfg(tmp_path, overrides=[
        "serve.max_tokens=7", "serve.max_prompt_tokens=null"]).serve)) == {
        **dataclasses.asdict(Limits()), "max_tokens": 7, "max_prompt_tokens": None}


@pytest.mark.parametrize(("override", "named"), [
    ("serve.host=0.0.0.0", "serve.api_key_env"),
    ("serve.max_tokens=-5", "serve.max_tokens"),
    ("serve.max_body_bytes=abc", "serve.max_body_bytes"),
    ("serve.port=70000", "serve.port"),
    ("serve.allow_unauthenticated=maybe", "serve.allow_unauthenticated"),
])
def test_bad_settings_stop_it_before_the_model_loads(tmp_path, monkeypatch, override, named):
    monkeypatch.delenv("HARNESS_SERVE_API_KEY", raising=False)
    cache = tmp_path / "cache"
    with pytest.raises(HarnessError, match=named):
        serve(make_cfg(tmp_path, overrides=[override], cache_dir=cache))
    assert not cache.exists()  # the tiny model was never built, nothing was loaded
