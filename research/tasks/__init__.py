"""Tasks: masked-LM pretraining and sentence(-pair) prediction fine-tuning."""
