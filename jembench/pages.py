"""The HTML that jembench writes (leaderboard pages, the report), as Jinja2 templates with autoescaping.

Why a template engine: every value put into a page goes through MarkupSafe's escaping unless the code marks it
as markup on purpose (:class:`markupsafe.Markup` — tables tabulate built from escaped cells, embedded images,
the page's own script), so a forgotten escape cannot happen. Text from records, checkpoints and folders also
passes the ``line`` filter (:func:`jembench.escape.one_line`: one line, control characters and bidi overrides
visible) before it is escaped, as :func:`jembench.escape.html` does for the pieces built in Python.
"""

from __future__ import annotations

from typing import Any

import jinja2
from markupsafe import Markup

from .escape import one_line

_ENV = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                          keep_trailing_newline=True)
_ENV.filters["line"] = one_line

PAGE = _ENV.from_string("""\
<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{{ csp }}">
<title>{{ title | line }}</title>
<style>{{ css }}</style>
</head>
<body>
<h1>{{ title | line }}</h1>
{{ body }}
{% if script %}
<script>{{ script }}</script>
{% endif %}
</body>
</html>
""")

BOARDS = _ENV.from_string("""\
{% for s in sections %}
<section class="board">
<h3>{{ s.title | line }}</h3>
{{ s.table }}
{% if s.notes %}
<ul class="notes">{% for note in s.notes %}<li>{{ note | line }}</li>{% endfor %}</ul>
{% endif %}
</section>
{% endfor %}""")

REPORT = _ENV.from_string("""\
<p>{{ n_records }} record(s) under <code>{{ root | line }}</code>, {{ n_figures }} figure(s).</p>
<h2>Records</h2>
{{ overview }}
<h2>Leaderboards</h2>
{% if boards %}
{{ boards }}
{% else %}
<p>No leaderboard rows: the records hold no table metrics.</p>
{% endif %}
<h2>Figures</h2>
{% for block in blocks %}
<section class="figures">
<h3>{{ block.caption | line }}</h3>
<p><code>{{ block.record | line }}</code></p>
{% for figure in block.figures %}
<figure>{{ figure.img }}<figcaption>{{ figure.caption }}</figcaption></figure>
{% endfor %}
</section>
{% else %}
<p>The records list no figures.</p>
{% endfor %}""")


def render(template: jinja2.Template, **values: Any) -> str:
    """``template`` filled in (text escaped, :class:`~markupsafe.Markup` values inserted as they are), as ``str``."""
    return str(template.render(**values))


def markup(html: str) -> Markup:
    """Mark HTML that the code built from escaped parts as such, so a template inserts it unchanged."""
    return Markup(html)
