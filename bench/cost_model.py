"""The cost of a whole real run: per stage, its work, its hours on five GPUs, its bytes.

A profile (params.yaml with profiles applied) fixes the work of every stage: images a
training stage sees, denoising steps a sampling stage runs, images an evaluation stage
embeds. Time is work over a rate, and every rate names its source:

- measured: SD v1.5 UNet training at 512 px on an H100 (`bench/sd_gpu.py`,
  docs/benchmarks.md), the shape model's training on 2 CPU cores (an upper bound on its
  time on any GPU), and any rate a GPU run logged (`bench/real_estimate.py --run`), which
  replaces the figure here for its stage on that GPU;
- published: SD v1.5 sampling at 512 px, with its reference;
- scaled: everything else, from those by a stated ratio (another GPU by the ratio of the
  sampling rates; another resolution by its pixel count; CLIP, Inception and the VAE by
  the ratio of their CPU time to the UNet's, `bench/cost_ratios.py`).

A launch with N processes divides a GPU stage's time by N (each process one GPU of the
kind, whole batches each). Bytes come from the published architectures' parameter counts,
which the full-size stand-ins reproduce (`scripts/standin_models.py` checks them): fp32
safetensors, a checkpoint as large again twice for AdamW's two moments. Images are counted
raw (uint8 RGB), an upper bound for PNG.

Drive (the Colab layout, colab.ipynb) holds G2.zip, the DVC remote (every output but
`data/subset`, which `prepare` rebuilds byte-identical), the checkpoint mirrors and the
sampling stages' finished batches. Drive's bin cannot be observed offline, so every byte
written there counts as staying until the run ends: each mirror save adds a checkpoint.
"""

from __future__ import annotations

import math
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fashion.core.params import with_shared
from fashion.sd.prompts import build_prompts, file_prompts

GPUS = ("T4", "L4", "A10G", "A100-40GB", "H100")
REAL_TRAIN, REAL_TEST = 70_000, 8_979  # the benchmark's split (Eval/ind.mat)
G2_ZIP_BYTES = 7.0e9  # the released Img/G2.zip, about 7 GB
IMAGE_SIDE = 128  # the benchmark's photos; redress composites back to this size


@dataclass(frozen=True)
class Rate:
    """`per_s` units of work a second; `kind`: measured, published or scaled."""

    per_s: float
    kind: str
    source: str

    def label(self) -> str:
        return f"{self.kind}: {self.source}"

    def scaled(self, factor: float, why: str) -> Rate:
        if factor == 1:
            return self
        return Rate(self.per_s * factor, "scaled", f"{self.source}; x{factor:.3g} {why}")


