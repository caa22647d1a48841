"""Project package: settings, URLs, ASGI/WSGI entry points, Celery app, embedded stack."""

from __future__ import annotations

from config.celery import app as celery_app

__all__ = ("celery_app",)
