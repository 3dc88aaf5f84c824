"""The names of every feature that crosses a module boundary, defined once.

Pretraining records hold UNMASKED ids (`INPUT_WORD_IDS`, `INPUT_TYPE_IDS`, and `NEXT_SENTENCE_LABELS`
in next-sentence mode); the input pipeline derives `INPUT_MASK` and the masked-LM features fresh for
every batch.
"""
INPUT_WORD_IDS = "input_word_ids"        # int32 [batch, seq_len]
INPUT_MASK = "input_mask"                # int32 [batch, seq_len], 1 for real tokens, 0 for padding
INPUT_TYPE_IDS = "input_type_ids"        # int32 [batch, seq_len], segment A = 0, segment B = 1
MASKED_LM_POSITIONS = "masked_lm_positions"  # int32 [batch, max_predictions_per_seq]
MASKED_LM_IDS = "masked_lm_ids"          # int32 [batch, max_predictions_per_seq], original ids
MASKED_LM_WEIGHTS = "masked_lm_weights"  # float32 [batch, max_predictions_per_seq], 1 real, 0 padding
NEXT_SENTENCE_LABELS = "next_sentence_labels"  # int32 [batch], 1 when segment B is a random segment
LABEL = "label"                          # int32 [batch] (classes) or float32 [batch] (regression)