# SD v1.5 sampling at 512 px in fp16 with classifier-free guidance, in image-steps a second
# (one denoising step of one image: the UNet on it and on its unconditional copy).
_PT2 = "diffusers docs, PyTorch 2.0 benchmark (SD v1.5 txt2img, fp16, torch 2.0 SDPA, no compile)"
SAMPLING_512 = {
    "T4": Rate(7.16, "published", f"{_PT2}: T4, batch 4, 1.79 it/s"),
    "L4": Rate(
        15.98,
        "scaled",
        "the A10G figure x 0.8; no published SD v1.5 figure found for the L4, which has about "
        "the A10's fp16 tensor throughput and half its memory bandwidth (an assumption)",
    ),
    "A10G": Rate(
        19.98,
        "published",
        "diffusers 0.14 docs, Accelerated PyTorch 2.0 benchmark: A10, batch 4, fp16 SDPA, "
        "10.01 s for 50 steps (the A10 stands for the A10G: the same chip and 24 GB)",
    ),
    "A100-40GB": Rate(46.4, "published", f"{_PT2}: A100, batch 4, 11.6 it/s"),
    "H100": Rate(
        63.1,
        "scaled",
        "the A100 figure x 1.36, the H100-PCIe / A100-40GB ratio of SD v1.5 batch-1 times "
        "(1.96 s / 1.44 s for 50 fp16 steps; github.com/alexeigor/sd-benchmarks)",
    ),
}
# SD v1.5 UNet training images a second at 512 px, batch 8, bf16, one H100 80GB, 2026-11-25
# (bench/sd_gpu.py): the UNet's forward, backward and optimiser step; no VAE, text encoder.
H100_TRAINING_512 = {
    ("full", False): 41.4,
    ("full", True): 22.5,
    ("lora", False): 35.7,
    ("lora", True): 18.4,
}
H100_TRAINING = "SD v1.5 UNet training, H100 80GB, 512 px, batch 8, bf16 (bench/sd_gpu.py)"
# Modes without a measurement of their own, timed as a measured one (see CostModel.training).
TIMED_AS = {"lora_conv_in": "lora"}
# A unit's CPU time over one full-UNet training image's at 512 px (bench/cost_ratios.py,
# 2026-12-06, 2 cores, fp32, the published architectures, medians of 3 interleaved rounds:
# UNet 97.5 s an image at 512 px, counted from 24.4 s at 256 px).
UNITS = {
    "vae_encode_512": "VAE encode at 512 px",
    "clip_train_image": "CLIP ViT-B/32 training image",
    "clip_embed_image": "CLIP ViT-B/32 image embedding",
    "inception_image": "Inception-v3 image",
}
CPU_RATIOS = {
    "vae_encode_512": 0.197,  # 19.2 s
    "clip_train_image": 0.0192,  # 1.87 s (ViT-B/32 at 224 px, 20 caption tokens)
    "clip_embed_image": 0.0043,  # 0.42 s
    "inception_image": 0.0057,  # 0.56 s (299 px)
}
# CPU stages, measured on 2 cores: `prepare` of a full-size demo benchmark (78,979 images,
# decryption included; bench/prepare.py) 8.4 min; labels, eda, reference and base_clip of
# the demo's 16,000 images 23 s (docs/benchmarks.md, 2026-12-03).
PREPARE_S_PER_IMAGE = 8.4 * 60 / 78_979
PREPARE_SOURCE = "2 CPU cores, 8.4 min for 78,979 images (bench/prepare.py)"
LABELS_EDA_S_PER_IMAGE = 23 / 16_000
LABELS_EDA_SOURCE = "2 CPU cores, the demo's 16,000 images in 23 s (docs/benchmarks.md)"
CPU_STAGES = ("prepare", "labels+eda")
# Small outputs beside the images and models, from the smoke run's files (bench/drive_bytes.py
# --reduced, 2026-12-06): labels.csv 124,594 B for 640 images; the EDA figures and tables
# 892,474 B (their number does not grow with the images).
LABELS_BYTES_PER_IMAGE = 200
EDA_BYTES = 1.0e6

# Parameters of the published architectures (scripts/standin_models.py holds them too).
PARAMETERS = {
    "clip": 151_277_313,
    "unet": 859_520_964,
    "vae": 83_653_863,
    "text_encoder": 123_060_480,
}
LORA_PARAMETERS_PER_RANK = 199_296  # the UNet's attention q/k/v/out adapters (0.8M at rank 4)
# Mode lora_conv_in also trains the UNet's input convolution (SD v1.5: 320 outputs, 3x3),
# which reads the latents (4 channels), inpainting's 9 (latents, mask, masked-image latents)
# and in redress v2 the target's segmentation map one-hot, 7 classes more: 16.
LATENT_CHANNELS = 4
INPAINT_CHANNELS = 2 * LATENT_CHANNELS + 1
MAP_CLASSES = 7  # the benchmark's segmentation classes (background, hair, face, ...)
CONV_IN_OUT_CHANNELS, CONV_IN_KERNEL = 320, 3


def conv_in_parameters(in_channels: int) -> int:
    """Weights and biases of SD v1.5's conv_in reading `in_channels` (46,400 at 16)."""
    return in_channels * CONV_IN_OUT_CHANNELS * CONV_IN_KERNEL**2 + CONV_IN_OUT_CHANNELS


