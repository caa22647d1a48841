"""The model endpoints operators configure, which of them are local, and who may see what.

Zero configuration gives one endpoint, `default`: the embedded local model (or whatever
LLM_BASE_URL points at). `LLM_ENDPOINTS=hosted,work` adds more, each described by its own
variables (`LLM_ENDPOINT_HOSTED_BASE_URL`, `…_MODEL`, `…_API_KEY_ENV`, `…_LABEL`, `…_LOCAL`,
`…_LAYOUT`). People pick one per conversation (`Conversation.endpoint`).

An endpoint is *local* when what is sent to it stays on machines the operator runs: the
embedded model, or an address on loopback or a private network, unless LLM_LOCAL (or
`…_LOCAL`) says otherwise. Anything else is *hosted*. The rules that follow from it live in
memory/exposure.py.

API keys are never kept here: an endpoint names the environment variable that holds its key,
read when a client is built, so no key is in settings, a repr, a log line or the database.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
LAYOUTS = ("auto", "small", "large")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class Target:
    """One OpenAI-compatible server and model. Holds the *name* of its key's variable only."""

    base_url: str
    model: str
    # "" = LLM_API_KEY (the default endpoint's key), else the environment variable to read.
    api_key_env: str = ""

    def api_key(self) -> str:
        if not self.api_key_env:
            return str(settings.LLM_API_KEY)
        # A server that needs no key (llama.cpp, Ollama) still gets a non-empty one: the SDK
        # refuses to build a client without.
        return os.environ.get(self.api_key_env, "") or "not-needed"


@dataclass(frozen=True)
class Endpoint:
    name: str
    label: str
    local: bool
    chat: Target
    background: Target
    layout: str = "auto"  # auto | small | large (config/model_class.py)
    default: bool = False

    def prompt_class(self, *, background: bool = False) -> str:
        """small or large: this endpoint's LAYOUT when set, else by its model's name."""
        from config import model_class

        if self.layout in model_class.CLASSES:
            return self.layout
        model = self.background.model if background else self.chat.model
        if self.default:
            return model_class.configured_class(model)  # LLM_PROMPT_LAYOUT applies
        return model_class.class_of(model)

    def describe(self) -> dict[str, Any]:
        """What people and the API may know about it: never its address or key."""
        return {
            "name": self.name,
            "label": self.label,
            "local": self.local,
            "default": self.default,
            "model": self.chat.model,
        }


def is_private_address(url: str) -> bool:
    """True for a URL whose host is loopback, a private network, link-local or `localhost`.

    Host names other than localhost count as public: resolving them here would make a
    privacy rule depend on DNS at the moment of the check.
    """
    host = (urlsplit(url).hostname or "").strip("[]").lower()
    if not host:
        return False
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_private or address.is_link_local


def _flag(value: str, *, variable: str) -> bool | None:
    """true/false, or None for "auto" / unset; anything else is a configuration error."""
    text = value.strip().lower()
    if text in ("", "auto"):
        return None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ImproperlyConfigured(f"{variable} must be true, false or auto, not {value!r}.")


def parse_extra_endpoints(environ: Mapping[str, str]) -> list[dict[str, Any]]:
    """The endpoints LLM_ENDPOINTS names, read from their variables (settings calls this).

    Returns plain dicts (no key values); raises ImproperlyConfigured with the variable to fix.
    """
    names = [n.strip() for n in environ.get("LLM_ENDPOINTS", "").split(",") if n.strip()]
    default_name = environ.get("LLM_DEFAULT_ENDPOINT_NAME", "default").strip() or "default"
    found: list[dict[str, Any]] = []
    for name in names:
        if not NAME_RE.match(name):
            raise ImproperlyConfigured(
                f"LLM_ENDPOINTS: {name!r} is not a valid name (lower-case letters, digits, "
                "- and _, starting with a letter, at most 32 characters)."
            )
        if name == default_name or any(e["name"] == name for e in found):
            raise ImproperlyConfigured(f"LLM_ENDPOINTS: the name {name!r} is used twice.")
        prefix = f"LLM_ENDPOINT_{name.upper().replace('-', '_')}_"
        base_url = environ.get(prefix + "BASE_URL", "").strip()
        model = environ.get(prefix + "MODEL", "").strip()
        if not base_url or not model:
            raise ImproperlyConfigured(
                f"Endpoint {name!r} needs {prefix}BASE_URL and {prefix}MODEL."
            )
        layout = environ.get(prefix + "LAYOUT", "auto").strip().lower() or "auto"
        if layout not in LAYOUTS:
            raise ImproperlyConfigured(f"{prefix}LAYOUT must be auto, small or large.")
        local = _flag(environ.get(prefix + "LOCAL", ""), variable=prefix + "LOCAL")
        found.append(
            {
                "name": name,
                "label": environ.get(prefix + "LABEL", "").strip() or model,
                "base_url": base_url,
                "model": model,
                "api_key_env": environ.get(prefix + "API_KEY_ENV", "").strip(),
                "local": is_private_address(base_url) if local is None else local,
                "layout": layout,
                "background_base_url": environ.get(prefix + "BACKGROUND_BASE_URL", "").strip(),
                "background_model": environ.get(prefix + "BACKGROUND_MODEL", "").strip(),
            }
        )
    return found


