"""HTML pages are Jinja2 templates with autoescaping (jembench.pages): text is escaped by MarkupSafe after being made
one inert line; only markup the code built from escaped parts goes in as it is."""

from __future__ import annotations

from html.parser import HTMLParser

import markupsafe

from jembench import escape, pages
from jembench.render import content_security_policy, html_page

HOSTILE = 'run <script>alert(1)</script>\n"quoted" & \'single\' \x1b[31m\u202e'


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text: dict[str, str] = {}

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)

    def handle_endtag(self, tag):
        self.tags.append(f"/{tag}")

    def handle_data(self, data):
        if self.tags:
            self.text[self.tags[-1]] = self.text.get(self.tags[-1], "") + data


def test_escape_html_is_markupsafe_on_one_line():
    assert escape.html(HOSTILE) == str(markupsafe.escape(escape.one_line(HOSTILE)))
    assert "<" not in escape.html(HOSTILE) and "\n" not in escape.html(HOSTILE)
    assert "\\x1b" in escape.html(HOSTILE) and "\\u202e" in escape.html(HOSTILE)  # visible, not interpreted
    assert type(escape.html("x")) is str  # not Markup: concatenating it with markup must not re-escape


def test_page_escapes_text_and_keeps_the_callers_markup():
    page = html_page(HOSTILE, "<p>built <b>from</b> escaped parts</p>", "var a = 1;")
    parsed = _Text()
    parsed.feed(page)
    assert parsed.tags.count("script") == 1  # the page's own script only; the title's stayed text
    assert parsed.text["title"] == escape.one_line(HOSTILE)  # what a browser shows: the text, as one line
    assert "<p>built <b>from</b> escaped parts</p>" in page and "<script>var a = 1;</script>" in page
    assert f'content="{content_security_policy("var a = 1;")}"' in page  # the policy as written, hash included


def test_boards_template_escapes_titles_and_notes():
    out = pages.render(pages.BOARDS, sections=[{"title": HOSTILE, "table": pages.markup("<table></table>"),
                                                "notes": [HOSTILE]}])
    assert out.count("<script>") == 0 and "<table></table>" in out
    assert out.count(escape.html(HOSTILE)) == 2
