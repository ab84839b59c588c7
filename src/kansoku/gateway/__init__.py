"""The gateway (in progress): an OpenAI-compatible proxy with reliability policies.

This release has its configuration (YAML with ``${ENV}`` substitution, validated into frozen
values with errors that name the file, the line and the fix), the dead-letter store, and the
translation between OpenAI chat requests and Anthropic messages (requests, replies, streams,
errors), and the calls to one deployment (OpenAI, compatible, Azure, Anthropic; streamed or
not) with typed, secret-free errors, and the router's attempt loop over the policies (balancer,
breakers, retry budget, deadline, backoff, fallbacks, template answer). The HTTP proxy is next.
"""

from kansoku.gateway._admission import DEFAULT_COMPLETION_TOKENS, Admission, Ticket, estimate_tokens
from kansoku.gateway._anthropic import DEFAULT_MAX_TOKENS, TranslationError, to_anthropic_request
from kansoku.gateway._anthropic_stream import (
    AnthropicStreamError,
    AnthropicStreamTranslator,
    SseParser,
    error_from_anthropic,
    from_anthropic_response,
)
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
from kansoku.gateway._keys import Budget, KeyRing, Limit, VirtualKey, key_digest
from kansoku.gateway._router import Routed, Router, deployment_name, template_completion
from kansoku.gateway._upstream import UpstreamError, UpstreamResult, complete, make_session
from kansoku.gateway._upstream_stream import StreamBroken, UpstreamStream, stream
from kansoku.gateway._validate import (
    Outcome,
    SchemaError,
    ValidationFailure,
    Validator,
    compile_schema,
    extract_json,
    reask_messages,
    schema_from_request,
    validate_answer,
)
from kansoku.gateway._yaml import ConfigFileError

__all__ = [
    "DEFAULT_COMPLETION_TOKENS",
    "DEFAULT_MAX_TOKENS",
    "PROVIDERS",
    "ROUTING",
    "Admission",
    "AnthropicStreamError",
    "AnthropicStreamTranslator",
    "Attempt",
    "Breaker",
    "Budget",
    "ConfigFileError",
    "DeadLetter",
    "DeadLetterStore",
    "Deployment",
    "GatewayConfig",
    "KeyRing",
    "Limit",
    "ModelRoute",
    "Outcome",
    "Retry",
    "Routed",
    "Router",
    "SQLiteDeadLetters",
    "SchemaError",
    "Secret",
    "SseParser",
    "StreamBroken",
    "Ticket",
    "TranslationError",
    "UpstreamError",
    "UpstreamResult",
    "UpstreamStream",
    "Validate",
    "ValidationFailure",
    "Validator",
    "VirtualKey",
    "compile_schema",
    "complete",
    "deployment_name",
    "error_from_anthropic",
    "estimate_tokens",
    "extract_json",
    "from_anthropic_response",
    "key_digest",
    "load_config",
    "make_session",
    "parse_config",
    "reask_messages",
    "schema_from_request",
    "stream",
    "template_completion",
    "to_anthropic_request",
    "validate_answer",
]
