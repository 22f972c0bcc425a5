"""A CLIP with the transformers 4.x feature API, for tests on either transformers version."""

from __future__ import annotations

import torch
from torch import nn

from fashion.clip.models import feature_tensor


class TensorFeatures(nn.Module):
    """get_*_features return the projected features as tensors (transformers 4.x; 5.x returns
    an output object), as torchmetrics' CLIPScore also expects."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model, self.config = model, model.config

    def get_image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return feature_tensor(self.model.get_image_features(pixel_values=pixel_values))

    def get_text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        return feature_tensor(
            self.model.get_text_features(input_ids=input_ids, attention_mask=attention_mask)
        )
