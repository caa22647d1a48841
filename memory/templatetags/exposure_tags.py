"""Template tags for what stays on local models: a memory's reason, the person's rules."""

from __future__ import annotations

from typing import Any

from django import template

from config import endpoints
from memory import exposure
from memory.models import Memory

register = template.Library()


def _rules(context: template.Context, user: Any) -> exposure.Rules:
    # Read once per request, however many memories the page shows.
    request = context.get("request")
    rules = getattr(request, "_local_only_rules", None)
    if rules is None:
        rules = exposure.rules_for(user=user)
        if request is not None:
            request._local_only_rules = rules
    return rules


@register.simple_tag(takes_context=True)
def kept_local(context: template.Context, memory: Memory) -> str:
    """Why the memory stays on local models ("health", "marked by you"…), or ""."""
    reason = exposure.memory_reason(memory, _rules(context, memory.user_id))
    return exposure.REASON_LABELS.get(reason, reason) if reason else ""


@register.simple_tag(takes_context=True)
def summary_kept_local(context: template.Context, summary: Any) -> str:
    """Why a conversation summary stays on local models, or ""."""
    rules = _rules(context, summary.user_id)
    reason = rules.reason(kind=exposure.SUMMARY, content=summary.content)
    return exposure.REASON_LABELS.get(reason, reason) if reason else ""


@register.simple_tag(takes_context=True)
def local_only_rules(context: template.Context) -> list[dict[str, Any]]:
    """The person's rules as checkboxes: key, label, checked."""
    rules = _rules(context, context["request"].user)
    return [{"key": k, "label": label, "checked": k in rules.keys} for k, label in exposure.KEYS]


@register.simple_tag
def model_endpoints() -> list[endpoints.Endpoint]:
    return endpoints.all_endpoints()
