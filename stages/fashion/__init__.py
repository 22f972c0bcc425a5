"""Shared code of the Fashion Synthesis pipeline; its sub-packages follow the pipeline.

- `core`: params, the stage runner and its error type, all-or-nothing outputs, where a
  model came from (`provenance`), figures of image rows (`grids`), retrieval ranks (`ranks`)
- `data`: the released benchmark (readers, decryption), the prepared subset files, the
  attribute maps and the colours' palette, caption sentences and the labels table
- `demo`: the drawn demo benchmark (drawing, codes and captions with the real statistics,
  writers of the release format)
- `eda`: EDA tables and figures
- `clip`: CLIP data, models and training loop
- `sd`: Stable Diffusion models, training recipe and generation prompts
- `shape`: redress v2's shape stage (coarse body maps, the map model, its training)
- `inpaint`: the inpainting models, masks, their fine-tuning and redress
- `train`: what both training stages share (checkpoint mirroring)
- `metrics`: retrieval, zero-shot classification, image metrics (IS, FID, KID, CLIP score,
  nearest neighbours) and the demo's pixel colour judge

docs/architecture.md maps which stage uses which sub-package.
"""
