"""The kansoku collector: ingest, write-ahead log, store loading."""

__all__: list[str] = []
