"""Model Garden's `official.nlp.modeling.networks` names, for code ported by changing its imports.

Model Garden has two BERT encoders: `networks.BertEncoder`, whose outputs are a list
([sequence_output, pooled_output], ...) unless `dict_outputs=True`, and `networks.BertEncoderV2`,
whose outputs are always a dict. `research.modeling.BertEncoder` is one class that does both, with
dict outputs by default; here the two names keep Model Garden's defaults:

    from research.modeling import networks        # was: from official.nlp.modeling import networks
    sequence_output, pooled_output = networks.BertEncoder(vocab_size=100)(inputs)
"""
import keras

from research.modeling import bert_encoder

BertEncoderV2 = bert_encoder.BertEncoder


@keras.saving.register_keras_serializable(package="research.networks")
class BertEncoder(bert_encoder.BertEncoder):
    """`research.modeling.BertEncoder` with Model Garden's `networks.BertEncoder` default: list outputs
    (`dict_outputs=False`). Same variables, checkpoints and keywords."""

    def __init__(self, *args, dict_outputs=False, **kwargs):
        super().__init__(*args, dict_outputs=dict_outputs, **kwargs)
