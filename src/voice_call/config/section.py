"""The base of every config section: camelCase in the file, snake_case in Python, unknown keys
are errors. Its own module so the sections split out of ``schema.py`` (``tts.py``,
``streaming.py``) share it without importing ``schema.py`` back."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class Section(BaseModel):
    """camelCase in the file, snake_case in Python; unknown keys are errors."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")
