"""FIM examples: the model's own sentinels (configured or detected), PSM and SPM, holes on
line or syntax boundaries, fim_rate / fim_spm_rate, and the chat/code mix."""

from __future__ import annotations

import ast
import random
from collections import Counter

import pytest
from omegaconf import OmegaConf
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from harness.errors import HarnessError
from harness.eval.fim_task import prompts
from harness.format.examples import mix, source_examples
from harness.format.fim import encode, fim_tokens, sample_holes, tokenize_code, tokenize_fim
from harness.format.spans import sample_ast_holes
from harness.models.load import load_tokenizer

QWEN_FIM = {"prefix": "<|fim_prefix|>", "suffix": "<|fim_suffix|>", "middle": "<|fim_middle|>",
            "end": "<|endoftext|>"}
CODE = '''"""Shapes."""
import math


class Circle:
    def __init__(self, r: float) -> None:
        self.r = r

    def area(self) -> float:
        if self.r < 0:
            raise ValueError(f"negative radius {self.r}")
        return math.pi * self.r ** 2


def total(shapes: list) -> float:
    return sum(s.area() for s in shapes if s is not None)
'''


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    return AutoTokenizer.from_pretrained(tiny_model)


@pytest.fixture(scope="module")
def toks(tokenizer):
    return fim_tokens(tokenizer, QWEN_FIM)


def supervised(ex: dict) -> list[int]:
    return [t for t, m in zip(ex["input_ids"], ex["assistant_masks"], strict=True) if m]


def test_psm_uses_the_models_sentinels_and_supervises_only_the_middle(tokenizer, toks):
    hole = sample_holes(CODE, random.Random(0), 1, max_middle_lines=2, context_lines=10)[0]
    assert hole.prefix + hole.middle + hole.suffix in CODE
    ex = tokenize_fim(tokenizer, toks, hole, max_length=256)
    ids = ex["input_ids"]
    assert ids[0] == toks.prefix and ids.count(toks.suffix) == ids.count(toks.middle) == 1
    assert ids.index(toks.suffix) < ids.index(toks.middle) == len(ids) - len(supervised(ex)) - 1
    assert tokenizer.decode(supervised(ex)) == hole.middle + "<|endoftext|>"


def test_spm_puts_the_suffix_first_and_the_middle_continues_the_prefix(tokenizer, toks):
    hole = sample_holes(CODE, random.Random(1), 1, max_middle_lines=2, context_lines=10)[0]
    ex = tokenize_fim(tokenizer, toks, hole, max_length=256, spm=True)
    ids = ex["input_ids"]
    assert ids[:2] == [toks.prefix, toks.suffix]
    mid = ids.index(toks.middle)
    assert tokenizer.decode(ids[2:mid]) == hole.suffix
    assert tokenizer.decode(ids[mid + 1:]) == hole.prefix + hole.middle + "<|endoftext|>"
    assert tokenizer.decode(supervised(ex)) == hole.middle + "<|endoftext|>"


def test_training_psm_prompt_is_exactly_the_eval_prompt(tokenizer, toks):
    hole = sample_holes(CODE, random.Random(2), 1, max_middle_lines=1, context_lines=10)[0]
    ex = tokenize_fim(tokenizer, toks, hole, max_length=64)
    prompt = ex["input_ids"][:len(ex["input_ids"]) - len(supervised(ex))]
    assert prompts(tokenizer, toks, [("h", hole)], 64 - len(supervised(ex))) == [prompt]


def test_sentinel_strings_inside_source_code_stay_plain_text(tokenizer, toks):
    code = 'A = "<|fim_middle|>"\nB = 1\nC = 2\n'
    hole = sample_holes(code, random.Random(0), 1, 1, 5, allowed_lines=[2])[0]
    ex = tokenize_fim(tokenizer, toks, hole, max_length=128)
    assert ex["input_ids"].count(toks.middle) == 1
    assert tokenize_code(tokenizer, hole, 128)["input_ids"].count(toks.middle) == 0


def test_sentinels_are_detected_when_not_configured(tokenizer, toks):
    assert fim_tokens(tokenizer, None) == toks


def test_a_tokenizer_without_fim_sentinels_is_refused():
    vocab = {"[UNK]": 0, "def": 1, "x": 2}
    plain = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel(vocab, "[UNK]")),
                                    unk_token="[UNK]", eos_token="x")
    plain.backend_tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    with pytest.raises(HarnessError, match="none of the known FIM sentinel families"):
        fim_tokens(plain, None)
    with pytest.raises(HarnessError, match="no FIM prefix token '<fim_prefix>'"):
        fim_tokens(plain, {**QWEN_FIM, "prefix": "<fim_prefix>"})


