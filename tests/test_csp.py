"""The Content-Security-Policy header, and templates that need nothing it forbids."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
STATIC_JS = Path(__file__).resolve().parent.parent / "static" / "js"


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/accounts/password/change/", "/chat/", "/memory/", "/account/"])
def test_pages_send_a_policy_without_inline_script_or_eval(user_client: Client, path: str) -> None:
    response = user_client.get(path)
    policy = response["Content-Security-Policy"]
    assert response.status_code == 200
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe" not in policy


@pytest.mark.django_db
def test_the_api_docs_load_their_init_script_from_a_file(user_client: Client) -> None:
    page = user_client.get("/api/docs/")
    html = page.content.decode()
    assert page.status_code == 200
    assert "<style>" not in html
    assert not re.search(r"<script>", html)
    script = user_client.get("/api/docs/?script=")
    assert script.status_code == 200
    assert script["Content-Type"].startswith("application/javascript")
    assert "SwaggerUIBundle" in script.content.decode()


@pytest.mark.parametrize(
    "template", sorted(TEMPLATES.rglob("*.html")), ids=lambda p: str(p.relative_to(TEMPLATES))
)
def test_no_template_needs_inline_script_style_or_eval(template: Path) -> None:
    # What the template renders, not what its comments say.
    html = re.sub(
        r"\{#.*?#\}|\{% comment %\}.*?\{% endcomment %\}", "", template.read_text(), flags=re.S
    )
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "inline <script>"
    assert not re.search(r"\son[a-z]+\s*=", html), "inline event handler"
    assert "hx-on" not in html, "hx-on needs eval"
    assert not re.search(r"\sstyle\s*=", html), "inline style attribute"
    assert "<style" not in html, "inline <style>"
    assert "js:" not in html and "javascript:" not in html, "htmx js: values need eval"


def test_htmx_runs_without_eval_and_injected_styles() -> None:
    base = (TEMPLATES / "base.html").read_text()
    assert '"allowEval":false' in base
    assert '"includeIndicatorStyles":false' in base


# Emoji that render as empty boxes without an emoji font (the machine this runs on has none).
# Also the symbols that used to stand in for icons (■ ↻ ✓ ⤓ ⋯ ←), which depend on font fallback.
EMOJI = re.compile(
    "[\U0001f000-\U0001faff\u2600-\u27bf\u2b00-\u2bff\u2300-\u23ff"
    "\u25a0-\u25ff\u21ba\u21bb\u2913\u22ef\u2190]"
)


@pytest.mark.parametrize(
    "path",
    [*sorted(TEMPLATES.rglob("*.html")), *sorted(STATIC_JS.glob("[!h]*.js"))],
    ids=lambda p: p.name,
)
def test_no_template_or_script_shows_emoji(path: Any) -> None:
    assert EMOJI.findall(path.read_text()) == []
