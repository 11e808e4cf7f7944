#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

from __future__ import annotations

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "faceweb.settings")
    from django.core.management import execute_from_command_line

    from faceweb.db import ensure_embedded_server

    ensure_embedded_server()
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
