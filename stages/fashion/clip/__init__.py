"""CLIP: pair data, models (tiny or pretrained) and the contrastive training loop."""
