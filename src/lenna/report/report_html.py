"""The demo report's Markdown as one self-contained HTML page (figures embedded): the small
subset the report uses, so a reader needs only a browser and nothing is fetched."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path


def markdown_to_html(md_text: str, figs: dict[str, Path], folder: Path) -> str:
    """A small Markdown subset (headings, bold, italics, code, tables, images) to
    self-contained HTML."""
    embedded = {
        v.relative_to(folder).as_posix(): base64.b64encode(v.read_bytes()).decode()
        for v in figs.values()
    }
    body, table = [], []

    def flush() -> None:
        if not table:
            return
        rows = [r for r in table if not set(r.replace("|", "").strip()) <= {"-"}]
        cells = [[html.escape(c.strip()) for c in r.strip().strip("|").split("|")] for r in rows]
        out = ["<table>", "<tr>" + "".join(f"<th>{c}</th>" for c in cells[0]) + "</tr>"]
        out += ["<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in cells[1:]]
        body.append("\n".join([*out, "</table>"]))
        table.clear()

    for line in md_text.splitlines():
        if line.startswith("|"):
            table.append(line)
            continue
        flush()
        if line.startswith("!["):
            alt, src = line[2:].split("](", 1)
            src = src.rstrip(")")
            body.append(
                f'<figure><img alt="{html.escape(alt)}" '
                f'src="data:image/png;base64,{embedded[src]}"></figure>'
            )
        elif line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            body.append(f"<h{level}>{html.escape(line[level:].strip())}</h{level}>")
        elif line.strip():
            text = html.escape(line)
            while text.count("**") >= 2:
                text = text.replace("**", "<strong>", 1).replace("**", "</strong>", 1)
            while text.count("`") >= 2:
                text = text.replace("`", "<code>", 1).replace("`", "</code>", 1)
            text = re.sub(r"(?<![*\w])\*([^*\s][^*]*?)\*(?![*\w])", r"<em>\1</em>", text)
            body.append(f"<p>{text}</p>")
    flush()
    style = (
        "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
        "padding:3px 8px;text-align:right}img{max-width:100%}"
    )
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>LENNA demo report</title><style>{style}</style></head><body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )
