"""The end-to-end classification head trained with the encoder (torch module).

Shaped like Hugging Face's DistilBertForSequenceClassification head: a dense layer (dim -> dim),
ReLU, dropout, and a dense layer to the labels, applied to the CLS token of the last hidden state.
Inference without torch lives in ``runs.EndToEndClassifier``.
"""
from __future__ import annotations

from torch import nn


class ClassifierHead(nn.Module):
    """The end-to-end classifier on the pooled vector (DistilBERT's): dense + ReLU, dropout, then a linear layer
    to one logit per label.
    """

    def __init__(self, dim: int, n_labels: int, dropout: float = 0.2):
        super().__init__()
        self.pre_classifier = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(dim, n_labels)

    def forward(self, cls):
        """Logits of shape ``(batch, n_labels)`` for pooled vectors ``cls`` of shape ``(batch, dim)``."""
        return self.classifier(self.dropout(nn.functional.relu(self.pre_classifier(cls))))
