"""Public test fakes: a fake clock, a mock LLM upstream, an in-memory exporter.

kansoku's own tests use these; so can yours::

    from kansoku.testing import MockUpstream, InMemoryExporter
    with MockUpstream(fault="rate_limit") as up:
        client = openai.OpenAI(base_url=up.openai_base_url, api_key="test", max_retries=0)
"""

from kansoku.testing._clock import FakeClock
from kansoku.testing._memory import InMemoryExporter
from kansoku.testing._mock_payloads import count_tokens, default_reply
from kansoku.testing._mock_upstream import FaultMode, MockUpstream, RecordedRequest

__all__ = [
    "FakeClock",
    "FaultMode",
    "InMemoryExporter",
    "MockUpstream",
    "RecordedRequest",
    "count_tokens",
    "default_reply",
]
