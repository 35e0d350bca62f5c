#!/usr/bin/env python
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    if "SECRET_KEY" not in os.environ and "DEBUG" not in os.environ:
        # manage.py from a checkout with nothing configured is a developer at work (the README's commands, as
        # `make run` does): development mode. Production sets SECRET_KEY; DEBUG=0 without it is refused.
        os.environ["DEBUG"] = "1"
        print("Development mode (DEBUG=1): neither SECRET_KEY nor DEBUG is set.", file=sys.stderr)
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
