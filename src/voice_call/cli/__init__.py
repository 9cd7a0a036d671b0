"""The `voicecall` command line: `main.py` is the root group and the table of commands, one
module per command group beside it (see main.py's docstring), and `common.py` what they share.

`main` is re-exported for `voicecall = "voice_call.cli:main"` (pyproject) and `__main__.py`
(`python -m voice_call.cli`).
"""

from voice_call.cli.main import main

__all__ = ["main"]
