"""Redress v2's shape stage: segmentation maps from a sentence and a coarse body map."""