# The shape model (redress v2's reshape stage, fashion.shape.model.ShapeNet): a 4-class
# coarse map and the pixel's row and column in, 7 class logits out; its sentence embeddings
# are one text_dim row a vocabulary word (and two for padding and unknown words).
SHAPE_IN_CHANNELS = 4 + 2
# The real captions' vocabulary (their words seen min_word_count times) cannot be counted
# offline; the demo's, drawn from the benchmark's attribute words, is 64 words. An allowance,
# not a count: 1,000 words, 0.26 MB of embeddings at text_dim 64.
SHAPE_VOCAB_WORDS = 1_000
# The shape model's training on this project's 2 CPU cores: the demo default (800 steps of
# batch 64, width 16, work_size 32, loss at 64 px) ran 9.2 steps/s, 2026-12-06 (the reshape
# stage's dvclive perf/maps_per_s).
SHAPE_MAPS_PER_S = 9.2 * 64
SHAPE_SOURCE = (
    "the shape model's training on 2 CPU cores: 9.2 steps/s of batch 64 at width 16, work "
    "size 32, loss at 64 px (dvclive perf/maps_per_s of the demo's reshape stage); taken for "
    "every GPU as an upper bound on the time (a model of ~0.3M parameters: a GPU is not "
    "slower than 2 CPU cores)"
)


def shape_parameters(spec: dict[str, Any], vocab_words: int = SHAPE_VOCAB_WORDS) -> int:
    """Parameters of the shape model of a `reshape` section (ShapeNet, counted)."""
    w, t = int(spec["width"]), int(spec["text_dim"])

    def block(c_in: int, c_out: int) -> int:  # two 3x3 convs, two group norms, FiLM
        return 9 * c_out * (c_in + c_out) + 8 * c_out + 2 * t * c_out

    levels = [(SHAPE_IN_CHANNELS, w), (w, 2 * w), (2 * w, 4 * w), (4 * w, 4 * w)]
    levels += [(8 * w, 2 * w), (4 * w, w), (2 * w, w)]
    text = (vocab_words + 2) * t + 2 * (t * t + t)
    return text + sum(block(*io) for io in levels) + (w + 1) * MAP_CLASSES


@dataclass
class StageCost:
    """One stage under a profile."""

    work: str
    seconds: dict[str, float]  # wall time on each GPU kind, the launch's processes sharing it
    sources: set[str]
    disk_bytes: float = 0.0  # outputs in the work tree (the DVC cache holds them again)
    pushed_bytes: float = 0.0  # what `dvc push` sends to the remote
    mirror_bytes: float = 0.0  # checkpoint-mirror writes over the stage (when mirrored)
    batches_bytes: float = 0.0  # finished batches kept until the stage ends
    lost_seconds: dict[str, float] = field(default_factory=dict)  # a disconnect's worst loss

    def also_writes(self, nbytes: float) -> None:
        """One more output of the stage: on disk and pushed, as every output is by default."""
        self.disk_bytes += nbytes
        self.pushed_bytes += nbytes


def processes(launch: str) -> int:
    """GPUs of an `accelerate.launch` command: its `--num_processes`, else 1."""
    words = shlex.split(launch)
    for k, word in enumerate(words):
        if word == "--num_processes" and k + 1 < len(words):
            return int(words[k + 1])
        if m := re.fullmatch(r"--num_processes=(\d+)", word):
            return int(m.group(1))
    return 1


def count(value: Any, available: int) -> int:
    """A sample-size param: an integer (capped at what there is) or `all`."""
    return available if value == "all" else min(int(value), available)


def training_steps(spec: dict[str, Any], n_available: int, n_processes: int) -> tuple[int, int]:
    """(optimiser steps, images seen) of a training stage: `epochs` passes over its sample
    (capped by `steps`), or `steps` global batches."""
    batch = int(spec["batch_size"]) * int(spec.get("grad_accum", 1)) * n_processes
    n = count(spec.get("n_images", "all"), n_available)
    steps = math.inf if spec.get("steps") is None else int(spec["steps"])
    if spec.get("epochs"):
        steps = min(steps, int(spec["epochs"]) * math.ceil(n / batch))
    if steps == math.inf:
        raise ValueError("a training stage needs steps or epochs")
    return int(steps), int(steps) * min(batch, n)


