"""The `quadpipe` command: `main` parses the verbs that cli.data and cli.learn register."""

from quadpipe.cli.main import main

__all__ = ["main"]
