#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

from __future__ import annotations

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    # While `make run` is up, it records the embedded services' URLs here, so that
    # `manage.py shell` and friends reach the same database and Redis with no configuration.
    from config import stack

    services_env = stack.services_env_path()
    if services_env.exists():
        for line in services_env.read_text().splitlines():
            key, _, value = line.partition("=")
            if key and value:
                os.environ.setdefault(key, value)

    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
