"""Redress: text-guided inpainting of the clothes region (masks, the 9-channel UNet)."""
