"""A small report document rendered both as self-contained HTML and as Markdown.

Written by hand rather than with a template engine: a report is a flat list of headings,
paragraphs, tables and images, and the HTML must embed its images so it can be mailed as one file.
"""

from __future__ import annotations

import base64
import html
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnlab.files import atomic_write_text

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;
margin:2em auto;padding:0 1em;color:#1d1d1f;line-height:1.45}
h1{border-bottom:2px solid #ddd;padding-bottom:.3em}h2{margin-top:2em;border-bottom:1px solid #eee}
table{border-collapse:collapse;margin:1em 0;font-size:.9em;max-width:100%}
th,td{border:1px solid #ddd;padding:.3em .6em;text-align:right;overflow-wrap:anywhere}
th{background:#f5f5f7}nav ul{columns:2}
td:first-child,th:first-child{text-align:left}
figure{margin:1em 0}img{max-width:100%;border:1px solid #eee}figcaption{color:#666;font-size:.85em}
.conclusion{background:#f0f7ff;border-left:4px solid #0a66c2;padding:.5em 1em}
code,pre{background:#f5f5f7;padding:.1em .3em;border-radius:3px}pre{padding:.8em;overflow-x:auto}
"""


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """The lines of a Markdown table; a ``|`` inside a cell is escaped, so it stays one cell."""

    def row(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    return [row(header), row(["---"] * len(header)), *map(row, rows)]


def slug(text: str) -> str:
    """A heading's anchor as GitHub writes it for Markdown (lower case, punctuation dropped,
    spaces to hyphens), so the contents' links work in report.html and report.md alike."""
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def _anchors(blocks: Sequence[tuple[str, Any]]) -> list[str]:
    """The anchor of each heading in order; a repeated one gets ``-1``, ``-2``... (GitHub)."""
    seen: dict[str, int] = {}
    out = []
    for kind, value in blocks:
        if kind == "heading":
            base = slug(value[1])
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.append(base if n == 0 else f"{base}-{n}")
    return out


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


@dataclass
class Report:
    title: str
    blocks: list[tuple[str, Any]] = field(default_factory=list)

    def heading(self, text: str, level: int = 2) -> Report:
        self.blocks.append(("heading", (level, text)))
        return self

    def paragraph(self, text: str, css_class: str | None = None) -> Report:
        self.blocks.append(("paragraph", (text, css_class)))
        return self

    def contents(self, level: int = 2) -> Report:
        """A table of contents here: a link to every heading of ``level``, before or after."""
        self.blocks.append(("contents", level))
        return self

    def _toc(self, level: int) -> list[tuple[str, str]]:
        headings = [v for k, v in self.blocks if k == "heading"]
        return [
            (text, anchor)
            for (lv, text), anchor in zip(headings, _anchors(self.blocks), strict=True)
            if lv == level
        ]

    def bullets(self, items: Sequence[str]) -> Report:
        self.blocks.append(("bullets", list(items)))
        return self

    def code(self, text: str) -> Report:
        self.blocks.append(("code", text))
        return self

    def table(
        self, rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None
    ) -> Report:
        rows = list(rows)
        columns = list(columns or (rows[0].keys() if rows else []))
        self.blocks.append(("table", (columns, rows)))
        return self

    def image(self, path: str | os.PathLike, caption: str = "") -> Report:
        self.blocks.append(("image", (Path(path), caption)))
        return self

    # -- rendering -------------------------------------------------------------------------
    def to_html(self) -> str:
        out = [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{html.escape(self.title)}</title><style>{_CSS}</style></head><body>",
            f"<h1>{html.escape(self.title)}</h1>",
        ]
        anchors = iter(_anchors(self.blocks))
        for kind, value in self.blocks:
            if kind == "heading":
                level, text = value
                out.append(f'<h{level} id="{next(anchors)}">{html.escape(text)}</h{level}>')
            elif kind == "contents":
                links = "".join(f'<li><a href="#{a}">{html.escape(t)}</a></li>'
                                for t, a in self._toc(value))  # fmt: skip
                out.append(f"<nav><strong>Contents</strong><ul>{links}</ul></nav>")
            elif kind == "paragraph":
                text, css = value
                cls = f' class="{css}"' if css else ""
                out.append(f"<p{cls}>{html.escape(text)}</p>")
            elif kind == "bullets":
                out.append("<ul>" + "".join(f"<li>{html.escape(t)}</li>" for t in value) + "</ul>")
            elif kind == "code":
                out.append(f"<pre><code>{html.escape(value)}</code></pre>")
            elif kind == "table":
                columns, rows = value
                head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
                body = "".join(
                    "<tr>" + "".join(f"<td>{html.escape(_cell(r.get(c)))}</td>" for c in columns)
                    + "</tr>"
                    for r in rows
                )  # fmt: skip
                out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
            elif kind == "image":
                path, caption = value
                data = base64.b64encode(path.read_bytes()).decode("ascii")
                out.append(
                    f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(caption)}">'
                    f"<figcaption>{html.escape(caption)}</figcaption></figure>"
                )
        out.append("</body></html>")
        return "\n".join(out)

    def to_markdown(self, relative_to: str | os.PathLike | None = None) -> str:
        out = [f"# {self.title}", ""]
        for kind, value in self.blocks:
            if kind == "heading":
                level, text = value
                out += ["#" * level + " " + text, ""]
            elif kind == "contents":
                out += ["**Contents**", ""]
                out += [f"- [{t}](#{a})" for t, a in self._toc(value)] + [""]
            elif kind == "paragraph":
                text, css = value
                out += [("> " if css == "conclusion" else "") + text, ""]
            elif kind == "bullets":
                out += [f"- {t}" for t in value] + [""]
            elif kind == "code":
                out += ["```", value, "```", ""]
            elif kind == "table":
                columns, rows = value
                out += markdown_table(columns, [[_cell(r.get(c)) for c in columns] for r in rows])
                out.append("")
            elif kind == "image":
                path, caption = value
                shown = os.path.relpath(path, relative_to) if relative_to else str(path)
                out += [f"![{caption}]({shown})", ""]
        return "\n".join(out)

    def write(self, out_dir: str | os.PathLike, stem: str = "report") -> tuple[Path, Path]:
        """Write ``<stem>.html`` (self-contained) and ``<stem>.md`` into ``out_dir``."""
        out_dir = Path(out_dir)
        html_path = atomic_write_text(out_dir / f"{stem}.html", self.to_html())
        md_path = atomic_write_text(out_dir / f"{stem}.md", self.to_markdown(out_dir))
        return html_path, md_path
