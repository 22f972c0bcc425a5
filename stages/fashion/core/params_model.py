"""params.yaml as a typed interface: one pydantic model per section, with the types,
ranges and choices of every key, so a bad value stops a stage before it reads any data, in
one line that names the key (`params.yaml: generate.denoising_steps: must be ≥ 1, got -3`), and a
misspelt key names the closest known one.

Stages validate what `load_params` reads (`check_params`): every key present is checked and
no key may be unknown; a section or key a test leaves out is not an error there (the stage
that reads it says so). `python -m fashion.core.params_model check FILE [PROFILE ...]`
checks a whole file, every key present, with each profile applied on top of it (`make
check-params`), and `python -m fashion.core.params_model schema` writes params.schema.json,
the JSON Schema editors read (the README shows how).
"""

from __future__ import annotations

import difflib
import json
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    WrapValidator,
    create_model,
)

from fashion.core.stage import PipelineError

# --- value types ------------------------------------------------------------------------


def _one_message(message: str) -> WrapValidator:
    """Replace pydantic's per-branch errors (a union gives one per member) by one message."""

    def wrap(value: Any, handler: Any) -> Any:
        try:
            return handler(value)
        except ValidationError:
            raise ValueError(message) from None

    return WrapValidator(wrap)


Bool = Annotated[bool, Field(strict=True)]  # true or false: not "yes", 1 or "on"
Seed = Annotated[int, Field(ge=0)]
NonNegInt = Annotated[int, Field(ge=0)]
PosInt = Annotated[int, Field(ge=1)]
PosFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Probability = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
Resolution = Annotated[int, Field(ge=8, multiple_of=8)]  # the VAE's latents are 1/8 of it
# a sample size: a number of items, or all of them
Count = Annotated[
    Union[Annotated[int, Field(ge=1)], Literal["all"]],  # noqa: UP007 (pydantic reads it)
    _one_message("must be an integer ≥ 1 or 'all'"),
]
OptionalPosInt = Annotated[Union[PosInt, None], _one_message("must be an integer ≥ 1 or null")]  # noqa: UP007
# fp32 | bf16 | fp16 | auto, one meaning on every device (fashion.sd.precision); the
# training stages' autocast takes bf16 | fp32 (fp16 would need a gradient scaler)
Precision = Literal["fp32", "bf16", "fp16", "auto"]
AutocastPrecision = Literal["bf16", "fp32"]
Scheduler = Literal["pndm", "ddim", "dpm", "euler"]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- the sections, in dvc.yaml's order ------------------------------------------------------


class Benchmark(Section):
    root: str
    password_env: str
    zip_sha256: str | None


class Demo(Section):
    n_images: Annotated[int, Field(ge=20)]
    seed: Seed
    password: Annotated[str, Field(min_length=1)]
    encryption: Literal["zipcrypto", "aes"]
    attributes: Literal["real", "uniform"]
    phrasing: Literal["outfit", "image"]


class Prepare(Section):
    n_train_images: Count
    n_test_images: Count
    seed: Seed


class Split(Section):
    validation_images: NonNegInt
    seed: Seed
    evaluate: Literal["test", "validation"]


class Training(Section):
    seed: Seed


class Labels(Section):
    pass


class Eda(Section):
    grid_size: PosInt
    seed: Seed
    top_words: PosInt
    top_bigrams: PosInt
    top_categories: PosInt
    word_cloud_words: PosInt
    stop_words: list[Annotated[str, Field(strict=True)]]


class Accelerate(Section):
    launch: Annotated[str, Field(min_length=1)]


class TinyClip(Section):
    vocab_size: PosInt
    max_length: PosInt
    image_size: PosInt
    patch_size: PosInt
    vision_width: PosInt
    vision_layers: PosInt
    vision_heads: PosInt
    text_width: PosInt
    text_layers: PosInt
    text_heads: PosInt
    projection_dim: PosInt
    activation: Literal["gelu", "quick_gelu", "gelu_new", "relu", "silu"]


class BaseClip(Section):
    pretrained: str
    revision: str | None
    tiny: TinyClip


class TrainingRun(Section):
    """What every training stage shares: length, batches, schedule and checkpoints."""

    n_images: Count
    steps: PosInt  # optimiser steps (with `epochs`, null: no cap)
    schedule_steps: OptionalPosInt
    batch_size: PosInt
    warmup_steps: NonNegInt
    eval_every: PosInt
    checkpoint_every: PosInt
    keep_checkpoints: NonNegInt
    checkpoint_mirror: str | None


