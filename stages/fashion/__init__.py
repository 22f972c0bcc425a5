"""Shared code of the Fashion Synthesis pipeline stages.

- `config`, `atomic`, `hub`: params and stage runner, all-or-nothing outputs, base-model sources
- `benchmark`, `subset`: the released benchmark format (readers, writers, decryption) and
  the prepared subset files every later stage reads
- `labels`, `captions`, `demo`: code -> name maps and caption parsing, caption patterns,
  the drawn demo benchmark
- `plots`: EDA tables and figures
- `clip_models`, `clip_data`, `clip_training`, `retrieval`, `zero_shot`: CLIP building,
  data, training loop, retrieval metrics, zero-shot attribute classification
- `sd_models`, `sd_training`, `prompts`, `garment_color`: tiny/real Stable Diffusion,
  the text-to-image training recipe, generation prompts, colour read-out of demo images
- `image_metrics`: IS, FID, KID, CLIP score, nearest-neighbour distances
"""
