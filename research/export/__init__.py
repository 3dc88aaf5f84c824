"""Models out of the project: SavedModels on raw strings (tokenizer inside the graph), for classifiers
and fill-mask, that load with plain TensorFlow; see research/export/saved_model.py."""
