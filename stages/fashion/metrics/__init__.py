"""Metrics: retrieval, zero-shot attributes, image metrics and the demo's colour judge."""
