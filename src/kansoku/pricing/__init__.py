"""Model prices and call costs.

The packaged ``prices.json`` lists USD list prices per million tokens for OpenAI, Anthropic,
Google, Mistral and popular open models, each with the dates it applies. Users add or
override prices with a file of the same shape::

    catalog = PriceCatalog.default().merged(PriceCatalog.from_file("prices.json"))
    processors = [..., CostProcessor(catalog)]

Errors: :class:`PriceCatalogError` (a ``ValueError``) for an invalid price file. Pricing a
call never raises; an unpriced model is counted in :attr:`PriceCatalog.unknown_models`.
"""

from kansoku.pricing._catalog import PriceCatalog
from kansoku.pricing._price import ModelPrice, PriceCatalogError
from kansoku.pricing._processor import CostProcessor

__all__ = ["CostProcessor", "ModelPrice", "PriceCatalog", "PriceCatalogError"]
