"""One CLIP training step per process on its half of a global batch (run by test_clip_gather.py).

Usage: accelerate launch --multi_gpu --num_processes 2 tests/clip_gather_worker.py OUT_DIR
with `stages/` on PYTHONPATH. Every process goes through `train_step` on its half and saves
`rank{N}.pt`: the loss and the parameter gradients as the optimiser sees them (after DDP's
averaging). Process 0 also saves `reference.pt`: loss and gradients of one process on the
whole global batch, from CLIPModel's own logits.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from transformers import CLIPModel, CLIPProcessor

from fashion.clip.models import build_tiny_clip, load_clip
from fashion.clip.training import contrastive_loss, train_step
from fashion.data.captions import compose_caption

WORLD_SIZE = 2
TINY = {"vocab_size": 400, "max_length": 32, "image_size": 32, "patch_size": 8,
        "vision_width": 32, "vision_layers": 1, "vision_heads": 2, "text_width": 32,
        "text_layers": 1, "text_heads": 2, "projection_dim": 16}  # fmt: skip
# (gender, color, sleeve, category) of the global batch: the second half repeats two captions
# of the first (and one of its own), so caption-level targets span both processes
CODES = [(0, 1, 1, 2), (1, 2, 2, 16), (0, 17, 3, 2), (1, 1, 3, 16),
         (0, 2, 1, 16), (0, 1, 1, 2), (1, 2, 2, 16), (0, 2, 1, 16)]  # fmt: skip
CAPTIONS = [compose_caption(*codes) for codes in CODES]


def make_batch(processor: CLIPProcessor, rows: slice) -> dict[str, torch.Tensor]:
    """Rows of the global batch, tokenised (and padded) on their own as a process would."""
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randn(
        len(CAPTIONS), 3, TINY["image_size"], TINY["image_size"], generator=generator
    )
    caption_ids = torch.as_tensor(np.unique(CAPTIONS, return_inverse=True)[1])
    tokens = processor.tokenizer(CAPTIONS[rows], padding=True, return_tensors="pt")
    return {
        "pixel_values": pixels[rows],
        "input_ids": tokens["input_ids"],
        "attention_mask": tokens["attention_mask"],
        "caption_ids": caption_ids[rows],
    }


def named_grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    missing = [name for name, p in model.named_parameters() if p.grad is None]
    assert not missing, f"parameters without a gradient: {missing}"
    return {name: p.grad.detach().clone() for name, p in model.named_parameters()}


def distributed_step(accelerator: Accelerator, model: CLIPModel, batch: dict) -> dict:
    """`train_step` on this process's batch; the gradients the optimiser steps with."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    seen: dict[str, torch.Tensor] = {}
    optimizer.register_step_pre_hook(lambda *_: seen.update(named_grads(model)))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    prepared, prepared_optimizer = accelerator.prepare(model, optimizer)
    loss = train_step(accelerator, prepared, prepared_optimizer, scheduler, batch, None)
    assert seen, "the optimiser did not step"
    return {"loss": loss, "grads": seen}


def reference_step(model: CLIPModel, batch: dict) -> dict:
    """One process, the whole global batch, plain autograd."""
    out = model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        pixel_values=batch["pixel_values"],
    )
    loss = contrastive_loss(out.logits_per_image, batch["caption_ids"])
    loss.backward()
    return {"loss": loss.detach(), "grads": named_grads(model)}


def shared_clip(accelerator: Accelerator, model_dir: Path) -> tuple[CLIPModel, CLIPProcessor]:
    """Process 0 builds the tiny CLIP, every process loads it (tokenizer training is not
    reproducible run to run, so each process building its own would tokenise differently)."""
    if accelerator.is_main_process:
        model, processor = build_tiny_clip(CAPTIONS, TINY, seed=0)
        model.save_pretrained(model_dir)
        processor.save_pretrained(model_dir)
    accelerator.wait_for_everyone()
    return load_clip(model_dir)


def main() -> None:
    out_dir = Path(sys.argv[1])
    accelerator = Accelerator()
    rank = accelerator.process_index
    assert accelerator.num_processes == WORLD_SIZE == torch.distributed.get_world_size()
    model, processor = shared_clip(accelerator, out_dir / "clip")
    reference = copy.deepcopy(model)
    half = len(CAPTIONS) // WORLD_SIZE
    rows = slice(rank * half, (rank + 1) * half)
    result = distributed_step(accelerator, model, make_batch(processor, rows))
    torch.save(result, out_dir / f"rank{rank}.pt")
    if accelerator.is_main_process:
        full = reference_step(reference, make_batch(processor, slice(None)))
        torch.save(full, out_dir / "reference.pt")
    accelerator.wait_for_everyone()
    accelerator.end_training()


if __name__ == "__main__":
    main()
