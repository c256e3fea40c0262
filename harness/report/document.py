"""A report as a list of blocks, rendered two ways: markdown (plots as PNG files beside it) and
one self-contained HTML file (plots embedded as base64, styles inline, no external assets).

Writing the content once as blocks keeps the two renderings identical in what they say. Inline
text uses markdown's `**bold**` and `` `code` ``; in HTML it is rendered by markdown-it with raw
HTML disabled, and everything else goes through Jinja2's autoescaping, so text from commits or
model outputs can never inject markup.
"""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass, field
from typing import Any

from jinja2 import Environment
from markdown_it import MarkdownIt
from markupsafe import Markup

_INLINE = MarkdownIt("commonmark", {"html": False})


def fmt(value: Any, digits: int = 3) -> str:
    """One way to print a number everywhere in a report (evidence.json keeps full precision)."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isinf(value):
            return "∞" if value > 0 else "−∞"
        return f"{value:.{digits}f}"
    return str(value)


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Para:
    text: str  # inline markdown


@dataclass
class Bullets:
    items: list[str]  # inline markdown


@dataclass
class Table:
    header: list[str]
    rows: list[list[Any]]


@dataclass
class Figure:
    name: str  # file stem under plots/
    png: bytes
    caption: str


@dataclass
class Side:
    label: str
    text: str


@dataclass
class Compare:
    """Two texts side by side (base vs candidate output), with an optional collapsed context."""

    title: str
    left: Side
    right: Side
    context: str | None = None
    context_label: str = "prompt"


@dataclass
class Document:
    title: str
    blocks: list = field(default_factory=list)

    def add(self, *blocks) -> Document:
        self.blocks.extend(b for b in blocks if b is not None)
        return self

    @property
    def figures(self) -> list[Figure]:
        return [b for b in self.blocks if isinstance(b, Figure)]


# ---- markdown ----

def _md_cell(value: Any) -> str:
    return fmt(value).replace("|", "\\|").replace("\n", " ")


def _md_pre(text: str) -> str:
    return f"<pre>{html.escape(text)}</pre>"


def to_markdown(doc: Document, plots_dir: str = "plots") -> str:
    out = [f"# {doc.title}\n"]
    for b in doc.blocks:
        if isinstance(b, Heading):
            out.append(f"\n{'#' * b.level} {b.text}\n")
        elif isinstance(b, Para):
            out.append(f"\n{b.text}\n")
        elif isinstance(b, Bullets):
            out.append("\n" + "".join(f"- {item}\n" for item in b.items))
        elif isinstance(b, Table):
            lines = ["| " + " | ".join(b.header) + " |", "|" + "---|" * len(b.header)]
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in b.rows]
            out.append("\n" + "\n".join(lines) + "\n")
        elif isinstance(b, Figure):
            out.append(f"\n![{b.caption}]({plots_dir}/{b.name}.png)\n")
        elif isinstance(b, Compare):  # GitHub renders this HTML; the texts are escaped
            out.append(f"\n**{b.title}**\n\n<table><tr><th>{html.escape(b.left.label)}</th>"
                       f"<th>{html.escape(b.right.label)}</th></tr><tr><td>{_md_pre(b.left.text)}"
                       f"</td><td>{_md_pre(b.right.text)}</td></tr></table>\n")
            if b.context:
                out.append(f"\n<details><summary>{b.context_label}</summary>\n\n"
                           f"{_md_pre(b.context)}\n</details>\n")
    return "".join(out)


# ---- HTML ----

TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1b1b1b;max-width:1100px;
margin:2em auto;padding:0 1.2em}
h1{font-size:1.7em;border-bottom:2px solid #ddd;padding-bottom:.3em}
h2{font-size:1.3em;margin-top:1.8em;border-bottom:1px solid #eee}
h3{font-size:1.05em;margin-top:1.4em}
table{border-collapse:collapse;margin:.8em 0;font-size:13px;display:block;overflow-x:auto;
max-width:100%}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f4f4f4}
td.num{text-align:right;font-variant-numeric:tabular-nums}
code{background:#f3f3f3;padding:0 3px;border-radius:3px;font-size:90%}
pre{background:#f7f7f7;border:1px solid #e3e3e3;padding:6px;margin:0;white-space:pre-wrap;
word-break:break-word;font-size:12px;max-height:22em;overflow:auto}
figure{margin:1em 0}figure img{max-width:100%;height:auto}
figcaption{color:#555;font-size:13px}
.compare{display:grid;grid-template-columns:1fr 1fr;gap:8px;margin:.4em 0 1.2em}
.compare h4{margin:.2em 0;font-size:13px}
.s-pass,.s-deploy{color:#1a7f37;font-weight:600}.s-fail,.s-no-deploy{color:#cf222e;font-weight:600}
.s-warn{color:#bc4c00;font-weight:600}.s-inconclusive{color:#8250df;font-weight:600}
.s-missing{font-weight:600}
</style></head><body>
<h1>{{ title|inline }}</h1>
{% for b in blocks %}
{%- if b.kind == "heading" %}<h{{ b.level }}>{{ b.text|inline }}</h{{ b.level }}>
{%- elif b.kind == "para" %}<p>{{ b.text|inline }}</p>
{%- elif b.kind == "bullets" %}<ul>{% for i in b.entries %}<li>{{ i|inline }}</li>{% endfor %}</ul>
{%- elif b.kind == "table" %}<table><thead><tr>{% for h in b.header %}<th>{{ h }}</th>{% endfor %}</tr></thead><tbody>
{%- for row in b.rows %}<tr>{% for c in row %}<td class="{{ c.cls }}">{{ c.text }}</td>{% endfor %}</tr>{% endfor %}</tbody></table>
{%- elif b.kind == "figure" %}<figure><img alt="{{ b.caption }}" src="data:image/png;base64,{{ b.data }}"><figcaption>{{ b.caption }}</figcaption></figure>
{%- elif b.kind == "compare" %}<h3>{{ b.title|inline }}</h3><div class="compare"><div><h4>{{ b.left.label }}</h4><pre>{{ b.left.text }}</pre></div><div><h4>{{ b.right.label }}</h4><pre>{{ b.right.text }}</pre></div></div>
{%- if b.context %}<details><summary>{{ b.context_label }}</summary><pre>{{ b.context }}</pre></details>{% endif %}
{%- endif %}
{% endfor %}
</body></html>
"""

_env = Environment(autoescape=True)
_env.filters["inline"] = lambda text: Markup(_INLINE.renderInline(text))
_template = _env.from_string(TEMPLATE)
STATUSES = ("pass", "warn", "fail", "inconclusive", "missing", "deploy", "no-deploy")


def _cell(value: Any) -> dict:
    text = fmt(value)
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    return {"text": text, "cls": "num" if numeric else f"s-{text}" if text in STATUSES else ""}


def _html_block(b) -> dict:
    if isinstance(b, Heading):
        return {"kind": "heading", "level": b.level, "text": b.text}
    if isinstance(b, Para):
        return {"kind": "para", "text": b.text}
    if isinstance(b, Bullets):
        return {"kind": "bullets", "entries": b.items}
    if isinstance(b, Table):
        return {"kind": "table", "header": b.header, "rows": [[_cell(c) for c in r] for r in b.rows]}
    if isinstance(b, Figure):
        return {"kind": "figure", "caption": b.caption, "data": base64.b64encode(b.png).decode()}
    return {"kind": "compare", "title": b.title, "left": b.left, "right": b.right,
            "context": b.context, "context_label": b.context_label}


def to_html(doc: Document) -> str:
    return _template.render(title=doc.title, blocks=[_html_block(b) for b in doc.blocks])
