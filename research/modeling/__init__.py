"""BERT models: layers, the encoder, heads, and the pretraining and classification models.

Library code: plain keyword arguments, no gin (gin files bind these classes by dynamic registration).
"""
from research.modeling.bert_encoder import BertEncoder
from research.modeling.heads import ClassificationHead, MaskedLMHead
from research.modeling.models import BertClassifier, BertPretrainer

__all__ = ["BertClassifier", "BertEncoder", "BertPretrainer", "ClassificationHead", "MaskedLMHead"]
