#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

from __future__ import annotations

import os
import sys

# Commands that work without a database, so without a running `make run`.
WITHOUT_DATABASE = {
    "help", "version", "check", "makemigrations", "squashmigrations", "optimizemigration",
    "collectstatic", "findstatic", "spectacular", "startapp", "startproject", "diffsettings",
    "test", "sendtestemail", "compilemessages", "makemessages",
}  # fmt: skip


def _database_configured(base_dir: os.PathLike[str] | str) -> bool:
    if os.environ.get("DATABASE_URL"):
        return True
    dotenv = os.path.join(base_dir, ".env")
    if os.path.exists(dotenv):
        with open(dotenv) as f:
            return any(line.strip().startswith("DATABASE_URL=") for line in f)
    return False


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
    elif (
        len(sys.argv) > 1
        and sys.argv[1] not in WITHOUT_DATABASE
        and not sys.argv[1].startswith("-")
        and not _database_configured(stack.BASE_DIR)
    ):
        # Without this, the command waits for the pool timeout, prints a traceback about a
        # missing socket, and leaves a secret key in a data folder nobody uses.
        sys.exit(
            f"manage.py {sys.argv[1]}: Mnemo is not running (no {services_env}). Start "
            "`make run` first (with the same MNEMO_DATA_DIR), or set DATABASE_URL."
        )

    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
