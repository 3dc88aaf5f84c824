"""BERT models: layers, the encoder, heads, and the pretraining and classification models.

Library code: plain keyword arguments, no gin (gin files bind these classes by dynamic registration).
"""
from research.modeling.bert_encoder import BertEncoder, BertEncoderV2
from research.modeling.heads import ClassificationHead, MaskedLMHead, MultiClsHeads
from research.modeling.models import BertClassifier, BertPretrainer, BertPretrainerV2
from research.modeling.sngp import GaussianProcessClassificationHead

MaskedLM = MaskedLMHead  # Model Garden's name (its layers.MaskedLM takes embedding_table= too)

__all__ = ["BertClassifier", "BertEncoder", "BertEncoderV2", "BertPretrainer", "BertPretrainerV2",
           "ClassificationHead", "GaussianProcessClassificationHead", "MaskedLM", "MaskedLMHead", "MultiClsHeads"]
