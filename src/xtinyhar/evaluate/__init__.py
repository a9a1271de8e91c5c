"""Evaluation: classification metrics, trial pooling, fold summaries and model cost."""
