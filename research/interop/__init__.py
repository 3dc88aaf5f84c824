"""Importers of published BERT weights into `research.modeling` (BertEncoder, its pooler, MaskedLMHead).

One module per source format, each reading names and shapes into `bert_weights.BertWeights` (our layout),
from which `writer` builds the models and writes a checkpoint, a gin file and the vocabulary:
  hf_safetensors   Hugging Face config.json + model.safetensors (BERT and same-architecture relatives)
  tf1_checkpoint   google-research/bert: bert_config.json + bert_model.ckpt.* + vocab.txt
  model_garden     Model Garden TF2 BertEncoderV2 checkpoints (tf.train.Checkpoint(encoder=...))
The command: `python -m research.interop.import_checkpoint --source=DIR --output_dir=DIR`.
Nothing in the rest of `research` imports this package.
"""
