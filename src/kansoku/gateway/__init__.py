"""The gateway (in progress): an OpenAI-compatible proxy with reliability policies.

This release has its configuration (YAML with ``${ENV}`` substitution, validated into frozen
values with errors that name the file, the line and the fix) and the dead-letter store.
"""

from kansoku.gateway._config import (
    PROVIDERS,
    ROUTING,
    Breaker,
    Deployment,
    GatewayConfig,
    ModelRoute,
    Retry,
    Secret,
    Validate,
    load_config,
    parse_config,
)
from kansoku.gateway._deadletter import Attempt, DeadLetter, DeadLetterStore, SQLiteDeadLetters
from kansoku.gateway._yaml import ConfigFileError

__all__ = [
    "PROVIDERS",
    "ROUTING",
    "Attempt",
    "Breaker",
    "ConfigFileError",
    "DeadLetter",
    "DeadLetterStore",
    "Deployment",
    "GatewayConfig",
    "ModelRoute",
    "Retry",
    "SQLiteDeadLetters",
    "Secret",
    "Validate",
    "load_config",
    "parse_config",
]
