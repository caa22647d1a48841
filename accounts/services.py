"""Account services: the person's memory switch."""

from __future__ import annotations

from accounts.models import User


def set_memory_enabled(*, user: User, enabled: bool) -> User:
    """Pause or resume memory: when paused, Mnemo neither learns nor recalls anything."""
    User.objects.filter(pk=user.pk).update(memory_enabled=enabled)
    user.memory_enabled = enabled
    return user
