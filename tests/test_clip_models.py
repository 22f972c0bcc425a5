"""Tiny base CLIP: EOS pooling, save/load by `from_pretrained`, locked towers, zero-shot."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from clip_stand_ins import TensorFeatures
from fashion.clip.models import build_tiny_clip, embed_images, embed_texts, load_clip, lock_towers
from fashion.core.stage import PipelineError
from fashion.data.attributes import LABEL_MAPS
from fashion.data.captions import TEMPLATES, compose_caption
from fashion.metrics.zero_shot import ZeroShotClassifier, accuracy, balanced_accuracy

TINY = {"vocab_size": 400, "max_length": 32, "image_size": 32, "patch_size": 8,
        "vision_width": 32, "vision_layers": 1, "vision_heads": 2, "text_width": 32,
        "text_layers": 1, "text_heads": 2, "projection_dim": 16}  # fmt: skip
CAPTIONS = [compose_caption(0, c, s, k) for c in (1, 2, 17) for s in (1, 2, 3) for k in (2, 16)]


@pytest.fixture(scope="module")
def tiny():
    return build_tiny_clip(CAPTIONS, TINY, seed=0)


def test_text_config_uses_the_tokenizer_special_ids(tiny):
    model, processor = tiny
    tok, cfg = processor.tokenizer, model.config.text_config
    assert (cfg.bos_token_id, cfg.eos_token_id, cfg.pad_token_id) == (
        tok.bos_token_id, tok.eos_token_id, tok.pad_token_id,
    )  # fmt: skip
    # id 2 would switch transformers to its legacy argmax pooling (wrong for this vocabulary)
    assert cfg.eos_token_id != 2


def test_activation_is_a_param_checked_by_name():
    assert build_tiny_clip(CAPTIONS, TINY)[0].config.vision_config.hidden_act == "quick_gelu"
    model, _ = build_tiny_clip(CAPTIONS, {**TINY, "activation": "gelu"})
    assert model.config.text_config.hidden_act == model.config.vision_config.hidden_act == "gelu"
    assert type(model.vision_model.encoder.layers[0].mlp.activation_fn).__name__ == "GELUActivation"
    with pytest.raises(PipelineError, match="base_clip.tiny.activation"):
        build_tiny_clip(CAPTIONS, {**TINY, "activation": "gelu2"})


def test_text_is_pooled_at_the_eos_token(tiny):
    model, processor = tiny
    tokens = processor.tokenizer(["the lady wore a red dress.", CAPTIONS[0]], padding=True,
                                 return_tensors="pt")  # fmt: skip
    out = model.text_model(**tokens)
    eos = (tokens["input_ids"] == processor.tokenizer.eos_token_id).int().argmax(dim=1)
    assert eos.tolist() != [0, 0] and (eos > 1).all()
    expected = out.last_hidden_state[torch.arange(2), eos]
    torch.testing.assert_close(out.pooler_output, expected)
    assert not torch.allclose(out.pooler_output, out.last_hidden_state[:, 0])


def test_tokenizer_keeps_caption_words_whole(tiny):
    _, processor = tiny
    ids = processor.tokenizer("the lady wore a blue long-sleeved blouse.")["input_ids"]
    words = processor.tokenizer.convert_ids_to_tokens(ids)
    assert words[0] == "<|startoftext|>" and words[-1] == "<|endoftext|>"
    assert "blouse</w>" in words and "blue</w>" in words


def test_save_and_load_round_trip(tiny, tmp_path):
    model, processor = tiny
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    loaded, loaded_processor = load_clip(tmp_path)
    assert (
        loaded_processor.tokenizer(CAPTIONS)["input_ids"]
        == processor.tokenizer(CAPTIONS)["input_ids"]
    )
    assert loaded_processor.image_processor.crop_size == {"height": 32, "width": 32}
    torch.testing.assert_close(
        embed_texts(loaded, loaded_processor, CAPTIONS), embed_texts(model, processor, CAPTIONS)
    )


def test_embeddings_from_tensor_features_equal_those_from_output_objects(tiny):
    model, processor = tiny
    images = np.random.default_rng(0).integers(0, 256, (5, 40, 40, 3), dtype=np.uint8)
    tensors = TensorFeatures(model)
    torch.testing.assert_close(
        embed_images(tensors, processor, images, batch_size=2),
        embed_images(model, processor, images, batch_size=2),
    )
    torch.testing.assert_close(
        embed_texts(tensors, processor, CAPTIONS, batch_size=4),
        embed_texts(model, processor, CAPTIONS, batch_size=4),
    )


def test_lock_towers():
    model, _ = build_tiny_clip(CAPTIONS, {**TINY, "vision_layers": 3, "text_layers": 3}, seed=0)
    lock_towers(model, lock_image=True, lock_text=1)
    assert not any(p.requires_grad for p in model.vision_model.parameters())
    assert not model.visual_projection.weight.requires_grad
    layers = model.text_model.encoder.layers
    assert not any(p.requires_grad for layer in layers[:-1] for p in layer.parameters())
    assert all(p.requires_grad for p in layers[-1].parameters())
    assert model.text_model.final_layer_norm.weight.requires_grad
    assert model.text_projection.weight.requires_grad and model.logit_scale.requires_grad


def test_zero_shot_reads_attributes_off_the_most_probable_caption(tiny):
    model, processor = tiny
    classifier = ZeroShotClassifier(model, processor, templates=TEMPLATES[:1])
    images = embed_images(model, processor, np.zeros((3, 40, 40, 3), np.uint8))
    for attribute, label_map in LABEL_MAPS.items():
        assert classifier.classes[attribute].tolist() == sorted(label_map)
        p = classifier.probabilities(images, attribute)
        # a float32 softmax over every caption, summed per class: rounding reaches ~1e-5
        torch.testing.assert_close(p.sum(dim=1), torch.ones(3), rtol=0, atol=1e-4)
    # with distinct caption embeddings, an image equal to caption j is classified as caption j
    grid = [(0, 1, 1, 1), (1, 17, 3, 16), (0, 9, 2, 5)]  # (gender, color, sleeve, category)
    names = ("gender", "color", "sleeve", "category")
    match = [
        np.all([classifier.values[a] == v for a, v in zip(names, g, strict=True)], 0) for g in grid
    ]
    rows = [int(np.flatnonzero(m)[0]) for m in match]
    classifier.text_embeds = F.normalize(torch.randn(len(classifier.text_embeds), 64), dim=1)
    classifier.logit_scale = 100.0
    for i, attribute in enumerate(names):
        predicted = classifier.predict(classifier.text_embeds[rows], attribute)
        assert predicted.tolist() == [g[i] for g in grid]


def test_accuracy_and_balanced_accuracy():
    true = np.array([1, 1, 1, 1, 2, 3])
    pred = np.array([1, 1, 1, 1, 1, 3])
    assert accuracy(true, pred) == pytest.approx(5 / 6)
    assert balanced_accuracy(true, pred) == pytest.approx((1 + 0 + 1) / 3)


@pytest.mark.parametrize("pixel_budget", [0, 1 << 30])
def test_batches_of_the_batch_maker_equal_make_batch(tiny, pixel_budget):
    """Tokens cut to each batch's longest caption and pixel values computed once (or per
    batch, beyond the budget) give exactly the batches `make_batch` builds step by step."""
    from fashion.clip.data import BatchMaker, Pairs, make_batch, presize

    _, processor = tiny
    rng = np.random.default_rng(0)
    n = 40
    captions = [CAPTIONS[i] for i in rng.integers(0, len(CAPTIONS), n)]
    captions[3] = f"{CAPTIONS[0][:-1]} and a red long-sleeved coat."  # batches without it pad less
    _, ids = np.unique(np.asarray(captions, dtype=object), return_inverse=True)
    images = rng.integers(0, 256, (n, 128, 128, 3), dtype=np.uint8)
    pairs = Pairs(presize(processor, images), captions, ids.astype(np.int64), {})
    maker = BatchMaker(processor, pairs, pixel_budget)
    assert (maker.pixels is None) == (pixel_budget == 0)
    for rows in (rng.permutation(n)[:16], np.array([3, 5, 7]), np.array([5, 7, 9])):
        made, expected = maker(rows), make_batch(processor, pairs, rows)
        assert made.keys() == expected.keys()
        for key, value in expected.items():
            assert made[key].dtype == value.dtype and torch.equal(made[key], value), key


def test_pixel_values_land_on_the_device_with_a_pil_image_processor() -> None:
    """A PIL-based image processor ignores `device=`: the pixel values are moved there
    anyway (on a GPU, CPU pixels would reach a CUDA model). `meta` stands in for the GPU."""
    from types import SimpleNamespace

    import transformers

    from fashion.clip.data import pixel_values

    # transformers 5.0's CLIPImageProcessor is the PIL one; later releases name it so
    pil = getattr(transformers, "CLIPImageProcessorPil", transformers.CLIPImageProcessor)
    processor = pil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    images = np.zeros((2, 40, 40, 3), np.uint8)
    values = pixel_values(SimpleNamespace(image_processor=processor), images, "meta")
    assert values.device.type == "meta" and values.shape == (2, 3, 32, 32)