def model_bytes(*parts: str) -> float:
    return sum(PARAMETERS[p] for p in parts) * 4.0


# What an accelerate checkpoint holds beside the weights and AdamW's moments (per-tensor step
# counts, the scheduler, RNG states): 262,788 B a save of the LoRA mirror, 389,851 B in a CLIP
# checkpoint (bench/drive_bytes.py and the full-size smoke, 2026-12-06).
CHECKPOINT_EXTRA_BYTES = 400_000


class CostModel:
    """The rates. `measured[stage][gpu]` (training images a second, from a GPU run at the
    profile's settings) replaces the scaled training rate of that stage on that GPU."""

    def __init__(self, measured: dict[str, dict[str, Rate]] | None = None) -> None:
        self.measured = measured or {}

    def sampling(self, gpu: str, resolution: int) -> Rate:
        """Image-steps a second at `resolution` (the UNet's work goes with the pixel count)."""
        return SAMPLING_512[gpu].scaled((512 / resolution) ** 2, f"for {resolution} px")

    def gpu_ratio(self, gpu: str) -> float:
        return SAMPLING_512[gpu].per_s / SAMPLING_512["H100"].per_s

    def training(self, stage: str, gpu: str, spec: dict[str, Any]) -> Rate:
        """UNet training images a second of an SD stage."""
        if gpu in self.measured.get(stage, {}):
            return self.measured[stage][gpu]
        mode, source = spec["mode"], H100_TRAINING
        if mode in TIMED_AS:  # lora_conv_in: LoRA's rate
            mode = TIMED_AS[mode]
            conv_in = conv_in_parameters(INPAINT_CHANNELS + MAP_CLASSES)
            source += (
                f"; mode {mode}'s rate for {spec['mode']}: its trained conv_in is at most "
                f"{conv_in / 1e3:.0f}k parameters of the UNet's {PARAMETERS['unet'] / 1e6:.0f}M, "
                "an extra gradient below the measurement's noise"
            )
        key = (mode, bool(spec.get("gradient_checkpointing")))
        rate = Rate(H100_TRAINING_512[key], "measured", source)
        rate = rate.scaled(self.gpu_ratio(gpu), f"for the {gpu} (its sampling rate / the H100's)")
        return rate.scaled((512 / int(spec["resolution"])) ** 2, f"for {spec['resolution']} px")

    def maps(self, gpu: str) -> Rate:
        """Segmentation maps a second of the shape model's training (the reshape stage)."""
        if gpu in self.measured.get("reshape", {}):
            return self.measured["reshape"][gpu]
        return Rate(SHAPE_MAPS_PER_S, "measured", SHAPE_SOURCE)

    def unit(self, gpu: str, name: str, stage: str | None = None) -> Rate:
        """Units of `name` (CPU_RATIOS) a second: the full-UNet training rate at 512 px over
        the unit's cost in UNet training images."""
        if stage and gpu in self.measured.get(stage, {}):
            return self.measured[stage][gpu]
        anchor = H100_TRAINING_512[("full", False)] * self.gpu_ratio(gpu)
        return Rate(
            anchor / CPU_RATIOS[name],
            "scaled",
            f"the full-UNet training rate on the {gpu} x {1 / CPU_RATIOS[name]:.1f}: one "
            f"{UNITS[name]} takes {CPU_RATIOS[name]:.3g} of a UNet training image's CPU time "
            "(bench/cost_ratios.py)",
        )


def per(work: float, rate: Rate) -> tuple[float, set[str]]:
    return work / rate.per_s, {rate.label()}


def total(*terms: tuple[float, set[str]]) -> tuple[float, set[str]]:
    return sum(t for t, _ in terms), set().union(*(s for _, s in terms))