class FinetuneClip(TrainingRun):
    epochs: OptionalPosInt
    steps: OptionalPosInt
    grad_accum: PosInt
    lr: PosFloat
    weight_decay: NonNegFloat
    betas: tuple[Probability, Probability]
    eps: PosFloat
    max_grad_norm: PosFloat | None
    # true: freeze the tower; N: train only its last N layers
    lock_image: Annotated[Bool | NonNegInt, _one_message("must be true, false or a count ≥ 0")]
    lock_text: Annotated[Bool | NonNegInt, _one_message("must be true, false or a count ≥ 0")]
    log_every: PosInt
    num_workers: NonNegInt
    saved_weights: Literal["last", "best_val_r1"]


class EvalClip(Section):
    n_images: Count
    seed: Seed
    batch_size: PosInt
    chunk: PosInt
    histogram_bins: PosInt


class TinySD(Section):
    resolution: Resolution
    vocab_size: PosInt
    max_length: PosInt
    text_width: PosInt
    text_layers: PosInt
    text_heads: PosInt
    vae_channels: list[PosInt]
    vae_norm_groups: PosInt
    unet_channels: list[PosInt]
    unet_layers: PosInt
    unet_head_dim: PosInt
    unet_pooled_text: Bool


class VaePretraining(Section):
    steps: NonNegInt
    batch_size: PosInt
    crop: PosInt | None
    loss: Literal["l1", "mse"]
    lr: PosFloat
    kl_weight: NonNegFloat
    chroma_weight: NonNegFloat
    color_balance: Probability
    precision: AutocastPrecision


class BaseSD(Section):
    pretrained: str
    revision: str | None
    tiny: TinySD
    vae_pretraining: VaePretraining


class FinetuneSD(TrainingRun):
    epochs: OptionalPosInt
    steps: OptionalPosInt
    mode: Literal["full", "lora", "lora_conv_in"]
    resolution: Resolution
    random_flip: Bool
    caption_dropout: Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False)]  # 1: no captions
    prediction_type: Literal["epsilon", "v_prediction"] | None
    snr_gamma: PosFloat | None
    noise_offset: NonNegFloat
    train_text_encoder: Bool
    lora_rank: PosInt
    lr: PosFloat
    text_encoder_lr: PosFloat
    lr_scheduler: str
    grad_accum: PosInt
    max_grad_norm: PosFloat | None
    ema: Bool
    ema_decay: Probability
    gradient_checkpointing: Bool
    cache_latents: Bool
    vae_precision: Precision
    validation_denoising_steps: PosInt  # of the validation images
    validation_prompts: list[str]


# The keys of the SD fine-tuners' recipe that sd_training holds for both (a key lives in one
# place: there, or in each stage's section).
SD_SHARED = (
    "resolution", "random_flip", "prediction_type", "snr_gamma", "noise_offset", "lora_rank",
    "text_encoder_lr", "max_grad_norm", "ema", "ema_decay", "vae_precision",
    "validation_denoising_steps", "validation_prompts",
)  # fmt: skip
# Sections whose stages also read a shared section's keys, as their own.
SHARED_SECTIONS = {"finetune_sd": "sd_training", "finetune_inpaint": "sd_training"}

SdTraining = create_model(
    "SdTraining",
    __base__=Section,
    __doc__="What both SD fine-tuners read: any of FinetuneSD's keys (SD_SHARED by default).",
    **{k: (v.annotation, v) for k, v in FinetuneSD.model_fields.items() if k != "seed"},
)


class Reshape(TrainingRun):
    coarse_size: PosInt
    coarse_cells: Literal["majority", "shares"]
    coarse_jitter: Probability
    work_size: PosInt
    width: PosInt
    text_dim: PosInt
    min_word_count: PosInt
    loss_size: PosInt
    precision: AutocastPrecision
    lr: PosFloat
    weight_decay: NonNegFloat
    random_flip: Bool
    rule_margin: Probability
    grid_rows: PosInt


class BaseInpaint(Section):
    pretrained: str
    revision: str | None


class FinetuneInpaint(FinetuneSD):
    random_mask_p: Probability
    map_dropout: Probability
    mask_union_p: Probability


class Redress(Section):
    version: Literal["v1", "v2"]
    mask_classes: list[str]
    mask_dilation: NonNegInt
    n_images: Count
    seed: Seed
    scheduler: Scheduler
    denoising_steps: PosInt
    guidance_scale: NonNegFloat
    resolution: Resolution
    precision: Precision
    batch_size: PosInt
    grid_rows: PosInt
    batches_dir: str | None