def default_endpoint() -> Endpoint:
    """The endpoint of LLM_BASE_URL (the embedded local model when unset)."""
    base_url = str(settings.LLM_BASE_URL)
    background_url = str(settings.LLM_BACKGROUND_BASE_URL or base_url)
    configured = _flag(str(getattr(settings, "LLM_LOCAL", "auto")), variable="LLM_LOCAL")
    if configured is None:
        # Embedded (`make run` sets LLM_BASE_URL to a loopback address), or both the chat and
        # the background server on private addresses.
        local = all(is_private_address(url) for url in (base_url, background_url) if url)
    else:
        local = configured
    label = str(getattr(settings, "LLM_LABEL", "") or "")
    return Endpoint(
        name=str(getattr(settings, "LLM_DEFAULT_ENDPOINT_NAME", "default") or "default"),
        label=label or ("Local model" if local else str(settings.LLM_CHAT_MODEL)),
        local=local,
        chat=Target(base_url, str(settings.LLM_CHAT_MODEL)),
        background=Target(background_url, str(settings.LLM_BACKGROUND_MODEL)),
        layout=str(getattr(settings, "LLM_PROMPT_LAYOUT", "auto")).lower(),
        default=True,
    )


def all_endpoints() -> list[Endpoint]:
    """The default endpoint first, then LLM_ENDPOINTS in their order."""
    found = [default_endpoint()]
    for spec in getattr(settings, "LLM_EXTRA_ENDPOINTS", []):
        chat = Target(spec["base_url"], spec["model"], spec.get("api_key_env", ""))
        background = Target(
            spec.get("background_base_url") or spec["base_url"],
            spec.get("background_model") or spec["model"],
            spec.get("api_key_env", ""),
        )
        found.append(
            Endpoint(
                name=spec["name"],
                label=spec.get("label") or spec["model"],
                local=bool(spec["local"]),
                chat=chat,
                background=background,
                layout=spec.get("layout", "auto"),
            )
        )
    return found


def get(name: str | None) -> Endpoint:
    """The endpoint called `name`; the default for "" and for a name no longer configured.

    Falling back keeps a conversation usable after an operator removes its endpoint; what it
    may see is then decided by the default's locality (and `is_local_name` keeps the text
    said to the removed one away from hosted models).
    """
    endpoints = all_endpoints()
    return next((e for e in endpoints if name and e.name == name), endpoints[0])


def find(name: str) -> Endpoint | None:
    return next((e for e in all_endpoints() if e.name == name), None)


def is_local_name(name: str) -> bool:
    """Whether text said to the endpoint called `name` must stay on local models.

    "" is the default endpoint (rows from before endpoints were recorded). A name no longer
    configured counts as local: nobody can say any more where it was, so its text is kept
    from hosted models.
    """
    endpoint = find(name) if name else default_endpoint()
    return True if endpoint is None else endpoint.local


def background_endpoint() -> Endpoint:
    """Where background work (extraction, titles, summaries) goes by default:
    LLM_BACKGROUND_ENDPOINT when it names an endpoint, else the default endpoint."""
    name = str(getattr(settings, "LLM_BACKGROUND_ENDPOINT", "") or "")
    return (find(name) if name else None) or default_endpoint()


def local_background_endpoint() -> Endpoint | None:
    """A local endpoint for background work that must stay local: the background endpoint if
    local, else the first local endpoint (the default first), else None."""
    preferred = background_endpoint()
    if preferred.local:
        return preferred
    return next((e for e in all_endpoints() if e.local), None)
