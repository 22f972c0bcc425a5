"""CLIP fine-tuning pieces: contrastive loss, optimiser, one training step, validation.

Under several processes every process contrasts the whole global batch: image and text
features and caption ids are gathered from all processes (as open_clip's `gather_features`
with `gather_with_grad`), so the negatives do not shrink as processes are added.

The stage script `finetune_clip.py` wires them together; `bench/clip_step.py` times
`train_step` against a plain loop on the same model and batches.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.distributed.nn.functional as dist_nn
import torch.nn.functional as F
from accelerate import Accelerator
from transformers import CLIPModel, CLIPProcessor, get_cosine_schedule_with_warmup

from fashion.clip.data import Pairs
from fashion.clip.models import embed_images, embed_texts
from fashion.core.ranks import chunked_ranks
from fashion.train.optimizer import adamw

LOGIT_SCALE_MAX = math.log(100.0)


def caption_targets(caption_ids: torch.Tensor) -> torch.Tensor:
    """Soft targets (b, b): each row spreads evenly over the batch items with the same caption
    text, so identical captions in one batch are not pushed apart as false negatives."""
    same = (caption_ids[:, None] == caption_ids[None, :]).float()
    return same / same.sum(dim=1, keepdim=True)


def contrastive_loss(logits_per_image: torch.Tensor, caption_ids: torch.Tensor) -> torch.Tensor:
    """Symmetric image->text and text->image cross-entropy with caption-level targets.

    With all captions distinct it equals CLIP's loss (`CLIPModel(..., return_loss=True)`).
    """
    targets = caption_targets(caption_ids.to(logits_per_image.device))
    logits = logits_per_image.float()
    # the targets are symmetric, so the text->image targets are the same matrix
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


def gather_with_grad(accelerator: Accelerator, features: torch.Tensor) -> torch.Tensor:
    """All processes' rows of `features` (equal row counts), in process order.

    Gradients flow back through the gather: a process's rows receive the sum of the gradients
    that every process's loss sends them. With one process, `features` as they are.
    """
    if accelerator.num_processes == 1:
        return features
    return torch.cat(dist_nn.all_gather(features), dim=0)


def batch_loss(
    accelerator: Accelerator, model: torch.nn.Module, batch: dict[str, torch.Tensor]
) -> torch.Tensor:
    """Contrastive loss of the global batch, the same value on every process.

    Each process backpropagates the whole loss; the gather's backward sums the processes'
    gradients into each process's own features, so DDP's average of the parameter gradients
    is exactly the gradient of one process on the global batch. Hence neither the loss nor
    the logit scale is scaled by the process count.
    """
    device = accelerator.device
    out = model(
        input_ids=batch["input_ids"].to(device),
        attention_mask=batch["attention_mask"].to(device),
        pixel_values=batch["pixel_values"].to(device),
    )
    images = gather_with_grad(accelerator, out.image_embeds)  # L2-normalised by CLIPModel
    texts = gather_with_grad(accelerator, out.text_embeds)
    caption_ids = accelerator.gather(batch["caption_ids"].to(device))
    # the parameter itself (not a gathered copy): its gradient is averaged by DDP like the rest
    logit_scale = accelerator.unwrap_model(model).logit_scale.exp()
    return contrastive_loss(logit_scale * (images @ texts.T), caption_ids)


def make_optimizer(
    model: torch.nn.Module,
    params: dict[str, Any],
    device: torch.device | str,
    mixed_precision: str = "no",
) -> torch.optim.AdamW:
    """AdamW without weight decay on biases, norms (1-d parameters) and the logit scale, for
    weights that train on `device` under accelerate's `mixed_precision`."""
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)  # logit_scale is 0-d
    return adamw(
        [
            {"params": decay, "weight_decay": float(params["weight_decay"])},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        device,
        mixed_precision,
        lr=float(params["lr"]),
        betas=tuple(float(b) for b in params["betas"]),
        eps=float(params["eps"]),
    )


def make_scheduler(optimizer: torch.optim.Optimizer, params: dict[str, Any], schedule: int):
    """Linear warmup then cosine decay to 0 over `schedule` optimiser steps (`schedule_steps`)."""
    return get_cosine_schedule_with_warmup(optimizer, int(params["warmup_steps"]), schedule)


def train_step(
    accelerator: Accelerator,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    batch: dict[str, torch.Tensor],
    max_grad_norm: float | None,
) -> torch.Tensor:
    """One micro-step (an optimiser step every `gradient_accumulation_steps`); the detached
    loss of the global batch (see `batch_loss`).

    `optimizer` is prepared by the accelerator (it skips steps while accumulating); the
    scheduler is not, so it advances once per optimiser step whatever the process count,
    and holds on a step the fp16 grad scaler skipped (an overflow), as a prepared one does.
    """
    with accelerator.accumulate(model):
        loss = batch_loss(accelerator, model, batch)
        accelerator.backward(loss)
        if accelerator.sync_gradients and max_grad_norm:
            accelerator.clip_grad_norm_(model.parameters(), max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    if accelerator.sync_gradients:
        if not accelerator.optimizer_step_was_skipped:
            scheduler.step()
        with torch.no_grad():
            accelerator.unwrap_model(model).logit_scale.clamp_(0, LOGIT_SCALE_MAX)
    return loss.detach()


@torch.no_grad()
def caption_r1(
    model: CLIPModel, processor: CLIPProcessor, pairs: Pairs, device: torch.device | str
) -> float:
    """Image->text caption-level R@1 on `pairs` (a hit: the top caption's text is the query's)."""
    was_training = model.training
    model.eval()
    images = embed_images(model, processor, pairs.images, device=device)
    texts = embed_texts(model, processor, pairs.captions, device=device)
    model.train(was_training)
    keys = torch.from_numpy(pairs.caption_ids)
    return float((chunked_ranks(images, texts, keys, keys) == 1).float().mean())
