"""Settings: a JSON5 file in the seed plugin's shape, env fallbacks, validation and defaults.

Pipeline (``load_config`` → ``parse_config``): read JSON5 (``load.py``) → unwrap an OpenClaw
config file (``openclaw.py``: ``plugins.entries["voice-call"].config``) → fill ``"${NAME}"`` and
``{source: "env", id}`` references (``substitution.py``) → migrate legacy keys
with warnings (``legacy.py``) → fill secrets from the environment where the file leaves them
out (``environment.py``) → validate the model (``schema.py``, ``fields.py``) and check between
fields (``checks.py``). Validation reports *every* problem at once, each as
``path: message — fix`` with the camelCase path as written in the file (``errors.py``,
``wording.py``). ``redact.py`` prints the result with secrets masked; ``paths.py`` says where
the state folder and the default file are.

Imports nothing of ours except ``voice_call.models``.
"""

from voice_call.config.errors import ConfigError, Loc, format_path
from voice_call.config.load import load_config
from voice_call.config.openclaw import OPENCLAW_ENTRY
from voice_call.config.parse import parse_config
from voice_call.config.paths import default_config_path, state_home
from voice_call.config.realtime import RealtimeConfig
from voice_call.config.redact import redacted
from voice_call.config.schema import (
    CARRIERS,
    DEFAULT_APOLOGY,
    PROVIDERS,
    Config,
    MockConfig,
    NumberRoute,
    OutboundConfig,
    PlivoConfig,
    ProviderName,
    ResponderConfig,
    ServeConfig,
    StoreConfig,
    StreamingConfig,
    TailscaleConfig,
    TelnyxConfig,
    TunnelConfig,
    TwilioConfig,
    WebhookSecurityConfig,
)

__all__ = [
    "CARRIERS",
    "DEFAULT_APOLOGY",
    "OPENCLAW_ENTRY",
    "PROVIDERS",
    "Config",
    "ConfigError",
    "Loc",
    "MockConfig",
    "NumberRoute",
    "OutboundConfig",
    "PlivoConfig",
    "ProviderName",
    "RealtimeConfig",
    "ResponderConfig",
    "ServeConfig",
    "StoreConfig",
    "StreamingConfig",
    "TailscaleConfig",
    "TelnyxConfig",
    "TunnelConfig",
    "TwilioConfig",
    "WebhookSecurityConfig",
    "default_config_path",
    "format_path",
    "load_config",
    "parse_config",
    "redacted",
    "state_home",
]