def test_ast_holes_are_whole_statements_or_whole_expressions():
    holes = sample_ast_holes(CODE, random.Random(0), 12, max_middle_lines=3, context_lines=4)
    assert len(holes) == 12
    kinds = Counter()
    for h in holes:
        assert h.prefix + h.middle + h.suffix in CODE
        if h.middle.endswith("\n"):  # statements: whole lines, dedented they parse on their own
            lines = h.middle.splitlines()
            indent = len(lines[0]) - len(lines[0].lstrip())
            ast.parse("\n".join(line[indent:] for line in lines))
            kinds["stmt"] += 1
        else:
            ast.parse(h.middle, mode="eval")
            kinds["expr"] += 1
    assert kinds["stmt"] and kinds["expr"]
    assert sample_ast_holes("def broken(:\n", random.Random(0), 2, 3, 4) is None


def _fcfg(**kw):
    return OmegaConf.create({"fim_examples_per_file": 6, "fim_max_middle_lines": 3,
                             "fim_context_lines": 6, "max_length": 256, "seed": 0,
                             "fim_rate": 0.5, "fim_spm_rate": 0.5, "fim_span": "line", **kw})


def test_fim_rate_and_spm_rate_split_the_source_examples(tokenizer, toks):
    records = [{"id": f"f{i}", "path": f"m{i}.py", "content": CODE} for i in range(40)]
    kinds = Counter(r["kind"] for r in source_examples(records, tokenizer, toks, _fcfg(),
                                                       Counter(), Counter()))
    assert sum(kinds.values()) == 240
    assert 0.4 < (kinds["fim_psm"] + kinds["fim_spm"]) / 240 < 0.6
    assert 0.35 < kinds["fim_spm"] / (kinds["fim_psm"] + kinds["fim_spm"]) < 0.65
    only_psm = source_examples(records[:3], tokenizer, toks, _fcfg(fim_rate=1, fim_spm_rate=0),
                               Counter(), Counter())
    assert {r["kind"] for r in only_psm} == {"fim_psm"}
    no_fim = source_examples(records[:3], tokenizer, None, _fcfg(fim_rate=0), Counter(), Counter())
    assert {r["kind"] for r in no_fim} == {"code"}


def test_ast_spans_fall_back_to_lines_for_files_that_do_not_parse(tokenizer, toks):
    counts = Counter()
    records = [{"id": "a", "path": "ok.py", "content": CODE},
               {"id": "b", "path": "bad.py", "content": CODE + "def broken(:\n"}]
    rows = source_examples(records, tokenizer, toks, _fcfg(fim_span="ast"), Counter(), counts)
    assert counts == {"ast_unparsable_files_line_spans": 1} and {r["id"][0] for r in rows} == {"a", "b"}


def test_mix_subsamples_the_side_in_excess_and_counts_it():
    chat = [{"id": f"c{i}"} for i in range(10)]
    code = [{"id": f"s{i}"} for i in range(40)]
    dropped = Counter()
    mixed = mix(chat, code, 0.5, seed=0, dropped=dropped)
    assert len(mixed) == 20 and dropped == {"mix_code_subsampled": 30}
    dropped = Counter()
    mixed = mix(chat, code[:2], 0.5, seed=0, dropped=dropped)
    assert len(mixed) == 4 and dropped == {"mix_chat_subsampled": 8}
    assert len(mix(chat, code, None, seed=0, dropped=Counter())) == 50
    with pytest.raises(HarnessError, match="code_share"):
        mix(chat, code, 1.5, seed=0, dropped=Counter())


def test_without_sentinels_the_prompt_is_the_prefix_cut_from_the_left(tiny_model):
    from harness.format.fim import first_line, has_first_line, left_to_right_prompt_ids

    tok = load_tokenizer(tiny_model)
    prefix = "".join(f"value_{i} = compute({i})\n" for i in range(200))
    ids = left_to_right_prompt_ids(tok, prefix, budget=50)
    assert len(ids) == 50 and tok.decode(ids).endswith("value_199 = compute(199)\n")
    assert left_to_right_prompt_ids(tok, "x = 1\n", budget=50) == encode(tok, "x = 1\n")
    # a leading blank line is layout; the next line written is what gets scored
    assert first_line("\n\n    return total\n    # more") == "    return total"
    assert first_line("\n  \n") == ""
    # ... and it is settled once a non-blank line has ended, not before
    assert has_first_line("\n\n    return total\n") and has_first_line("x\ny")
    assert not has_first_line("\n  \n    return tot") and not has_first_line("    return total")


def test_fim_tokens_refuse_a_model_declared_without_sentinels(tiny_model):
    with pytest.raises(HarnessError, match="no FIM sentinel tokens"):
        fim_tokens(load_tokenizer(tiny_model), "left_to_right")
