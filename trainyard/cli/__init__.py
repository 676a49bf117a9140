"""`trainyard`: the command line for people.

Talks to the onboarding API (local by default, or a deployed one with
``--api-url``, signed with SigV4). Uploads go through the API's presigned upload
as plain HTTP with no AWS credentials (``trainyard/uploads.py``); ``upload --direct``
puts objects with plain boto3 instead (the embedded AWS endpoint locally, real AWS
otherwise). Never prompts: CI runs it with no standard input. One module per group
of commands.
"""

from __future__ import annotations

import sys

# Importing the command modules registers their commands on the apps.
from trainyard.cli import console_cmd, local, models, queue, runs, tenants, webhook  # noqa: F401
from trainyard.cli.common import app, console
from trainyard.cli.local import port_is_free

__all__ = ["app", "console", "main", "port_is_free"]


def main() -> None:
    # Never let Python print a traceback for Ctrl-C at the top level.
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