class PromptGrid(Section):
    genders: list[str]
    colors: list[str]
    sleeves: list[str]
    categories: list[str]
    free_form: list[str]
    seed: Seed


class Generate(Section):
    prompts: PromptGrid
    prompts_file: str | None
    negative_prompt: str
    scheduler: Scheduler
    denoising_steps: PosInt
    guidance_scale: NonNegFloat
    resolution: Resolution
    precision: Precision
    images_per_prompt: PosInt
    batch_size: PosInt
    seed: Seed
    grid_columns: PosInt
    batches_dir: str | None


class Reference(Section):
    seed: Seed
    n_images: Count
    n_train_images: Count
    memorisation_size: PosInt
    batch_size: PosInt


class Evaluate(Section):
    seed: Seed
    batch_size: PosInt
    skip_inception: Annotated[Bool | Literal["auto"], _one_message("must be true, false or auto")]
    inception_weights: str | None
    is_splits: PosInt
    kid_subsets: PosInt
    kid_subset_size: PosInt
    histogram_bins: PosInt
    pixel_judge: Bool
    seen_min_count: NonNegInt


class Params(Section):
    """All of params.yaml."""

    benchmark: Benchmark
    demo: Demo
    prepare: Prepare
    split: Split
    training: Training
    labels: Labels
    eda: Eda
    reference: Reference
    accelerate: Accelerate
    base_clip: BaseClip
    finetune_clip: FinetuneClip
    eval_clip: EvalClip
    base_sd: BaseSD
    sd_training: SdTraining
    finetune_sd: FinetuneSD
    reshape: Reshape
    base_inpaint: BaseInpaint
    finetune_inpaint: FinetuneInpaint
    redress: Redress
    generate: Generate
    evaluate: Evaluate


TRAINING_SECTIONS = ("finetune_clip", "sd_training", "finetune_sd", "reshape", "finetune_inpaint")
# Old names -> the names now: the training sections' (SD's were diffusers' script's), and
# params that moved out of them.
RENAMED = {
    # 2026-12-07: one name per concept (denoising vs training steps; n_* counts images)
    "steps": "denoising_steps",
    "validation_steps": "validation_denoising_steps",
    "n": "n_images",
    "n_eval": "n_images",
    "n_pairs": "n_images",
    "n_train": "n_train_images",
    "n_test": "n_test_images",
    "keep": "saved_weights",
    "max_steps": "steps",
    "lr_warmup_steps": "warmup_steps",
    "validation_every": "eval_every",
    "checkpoints_total_limit": "keep_checkpoints",
}
MOVED = {"val_size": "split.validation_images", "seed": "training.seed"}


# --- checking ---------------------------------------------------------------------------


class ParamsError(PipelineError):
    """One bad key: `where` (the file), the dotted key and what is wrong, as one line."""

    def __init__(self, where: str, key: str, problem: str) -> None:
        super().__init__(f"{where}: {key}: {problem}")


def _submodel(annotation: Any) -> type[BaseModel] | None:
    is_model = isinstance(annotation, type) and issubclass(annotation, BaseModel)
    return annotation if is_model else None


