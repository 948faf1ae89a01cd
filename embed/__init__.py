"""Stage one: models, data, fine-tuning and cached embeddings."""
