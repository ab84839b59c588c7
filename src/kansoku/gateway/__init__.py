"""The gateway (in progress): an OpenAI-compatible proxy with reliability policies.

This release has its configuration: YAML with ``${ENV}`` substitution, validated into frozen
values with errors that name the file, the line and the fix.
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
from kansoku.gateway._yaml import ConfigFileError

__all__ = [
    "PROVIDERS",
    "ROUTING",
    "Breaker",
    "ConfigFileError",
    "Deployment",
    "GatewayConfig",
    "ModelRoute",
    "Retry",
    "Secret",
    "Validate",
    "load_config",
    "parse_config",
]
