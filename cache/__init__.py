"""Embedding cache: one content-addressed store per model fingerprint (see ``store.py``)."""
from .store import CacheError, EmbeddingStore, NullStore, StoreInfo, clear_store, default_cache_dir, list_stores, text_key

__all__ = ["CacheError", "EmbeddingStore", "NullStore", "StoreInfo", "clear_store", "default_cache_dir",
           "list_stores", "text_key"]
