"""The Ollama template is read off the Jinja chat template and must render every conversation
the same way. Where Go is installed the emitted template is run by Go's own text/template
(the engine Ollama uses), on the data Ollama passes it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from harness.errors import HarnessError
from harness.export.modelfile import chat_pieces, go_template, modelfile

FIM = {"prefix": "<|fim_prefix|>", "suffix": "<|fim_suffix|>", "middle": "<|fim_middle|>"}
# Qwen2.5's way: a default system prompt when the conversation has none
DEFAULT_SYSTEM = (
    "{%- if messages[0]['role'] != 'system' %}"
    "{{- '<|im_start|>system\\nYou are a helpful coding assistant.<|im_end|>\\n' }}{%- endif %}"
    "{%- for m in messages %}{{- '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}")
FIRST_TURN_SPECIAL = (
    "{%- for m in messages %}{%- if loop.first %}[FIRST]{% endif %}"
    "{{- '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}")
CONVERSATIONS = [
    [("user", "Write fizzbuzz.")],
    [("system", "Answer in Go."), ("user", "Parse {{ .Env }} please")],
    [("user", "a"), ("assistant", "b"), ("user", "c\n\nd")],
]
GO_RENDER = """package main

import ("encoding/json"; "os"; "text/template")

type Message struct { Role string; Content string }
type Values struct { Messages []Message; Prompt string; Suffix string; System string }

func main() {
    var in struct { Template string; Data Values }
    if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil { panic(err) }
    t := template.Must(template.New("m").Parse(in.Template))
    if err := t.Execute(os.Stdout, in.Data); err != nil { panic(err) }
}
"""


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


@pytest.fixture(scope="module")
def go_render(tmp_path_factory):
    """render(template, data) through Go's text/template; skipped where Go is not installed."""
    if shutil.which("go") is None:
        pytest.skip("Go is not installed (Debian: apt-get install golang-go)")
    root = tmp_path_factory.mktemp("go")
    (root / "render.go").write_text(GO_RENDER)
    env = {**os.environ, "GOCACHE": str(root / "cache"), "GOPATH": str(root / "gopath"),
           "GO111MODULE": "off"}
    subprocess.run(["go", "build", "-o", str(root / "render"), str(root / "render.go")],
                   check=True, env=env, capture_output=True)

    def render(template: str, data: dict) -> str:
        return subprocess.run([str(root / "render")], input=json.dumps({"Template": template, "Data": data}),
                              capture_output=True, text=True, check=True).stdout
    return render


def ollama_messages(conversation, system: str | None) -> list[dict]:
    """What Ollama puts in .Messages: the Modelfile's SYSTEM first when the request has none."""
    msgs = [{"Role": r, "Content": c} for r, c in conversation]
    if system is not None and conversation[0][0] != "system":
        msgs.insert(0, {"Role": "system", "Content": system})
    return msgs


def jinja(tokenizer, conversation) -> str:
    return tokenizer.apply_chat_template([{"role": r, "content": c} for r, c in conversation],
                                         tokenize=False, add_generation_prompt=True)


def test_chatml_turns_render_in_go_exactly_as_in_jinja(tokenizer, go_render):
    pieces = chat_pieces(tokenizer)
    assert pieces.prefix["user"] == "<|im_start|>user\n" and pieces.suffix["user"] == "<|im_end|>\n"
    assert pieces.generation == "<|im_start|>assistant\n" and pieces.default_system is None
    template = go_template(pieces, FIM)
    for conversation in CONVERSATIONS:
        got = go_render(template, {"Messages": ollama_messages(conversation, None)})
        assert got == jinja(tokenizer, conversation)


def test_fim_requests_with_a_suffix_get_the_sentinels(tokenizer, go_render):
    template = go_template(chat_pieces(tokenizer), FIM)
    got = go_render(template, {"Prompt": "def add(a, b):\n    ", "Suffix": "\n\nprint(add(1, 2))\n"})
    assert got == "<|fim_prefix|>def add(a, b):\n    <|fim_suffix|>\n\nprint(add(1, 2))\n<|fim_middle|>"
    assert ".Suffix" not in go_template(chat_pieces(tokenizer), None)  # no sentinels, no FIM branch
    # a model without a chat template: Ollama's prompt goes to the model as it is
    assert go_render(go_template(None, FIM), {"Prompt": "x = {{1}}"}) == "x = {{1}}"


def test_a_default_system_prompt_becomes_the_modelfile_system(tokenizer, go_render):
    tokenizer = _with_template(tokenizer, DEFAULT_SYSTEM)
    tokenizer.bos_token = "<|im_start|>"  # as SmolLM2's tokenizer says: not a separate head
    pieces = chat_pieces(tokenizer)
    assert pieces.default_system == "You are a helpful coding assistant."
    assert pieces.head == "" and pieces.prefix["system"] == "<|im_start|>system\n"
    for conversation in CONVERSATIONS:
        got = go_render(go_template(pieces, None),
                        {"Messages": ollama_messages(conversation, pieces.default_system)})
        assert got == jinja(tokenizer, conversation)
    text = modelfile("m-q8_0.gguf", go_template(pieces, None), ["<|im_end|>", "<|im_end|>", None],
                     pieces.default_system, {"num_ctx": 4096})
    assert text.splitlines()[0] == "FROM ./m-q8_0.gguf"
    assert 'SYSTEM """You are a helpful coding assistant."""' in text
    assert text.count('PARAMETER stop "<|im_end|>"') == 1 and "PARAMETER num_ctx 4096" in text


def test_a_template_the_pieces_cannot_express_is_refused(tokenizer):
    with pytest.raises(HarnessError, match=r"export\.ollama\.template"):
        chat_pieces(_with_template(tokenizer, FIRST_TURN_SPECIAL))
    with pytest.raises(HarnessError, match="triple quotes"):
        modelfile("m.gguf", 'say """hi"""', [], None)


def _with_template(tokenizer, template: str):
    import copy

    tok = copy.deepcopy(tokenizer)
    tok.chat_template = template
    return tok


def test_modelfile_of_an_export_names_its_gguf():
    text = modelfile("proj-f16.gguf", "{{ .Prompt }}", ["<|endoftext|>"], None)
    assert text == 'FROM ./proj-f16.gguf\nTEMPLATE """{{ .Prompt }}"""\nPARAMETER stop "<|endoftext|>"\n'