def sd_bytes(spec: dict[str, Any], in_channels: int = LATENT_CHANNELS) -> tuple[float, float]:
    """(saved model, one checkpoint) of an SD fine-tune whose UNet reads `in_channels`. Full:
    the fp32 pipeline, and a checkpoint of the trained models with AdamW's moments (and the
    EMA copy). LoRA: the adapters, in the checkpoint with their moments; lora_conv_in: and
    conv_in in fp32 beside them, with its moments too."""
    trained = ("unet", "text_encoder") if spec.get("train_text_encoder") else ("unet",)
    if spec["mode"] == "full":
        ema = model_bytes("unet") if spec.get("ema") else 0.0
        checkpoint = 3 * model_bytes(*trained) + ema + CHECKPOINT_EXTRA_BYTES
        return model_bytes("unet", "vae", "text_encoder"), checkpoint
    trained_bytes = LORA_PARAMETERS_PER_RANK * int(spec.get("lora_rank", 4)) * 4.0
    if spec["mode"] == "lora_conv_in":
        trained_bytes += conv_in_parameters(in_channels) * 4.0
    return trained_bytes, 3 * trained_bytes + CHECKPOINT_EXTRA_BYTES


def stage_costs(
    params: dict[str, Any], model: CostModel, root: Path = Path(".")
) -> dict[str, StageCost]:
    """Every stage's cost under `params` (a profile on the real benchmark), in pipeline order."""
    return RunCosts(params, model, root).stages()


