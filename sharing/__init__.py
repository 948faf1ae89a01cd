"""Artifacts that travel: ``export`` (a run or model plus a head as one checked folder, ``export.py``) and
``push`` (a run, head or bundle to the Hugging Face Hub, ``push.py``).

A room of its own, beside ``scoring/`` and ``comparison/``: it combines ``embed/`` (run folders, cards,
the bundle format ``embed.bundle`` that ``--model BUNDLE`` resolves through), ``heads/`` (a head's
files and digests) and ``scoring/`` (``Predictor``, which every bundle must load before it is
written). Nothing imports it but ``cli.py``. ``portable.py`` rewrites the records a folder keeps
(``tweetheads_run.json``, ``head.json``, ``train_report.json``) without the paths of the machine
that wrote them, for what leaves it.
"""
