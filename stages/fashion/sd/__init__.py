"""Stable Diffusion: models (tiny or pretrained), the text-to-image training recipe, prompts."""
