"""Stage two as an experiment: fit heads on cached embeddings and compare them with the end-to-end model.

``train_head.fit_head`` embeds a training file through the cache, chooses a head's hyperparameter
and saves it; ``compare.compare`` scores the run's own classifier and every head on the same test
rows (all and novel) and writes the report (``report``, ``plots``), with ``label_curve`` for
accuracy per labelled tweet. Batch scoring of files lives in ``scoring/``.
"""
