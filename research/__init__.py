"""A Gin-configured TensorFlow research codebase for BERT-style language models."""
