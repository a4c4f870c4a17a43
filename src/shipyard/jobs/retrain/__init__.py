"""Retraining: pipelines, their runs, and the validation gate every candidate must pass."""
