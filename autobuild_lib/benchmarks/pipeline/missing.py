"""The one error for "the files a chapter or a benchmark step needs are not there"."""
from __future__ import annotations


class DataMissing(FileNotFoundError):
    """Files a chapter needs are not there; the message says which and how to get them."""
