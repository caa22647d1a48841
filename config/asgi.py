"""ASGI entry point: pages, API and streamed replies (uvicorn, one process per worker)."""

from __future__ import annotations

import logging
import os
import threading

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

application = get_asgi_application()


def _warm_up() -> None:
    """Load what the first chat turn would otherwise load while a person waits: the privacy
    filter (sending a message titles the conversation through it) and the local embedding
    model (embedding the message). In the background: the server starts answering at once."""
    from django.conf import settings

    from memory import embeddings, privacy

    try:
        privacy.warm_up()
        if not settings.EMBEDDING_BASE_URL:
            embeddings.embed_one("warm-up")
    except Exception:
        logging.getLogger(__name__).exception("warm-up failed; the first request loads instead")


threading.Thread(target=_warm_up, name="warm-up", daemon=True).start()
