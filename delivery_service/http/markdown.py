"""Markdown to HTML for the test UI, safe for any model output or requirement.

markdown-it-py with raw HTML turned off: tags in the text come out escaped, and link targets such as
`javascript:` are refused by its link validation. So a deliverable can be inserted into a page as is.
"""

from __future__ import annotations

from markdown_it import MarkdownIt

_renderer = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table").enable("strikethrough")


def render_markdown(text: str) -> str:
    """Safe HTML for `text` (CommonMark with tables and strikethrough; raw HTML escaped)."""
    return _renderer.render(text)
