"""The `voicecall` command line: `main.py` is the root group; one module per command group."""

from voice_call.cli.main import main

__all__ = ["main"]
