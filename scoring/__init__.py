"""Batch scoring of tweet files of any size: ``score.score_files`` (see its module docstring)."""
