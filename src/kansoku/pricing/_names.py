"""How model and provider names seen on the wire map onto catalog names.

Providers report many spellings of one model: dated snapshots (``gpt-4o-mini-2024-07-18``,
``claude-3-5-sonnet-20241022``), version tags (``gemini-1.5-flash-002``, ``mistral-large-2407``),
``-latest`` / ``-preview`` pointers, routing prefixes (``openai/gpt-4o``, ``models/gemini-2.0-flash``)
and Bedrock ids (``us.anthropic.claude-3-5-sonnet-20241022-v2:0``). We strip only those
recognised *suffixes*, one at a time, and look the rest up exactly; a prefix match would
price ``gpt-4o-mini`` as ``gpt-4o``, which is 16 times dearer.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from types import MappingProxyType

#: A trailing part that names a snapshot or pointer of a model rather than another model.
_SNAPSHOT_SUFFIX = re.compile(
    r"(?:"
    r"[-@]\d{4}-?\d{2}-?\d{2}"  # -2024-07-18, -20241022, @20240620 (Vertex)
    r"|-\d{2}-\d{2}"  # -04-17 (Gemini previews)
    r"|-\d{3,4}"  # -002, -0613, -2407
    r"|[-@]latest|-preview|-exp(?:erimental)?"
    r"|-v\d+(?::\d+)?"  # -v2:0 (Bedrock), -v2 (Vertex)
    r")$"
)

#: Bedrock model ids: an optional cross-region profile, then the vendor.
_BEDROCK_PREFIX = re.compile(r"^(?:(?:us|eu|apac|global)\.)?(?:anthropic|meta|mistral|deepseek)\.")

#: Provider names (``LLMCall.provider``, OTel ``gen_ai.system`` values, user spellings) that
#: bill like a catalog provider. Bedrock is absent on purpose: it serves many vendors.
PROVIDER_FAMILIES: MappingProxyType[str, str] = MappingProxyType(
    {
        "azure": "openai",
        "azure.openai": "openai",
        "azure_openai": "openai",
        "azure-openai": "openai",
        "az.ai.openai": "openai",
        "gemini": "google",
        "google_genai": "google",
        "google.genai": "google",
        "gcp.gemini": "google",
        "gcp.gen_ai": "google",
        "gcp.vertex_ai": "google",
        "vertex_ai": "google",
        "vertexai": "google",
        "mistral_ai": "mistral",
        "mistralai": "mistral",
        "together_ai": "together",
        "togetherai": "together",
    }
)


def provider_family(provider: str) -> str:
    """The catalog provider that ``provider`` (already lower-case) bills like."""
    return PROVIDER_FAMILIES.get(provider, provider)


def name_key(name: str) -> str:
    """The case- and space-insensitive key a catalog name is indexed under."""
    return name.strip().lower()


def _forms(name: str) -> Iterator[str]:
    key = name_key(name)
    yield key
    # Routing prefixes ("openai/gpt-4o", "models/gemini-2.0-flash", "meta-llama/Meta-Llama-...").
    if "/" in key:
        key = key.rsplit("/", 1)[1]
        yield key
    stripped = _BEDROCK_PREFIX.sub("", key)
    if stripped != key:
        yield stripped


def resolve(name: str, lookup: Callable[[str], str | None]) -> str | None:
    """The catalog key for ``name``, or ``None``.

    ``lookup`` maps an exact key (canonical name or alias) to the catalog key. Each form of the
    name is tried as is, then with one recognised snapshot suffix removed at a time, so the
    most specific entry wins (``gpt-4o-2024-05-13`` has its own, older price).
    """
    for form in _forms(name):
        current = form
        while current:
            found = lookup(current)
            if found is not None:
                return found
            match = _SNAPSHOT_SUFFIX.search(current)
            if match is None or match.start() == 0:
                break
            current = current[: match.start()]
    return None