def _number(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _unknown(section: str, key: str, model: type[BaseModel]) -> str:
    if key in RENAMED and RENAMED[key] in model.model_fields:
        return f"renamed: it is now {section}.{RENAMED[key]}"
    if key in MOVED and section in TRAINING_SECTIONS:
        return f"not a param of {section}: set {MOVED[key]} (it applies to every training stage)"
    close = difflib.get_close_matches(key, list(model.model_fields), n=1, cutoff=0.6)
    return "unknown key" + (f"; did you mean {close[0]}?" if close else "")


def _problem(error: dict[str, Any], value: Any) -> str:
    """pydantic's first error as a short phrase ending with the value given."""
    kind, ctx = error["type"], error.get("ctx", {})
    if kind == "greater_than_equal":
        text = f"must be ≥ {_number(ctx['ge'])}"
    elif kind == "greater_than":
        text = f"must be > {_number(ctx['gt'])}"
    elif kind == "less_than":
        text = f"must be < {_number(ctx['lt'])}"
    elif kind == "less_than_equal":
        text = f"must be ≤ {_number(ctx['le'])}"
    elif kind == "multiple_of":
        text = f"must be a multiple of {_number(ctx['multiple_of'])}"
    elif kind == "literal_error":
        text = f"must be one of {ctx['expected']}"
    elif kind in ("int_parsing", "int_type", "int_from_float"):
        text = "must be an integer"
    elif kind == "finite_number":
        text = "must be a finite number"
    elif kind in ("float_parsing", "float_type"):
        text = "must be a number"
    elif kind in ("bool_parsing", "bool_type"):
        text = "must be true or false"
    elif kind in ("string_type", "string_too_short"):
        text = "must be a non-empty string" if kind == "string_too_short" else "must be a string"
    elif kind in ("list_type", "tuple_type"):
        text = "must be a list"
    elif kind == "value_error":
        text = error["msg"].removeprefix("Value error, ")
    else:
        text = error["msg"][0].lower() + error["msg"][1:]
    items = [p for p in error.get("loc", ()) if isinstance(p, int)]
    for index in items:  # a list's bad item: name it and show it alone
        value = value[index]
    where = f" (item {items[0]})" if len(items) == 1 else ""
    return f"{text}{where}, got {value!r}"


def _field_type(model: type[BaseModel], key: str) -> Any:
    info = model.model_fields[key]
    return Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation


def _check(
    model: type[BaseModel],
    values: Any,
    where: str,
    path: str,
    complete: bool,
    shared: Mapping[str, Any] | None = None,
) -> None:
    """`shared`: the keys a shared section gives this one (they count as present here)."""
    if not isinstance(values, Mapping):
        raise ParamsError(where, path or "(file)", f"must be a mapping, got {values!r}")
    for key, value in values.items():
        dotted = f"{path}.{key}" if path else str(key)
        if key not in model.model_fields:
            raise ParamsError(where, dotted, _unknown(path, str(key), model))
        if shared and key in shared:
            problem = f"also in {SHARED_SECTIONS[path]}, which {path} reads: set it in one place"
            raise ParamsError(where, dotted, problem)
        sub = _submodel(model.model_fields[key].annotation)
        if sub is not None:
            from_shared = values.get(SHARED_SECTIONS[key]) if key in SHARED_SECTIONS else None
            from_shared = from_shared if isinstance(from_shared, Mapping) else None
            _check(sub, value, where, dotted, complete and sub is not SdTraining, from_shared)
            continue
        try:
            _adapter(model, key).validate_python(value)
        except ValidationError as err:
            raise ParamsError(where, dotted, _problem(err.errors()[0], value)) from None
    if complete:
        missing = [k for k in model.model_fields if k not in values and k not in (shared or {})]
        if missing:
            dotted = f"{path}.{missing[0]}" if path else missing[0]
            also = f" (here or in {SHARED_SECTIONS[path]})" if path in SHARED_SECTIONS else ""
            raise ParamsError(where, dotted, f"missing{also}")


_ADAPTERS: dict[tuple[type[BaseModel], str], TypeAdapter] = {}


def _adapter(model: type[BaseModel], key: str) -> TypeAdapter:
    if (model, key) not in _ADAPTERS:
        _ADAPTERS[model, key] = TypeAdapter(_field_type(model, key))
    return _ADAPTERS[model, key]


# --- rules across keys ------------------------------------------------------------------


def _get(params: Mapping[str, Any], dotted: str) -> Any:
    """The value at `dotted`, or None where the params leave it out (a partial check)."""
    value: Any = params
    for name in dotted.split("."):
        if not isinstance(value, Mapping) or name not in value:
            return None
        value = value[name]
    return value


def _divides(params: Mapping[str, Any], size: str, part: str) -> str | None:
    a, b = _get(params, size), _get(params, part)
    if isinstance(a, int) and isinstance(b, int) and a % b:
        return f"must divide {size} ({a}), got {b}"
    return None


def _cross_field_problems(params: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(dotted key, problem) for each rule between keys that `params` breaks; a rule whose
    keys are not all present is not checked (a partial check of a test's params)."""
    for stage in ("finetune_clip", "finetune_sd", "finetune_inpaint", "reshape"):
        own = _get(params, stage)
        if not isinstance(own, Mapping):
            continue
        view = {**(_get(params, SHARED_SECTIONS.get(stage, "")) or {}), **own}
        if "steps" in view and "epochs" in view and view["steps"] is view["epochs"] is None:
            yield f"{stage}.steps", "set steps, epochs or both (both are null)"
        steps, schedule = view.get("steps"), view.get("schedule_steps")
        fixed = view.get("epochs") is None and isinstance(steps, int)
        if fixed and isinstance(schedule, int) and schedule < steps:
            yield f"{stage}.schedule_steps", f"must be ≥ {stage}.steps ({steps}), got {schedule}"
    validation = _get(params, "split.validation_images")
    if _get(params, "finetune_clip.saved_weights") == "best_val_r1" and validation == 0:
        yield (
            "finetune_clip.saved_weights",
            ("best_val_r1 needs a validation split (split.validation_images ≥ 1)"),
        )
    train = _get(params, "prepare.n_train_images")
    if isinstance(validation, int) and isinstance(train, int) and validation >= train:
        yield (
            "split.validation_images",
            (
                f"must be smaller than prepare.n_train_images ({train}): the rest of train is "
                f"what the training stages fit, got {validation}"
            ),
        )
    tiny = "base_sd.tiny"
    levels, resolution = _get(params, f"{tiny}.vae_channels"), _get(params, f"{tiny}.resolution")
    if isinstance(levels, list) and levels and isinstance(resolution, int):
        factor = 2 ** (len(levels) - 1)
        if resolution % factor:
            yield (
                f"{tiny}.resolution",
                (
                    f"must be a multiple of the VAE's factor {factor} (vae_channels has "
                    f"{len(levels)} levels), got {resolution}"
                ),
            )
    for width, heads in (
        (f"{tiny}.text_width", f"{tiny}.text_heads"),
        ("base_clip.tiny.vision_width", "base_clip.tiny.vision_heads"),
        ("base_clip.tiny.text_width", "base_clip.tiny.text_heads"),
    ):
        problem = _divides(params, width, heads)
        if problem:
            yield heads, problem
    head, unet = _get(params, f"{tiny}.unet_head_dim"), _get(params, f"{tiny}.unet_channels")
    last = unet[-1] if isinstance(unet, list) and unet else None
    if isinstance(head, int) and isinstance(last, int) and last % head:
        problem = f"must divide the attention level's {last} channels (unet_channels' last)"
        yield f"{tiny}.unet_head_dim", f"{problem}, got {head}"


def check_params(params: Any, where: str = "params.yaml", complete: bool = False) -> None:
    """Raise a ParamsError (one line) at the first bad key of `params`: an unknown key (with
    the closest known one, or the new name of an old one), a value of the wrong type, out of
    range or not among the choices, a rule between keys broken; with `complete`, also a
    missing key."""
    _check(Params, params, where, "", complete)
    for key, problem in _cross_field_problems(params):
        raise ParamsError(where, key, problem)


def json_schema() -> dict[str, Any]:
    """The model as a JSON Schema for editors: every key optional (a profile sets a few)."""
    schema = Params.model_json_schema()

    def relax(node: Any) -> None:
        if isinstance(node, dict):
            node.pop("required", None)
            for child in node.values():
                relax(child)
        elif isinstance(node, list):
            for child in node:
                relax(child)

    relax(schema)
    schema["title"] = "params.yaml of the Fashion Synthesis pipeline"
    return schema


SCHEMA_FILE = Path("params.schema.json")


def _main(argv: list[str]) -> int:
    import yaml

    from fashion.core.params import merged

    usage = "usage: python -m fashion.core.params_model check PARAMS [PROFILE ...] | schema [OUT]"
    if not argv or argv[0] not in ("check", "schema"):
        print(usage, file=sys.stderr)
        return 2
    if argv[0] == "schema":
        out = Path(argv[1]) if len(argv) > 1 else SCHEMA_FILE
        out.write_text(json.dumps(json_schema(), indent=1, ensure_ascii=False) + "\n")
        print(f"wrote {out}")
        return 0
    if len(argv) < 2:
        print(usage, file=sys.stderr)
        return 2
    base_file, profiles = Path(argv[1]), [Path(p) for p in argv[2:]]
    try:
        base = yaml.safe_load(base_file.read_text())
        check_params(base, str(base_file), complete=True)
        for profile in profiles:
            layer = yaml.safe_load(profile.read_text()) or {}
            check_params(layer, str(profile))
            try:
                applied = merged(base, layer, known_keys_only=True)
            except KeyError as err:
                raise ParamsError(str(profile), str(err.args[0]), "not in the params") from None
            check_params(applied, f"{base_file} + {profile}", complete=True)
    except (ParamsError, OSError, yaml.YAMLError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"ok: {base_file}" + "".join(f", + {p}" for p in profiles))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
