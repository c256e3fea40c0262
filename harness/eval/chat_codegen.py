"""HumanEval and MBPP in chat mode: the problem as a user message through the model's own chat
template, the code taken from the reply. Instruct model cards report these numbers (the
completion-mode prompt of bigcode suits base models); tasks `humaneval_chat` and `mbpp_chat`.

The assistant turn is opened with a fenced Python block (a response prefill, as
bigcode-evaluation-harness's instruct tasks and EvalPlus do), so the reply is code from its
first token, and generation stops at the closing fence: a 135M model would otherwise spend its
token budget on prose before the code. The program run is the reply's code, after the imports
of the prompt (HumanEval's `from typing import List` is part of the problem, not the answer),
then the benchmark's tests; when the reply does not define the function (it continued the body
instead), the original prompt goes first, as in completion mode.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

from harness.benchmarks import Problem

PREFILL = "```python\n"
STOP = ("\n```",)
INSTRUCTION = {
    "humaneval": "Complete the following Python function. Reply with the whole function in one "
                 "Python code block.\n\n```python\n{prompt}\n```",
    "mbpp": "{text}\nYour code should pass these tests:\n\n{tests}\n\nReply with the Python "
            "code in one code block.",
}


@dataclass(frozen=True)
class ChatProblem:
    """A benchmark problem asked through the chat template (`mode` "chat")."""

    task: str  # humaneval_chat | mbpp_chat
    task_id: str
    question: str  # the user message
    entry_point: str
    prompt: str  # the completion-mode prompt (its imports head the program)
    test: str
    stop_words: tuple[str, ...] = STOP
    mode: str = "chat"

    def messages(self, system_prompt: str | None = None) -> list[dict]:
        system = [{"role": "system", "content": system_prompt}] if system_prompt else []
        return [*system, {"role": "user", "content": self.question}]

    def program_for(self, generation: str) -> str:
        code = extract_code(generation)
        if self.entry_point and not _defines(code, self.entry_point):
            return self.prompt + "\n" + code + "\n" + self.test
        return _imports(self.prompt) + code + "\n" + self.test


def extract_code(reply: str) -> str:
    """The code of a reply that started inside a ```python block: up to the closing fence."""
    return reply.split("\n```", 1)[0].split("```", 1)[0]


def _defines(code: str, name: str) -> bool:
    return re.search(rf"^\s*def\s+{re.escape(name)}\s*\(", code, re.M) is not None


def _imports(prompt: str) -> str:
    """The import statements at the top level of `prompt` (unparsable prompts give none)."""
    try:
        tree = ast.parse(prompt + "\n    pass\n" if prompt.rstrip().endswith('"""') else prompt)
    except SyntaxError:
        return ""
    lines = prompt.splitlines()
    found = [ast.get_source_segment(prompt, n) or "\n".join(lines[n.lineno - 1:n.end_lineno])
             for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
    return "".join(f"{s}\n" for s in found) + ("\n" if found else "")


def humaneval_chat(problems: list[Problem]) -> list[ChatProblem]:
    return [ChatProblem(task="humaneval_chat", task_id=p.task_id,
                        question=INSTRUCTION["humaneval"].format(prompt=p.prompt),
                        entry_point=_check_target(p.test), prompt=p.prompt, test=p.test)
            for p in problems]


def mbpp_chat(problems: list[Problem]) -> list[ChatProblem]:
    """MBPP's description and its three tests, as in Austin et al.; the program is the reply's
    code then the tests (MBPP has no prompt code to keep)."""
    out = []
    for p in problems:
        asserts = [line for line in p.test.splitlines() if line.startswith("assert")]
        out.append(ChatProblem(
            task="mbpp_chat", task_id=p.task_id, entry_point="", prompt="", test=p.test,
            question=INSTRUCTION["mbpp"].format(text=_mbpp_text(p.prompt), tests="\n".join(asserts))))
    return out


def _check_target(test: str) -> str:
    """HumanEval's entry point, from the `check(<name>)` call that ends its test."""
    return re.findall(r"check\((\w+)\)", test)[-1]


def _mbpp_text(prompt: str) -> str:
    """The task description of MBPP's docstring prompt (its first line inside the quotes)."""
    return prompt.strip().strip('"').strip().splitlines()[0]