class RunCosts:
    """The stages of one run, each added with its work, timing and bytes."""

    def __init__(self, params: dict[str, Any], model: CostModel, root: Path) -> None:
        self.params, self.model, self.root = params, model, root
        self.n_proc = processes(str(params["accelerate"]["launch"]))
        self.n_val = int(params["split"]["validation_images"])
        self.n_train = count(params["prepare"]["n_train_images"], REAL_TRAIN)
        self.n_test = count(params["prepare"]["n_test_images"], REAL_TEST)
        test_split = params["split"].get("evaluate", "test") == "test"
        self.evaluated = self.n_test if test_split else self.n_val
        self.fit = self.n_train - self.n_val  # what the training stages sample from
        self.costs: dict[str, StageCost] = {}

    def stages(self) -> dict[str, StageCost]:
        self.data()
        self.clip()
        self.sd("finetune_sd", 1, LATENT_CHANNELS)
        self.reshape()
        v2 = self.params.get("redress", {}).get("version", "v1") == "v2"
        self.sd("finetune_inpaint", 2, INPAINT_CHANNELS + v2 * MAP_CLASSES)
        n_eval = self.reference()
        self.generate(n_eval)
        self.redress()
        return self.costs

    def add(self, name: str, work: str, timing: Any, disk_bytes: float = 0.0) -> StageCost:
        """`timing(gpu)`: (seconds of one process, sources). Until a stage says otherwise,
        everything it writes is pushed and a disconnect loses all of it."""
        seconds, sources = {}, set()
        for gpu in GPUS:
            s, src = timing(gpu)
            seconds[gpu] = s if name in CPU_STAGES else s / self.n_proc
            sources |= src
        cost = StageCost(work, seconds, sources, disk_bytes, pushed_bytes=disk_bytes)
        cost.lost_seconds = dict(seconds)
        self.costs[name] = cost
        return cost

    def data(self) -> None:
        n = self.n_train + self.n_test
        prepare = self.add(
            "prepare",
            f"decrypt, subset {n:,} images",
            lambda g: (n * PREPARE_S_PER_IMAGE, {f"measured: {PREPARE_SOURCE}"}),
            disk_bytes=n * IMAGE_SIDE * IMAGE_SIDE * 4,  # uint8 RGB and segmentation
        )
        prepare.pushed_bytes = 0.0  # not pushed: prepare rebuilds it byte-identical
        self.add(
            "labels+eda",
            f"{n:,} captions",
            lambda g: (n * LABELS_EDA_S_PER_IMAGE, {f"measured: {LABELS_EDA_SOURCE}"}),
            disk_bytes=n * LABELS_BYTES_PER_IMAGE + EDA_BYTES,
        )

    def checkpointed(self, cost: StageCost, spec: dict[str, Any], steps: int, size: float) -> None:
        """With a checkpoint mirror (what outlives the machine), a training stage loses at
        most `checkpoint_every` steps to a disconnect, and each save writes a checkpoint."""
        if spec.get("checkpoint_mirror"):
            every = int(spec["checkpoint_every"])
            cost.lost_seconds = {g: s * min(1.0, every / steps) for g, s in cost.seconds.items()}
            cost.mirror_bytes = math.ceil(steps / every) * size

    def clip(self) -> None:
        spec, unit = self.params["finetune_clip"], self.model.unit
        steps, images = training_steps(spec, self.fit, self.n_proc)
        evals = steps // int(spec["eval_every"]) + 1
        checkpoint = 3 * model_bytes("clip") + CHECKPOINT_EXTRA_BYTES
        best = spec.get("saved_weights") == "best_val_r1"  # best/ beside the checkpoints
        cost = self.add(
            "finetune_clip",
            f"{images:,} images ({steps:,} steps), {evals} validations of {self.n_val:,}",
            lambda g: total(
                per(images, unit(g, "clip_train_image", "finetune_clip")),
                per(2 * evals * self.n_val, unit(g, "clip_embed_image")),
            ),
            disk_bytes=model_bytes("clip") * (1 + best)
            + int(spec["keep_checkpoints"]) * checkpoint,
        )
        self.checkpointed(cost, spec, steps, checkpoint)
        if best and spec.get("checkpoint_mirror"):  # at each improvement
            cost.mirror_bytes += evals * model_bytes("clip")
        n_pairs = count(self.params["eval_clip"]["n_images"], self.evaluated)
        self.add(
            "eval_clip",
            f"{n_pairs:,} pairs x 2 models",
            lambda g: per(4 * n_pairs, unit(g, "clip_embed_image")),  # images and captions
        )

    def sd(self, stage: str, encodes: int, in_channels: int) -> None:
        """An SD fine-tune of a UNet reading `in_channels`; the frozen VAE encodes `encodes`
        images per training image (inpainting: the image and its masked copy), or each one
        once with cached latents."""
        spec, model = with_shared(self.params, stage), self.model
        steps, images = training_steps(spec, self.fit, self.n_proc)
        res = int(spec["resolution"])
        evals = steps // int(spec["eval_every"]) + 1
        denoising = int(spec["validation_denoising_steps"])
        validation = evals * len(spec["validation_prompts"]) * denoising
        encoded = encodes * (self.fit if spec.get("cache_latents") else images)
        saved, checkpoint = sd_bytes(spec, in_channels)

        def timing(g: str) -> tuple[float, set[str]]:
            vae = model.unit(g, "vae_encode_512").scaled((512 / res) ** 2, f"for {res} px")
            return total(
                per(images, model.training(stage, g, spec)),
                per(encoded, vae),
                per(validation, model.sampling(g, res)),
            )

        cost = self.add(
            stage,
            f"{images:,} images ({steps:,} steps) at {res} px, {spec['mode']}",
            timing,
            disk_bytes=saved + int(spec["keep_checkpoints"]) * checkpoint,
        )
        self.checkpointed(cost, spec, steps, checkpoint)

    def reshape(self) -> None:
        """Redress v2's shape model: `steps` batches of segmentation maps, the fp32 model
        (and its config and map rules, small) and checkpoints with AdamW's moments."""
        spec = self.params["reshape"]
        steps, maps = training_steps(spec, self.fit, self.n_proc)
        size = shape_parameters(spec) * 4.0
        checkpoint = 3 * size + CHECKPOINT_EXTRA_BYTES
        cost = self.add(
            "reshape",
            f"{maps:,} maps ({steps:,} steps) at {spec['work_size']} px, width {spec['width']}",
            lambda g: per(maps, self.model.maps(g)),
            disk_bytes=size + int(spec["keep_checkpoints"]) * checkpoint,
        )
        self.checkpointed(cost, spec, steps, checkpoint)
        # plots/shape/grid.png: the evaluated split's first grid_rows redress pairs, 4 columns
        # (photo, coarse map, predicted map, target's map) at the photo's 128 px
        rows = min(self.evaluated, int(spec["grid_rows"]))
        cost.also_writes(rows * 4 * IMAGE_SIDE**2 * 3)

    def reference(self) -> int:
        spec = self.params["reference"]
        n_eval = count(spec["n_images"], self.evaluated)
        n_memo, side = count(spec["n_train_images"], self.fit), int(spec["memorisation_size"])
        self.add(
            "reference",
            f"{n_eval:,} real images; {n_memo:,} train images at {side} px",
            lambda g: per(n_eval, self.model.unit(g, "inception_image")),
            disk_bytes=n_memo * side * side * 3 + n_eval * (2048 + 1008) * 4,  # pool, logits
        )
        return n_eval

    def sampling(self, name: str, n: int, kept_side: int | None = None) -> None:
        """`n` images from each of two models, kept (and their finished batches, until the
        stage ends) raw at `kept_side` px; a disconnect loses one batch."""
        spec = self.params[name]
        res, denoise = int(spec["resolution"]), int(spec["denoising_steps"])
        guided = 1.0 if float(spec["guidance_scale"]) > 1 else 0.5  # no unconditional copy
        kept = 2 * n * (kept_side or res) ** 2 * 3
        cost = self.add(
            name,
            f"{n:,} images x 2 models x {denoise} steps at {res} px",
            lambda g: per(2 * n * denoise * guided, self.model.sampling(g, res)),
            disk_bytes=kept,
        )
        cost.batches_bytes = kept
        batch = int(spec["batch_size"]) * denoise * guided
        cost.lost_seconds = {g: batch / self.model.sampling(g, res).per_s for g in GPUS}

    def generate(self, n_eval: int) -> None:
        spec, unit = self.params["generate"], self.model.unit
        listed = len(build_prompts(spec["prompts"]))
        if spec.get("prompts_file"):
            listed += len(file_prompts(self.root / spec["prompts_file"]))
        pictured = listed * int(spec["images_per_prompt"])
        n = pictured + n_eval
        self.sampling("generate", n)
        # plots/generate: a grid of each model's first grid_columns^2 pictured images
        res, shown = int(spec["resolution"]), min(pictured or n, int(spec["grid_columns"]) ** 2)
        self.costs["generate"].also_writes(2 * shown * res * res * 3)
        self.add(
            "evaluate",
            f"{2 * n:,} images, 2 CLIP judges, Inception",
            lambda g: total(
                per(4 * n, unit(g, "clip_embed_image")), per(2 * n, unit(g, "inception_image"))
            ),
        )

    def redress(self) -> None:
        n = count(self.params["redress"]["n_images"], self.evaluated)
        self.sampling("redress", n, IMAGE_SIDE)  # composited back onto the 128 px photo
        # plots/redress/grid.png: grid_rows rows of input, sentence and the two models
        rows = min(n, int(self.params["redress"]["grid_rows"]))
        self.costs["redress"].also_writes(rows * 4 * IMAGE_SIDE**2 * 3)
        self.add(
            "evaluate_redress",
            f"{2 * n:,} images, 2 CLIP judges",
            lambda g: per(4 * n, self.model.unit(g, "clip_embed_image")),
        )


def drive_peak_bytes(costs: dict[str, StageCost]) -> float:
    """Drive's peak on the Colab layout: G2.zip and every byte written there (module doc)."""
    return G2_ZIP_BYTES + sum(
        c.pushed_bytes + c.mirror_bytes + c.batches_bytes for c in costs.values()
    )


def hours(costs: dict[str, StageCost], gpu: str) -> float:
    return sum(c.seconds[gpu] for c in costs.values()) / 3600


def wilson_half_width(n: float, z: float = 1.96) -> float:
    """The widest 95% Wilson interval's half-width for a proportion over `n` items (p = 1/2)."""
    if n <= 0:
        return math.inf
    return z / (1 + z * z / n) * math.sqrt(0.25 / n + z * z / (4 * n * n))
