"""CLIP fine-tuning pieces: contrastive loss, optimiser, one training step, checkpoints, validation.

Under several processes every process contrasts the whole global batch: image and text
features and caption ids are gathered from all processes (as open_clip's `gather_features`
with `gather_with_grad`), so the negatives do not shrink as processes are added.

The stage script `finetune_clip.py` wires them together; `bench/clip_step.py` times
`train_step` against a plain loop on the same model and batches.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import torch
import torch.distributed.nn.functional as dist_nn
import torch.nn.functional as F
from accelerate import Accelerator
from transformers import CLIPModel, CLIPProcessor, get_cosine_schedule_with_warmup

from fashion.clip.data import Pairs
from fashion.clip.models import embed_images, embed_texts
from fashion.metrics.retrieval import chunked_ranks
from fashion.train.checkpoint_mirror import mirror_checkpoint, restore_checkpoint

LOGIT_SCALE_MAX = math.log(100.0)
CONFIG_FILE = "config.json"


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


def make_optimizer(model: torch.nn.Module, params: dict[str, Any]) -> torch.optim.AdamW:
    """AdamW without weight decay on biases, norms (1-d parameters) and the logit scale."""
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)  # logit_scale is 0-d
    return torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": float(params["weight_decay"])},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=float(params["lr"]),
        betas=tuple(float(b) for b in params["betas"]),
        eps=float(params["eps"]),
    )


def make_scheduler(optimizer: torch.optim.Optimizer, params: dict[str, Any]):
    """Linear warmup then cosine decay to 0 over `steps` optimiser steps."""
    return get_cosine_schedule_with_warmup(
        optimizer, int(params["warmup_steps"]), int(params["steps"])
    )


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
    scheduler is not, so it advances once per optimiser step whatever the process count.
    """
    with accelerator.accumulate(model):
        loss = batch_loss(accelerator, model, batch)
        accelerator.backward(loss)
        if accelerator.sync_gradients and max_grad_norm:
            accelerator.clip_grad_norm_(model.parameters(), max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    if accelerator.sync_gradients:
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


class Checkpoints:
    """`step_NNNNNNN` folders of `accelerator.save_state`, written atomically, oldest pruned.

    `config.json` holds what the checkpoints were trained with; a run with another config
    starts afresh instead of resuming someone else's training.
    """

    def __init__(
        self, root: str | Path, config: dict[str, Any], keep: int, mirror: str | None = None
    ) -> None:
        """`mirror`: a folder that keeps a copy of the latest checkpoint (`checkpoint_mirror`)."""
        self.root, self.config, self.keep, self.mirror = Path(root), config, keep, mirror

    @staticmethod
    def _is_step(path: Path) -> bool:
        return path.is_dir() and path.name.startswith("step_") and path.name[5:].isdigit()

    def _steps(self) -> list[Path]:
        return sorted(p for p in self.root.glob("step_*") if self._is_step(p))

    def reset_if_stale(self, accelerator: Accelerator) -> None:
        """(main process) Restore the mirrored checkpoint on a fresh machine; delete checkpoints
        trained with another config; record this one."""
        if accelerator.is_main_process:
            restore_checkpoint(self.root, self.mirror, self._is_step)
            config_file = self.root / CONFIG_FILE
            stale = not config_file.is_file() or json.loads(config_file.read_text()) != self.config
            if stale and self.root.exists():
                if self._steps():
                    print(f"{self.root}: checkpoints come from another config, starting afresh")
                shutil.rmtree(self.root)
            self.root.mkdir(parents=True, exist_ok=True)
            config_file.write_text(json.dumps(self.config, indent=2, sort_keys=True) + "\n")
        accelerator.wait_for_everyone()

    def resume(self, accelerator: Accelerator) -> int:
        """Load the latest checkpoint into the prepared objects; the step it was saved at (or 0)."""
        steps = self._steps()
        if not steps:
            return 0
        accelerator.load_state(str(steps[-1]))
        return int(steps[-1].name[5:])

    def save(self, accelerator: Accelerator, step: int) -> None:
        final = self.root / f"step_{step:07d}"
        tmp = self.root / f".step_{step:07d}.tmp"
        accelerator.save_state(str(tmp))
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            if final.exists():
                shutil.rmtree(final)
            tmp.rename(final)
            for old in self._steps()[: -self.keep]:
                shutil.rmtree(old)
            if self.mirror:
                mirror_checkpoint(self.root, final, Path(self.mirror))
        accelerator.wait_for_everyone()
