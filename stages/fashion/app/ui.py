"""The page: three tabs wired to `fashion.app.generate`, `.search` and `.redress`. Each
handler returns its results and a status line; an `AppError` empties the results and shows
its sentence there (never a traceback)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gradio as gr

from fashion.app import generate, redress, search
from fashion.app.outputs import AppError, Outputs

# the system's fonts (launch's theme): the default theme's come from a font CDN, and the page
# must work offline
THEME = gr.themes.Default(font=["system-ui", "sans-serif"], font_mono=["monospace"])


def shown(results: Callable[[], tuple[Any, ...]], empty: tuple[Any, ...]) -> tuple[Any, ...]:
    """`results()` and an empty status, or `empty` and the `AppError`'s sentence."""
    try:
        return (*results(), "")
    except AppError as err:
        return (*empty, f"**Cannot do that:** {err}")


def gallery(label: str, elem_id: str) -> gr.Gallery:
    """A row of result images (8 a row), as tall as they need."""
    return gr.Gallery(label=label, columns=8, height="auto", elem_id=elem_id)


def whole(value: float | None, name: str) -> int:
    """A number field's value as an int, or an `AppError` for an empty or fractional one."""
    if value is None or int(value) != value:
        raise AppError(f"{name} must be a whole number, not {value!r}")
    return int(value)


def build(outputs: Outputs) -> gr.Blocks:
    def test_set() -> search.TestSet:  # the test images, read on first use
        return search.test_set(outputs)

    defaults = generate.Settings.defaults(outputs)
    names = generate.choices()
    with gr.Blocks(title="Fashion Synthesis: try the models") as page:
        gr.Markdown(f"# Try the models of `{outputs.root.resolve().name}`")
        with gr.Tab("Generate"):
            with gr.Row():
                pickers = [
                    gr.Dropdown(names[a], value=names[a][0], label=a)
                    for a in ("gender", "color", "sleeve", "category")
                ]
                write = gr.Button("Write the sentence")
            prompt = gr.Textbox(
                label="Prompt", placeholder="the lady is wearing a red dress.", elem_id="prompt"
            )
            with gr.Row():
                n_images = gr.Slider(1, generate.MAX_IMAGES, value=4, step=1, label="Images")
                steps = gr.Number(defaults.steps, label="Denoising steps", precision=0)
                guidance = gr.Number(defaults.guidance, label="Guidance scale")
                seed = gr.Number(defaults.seed, label="Seed", precision=0)
            negative = gr.Textbox(defaults.negative_prompt, label="Negative prompt")
            run_generate = gr.Button("Generate", variant="primary", elem_id="generate")
            generate_status = gr.Markdown(elem_id="generate-status")
            base_images = gallery("Base SD", "generate-base")
            tuned_images = gallery("Fine-tuned SD", "generate-tuned")

        def on_write(*picked: str) -> tuple[str, str]:
            return shown(lambda: (generate.sentence(*picked),), ("",))

        def on_generate(text, n, steps_, guidance_, seed_, negative_) -> tuple[Any, ...]:
            def images() -> tuple[Any, ...]:
                if guidance_ is None:
                    raise AppError("fill in the guidance scale")
                settings = generate.Settings(
                    whole(n, "images"), whole(steps_, "denoising steps"), float(guidance_),
                    whole(seed_, "the seed"), negative_ or "",
                )  # fmt: skip
                return tuple(list(v) for v in generate.generate(outputs, text, settings).values())

            return shown(images, (None, None))

        write.click(on_write, pickers, [prompt, generate_status])
        run_generate.click(
            on_generate,
            [prompt, n_images, steps, guidance, seed, negative],
            [base_images, tuned_images, generate_status],
        )

        with gr.Tab("Search"):
            query = gr.Textbox(
                label="Sentence", placeholder="a man in a blue coat", elem_id="query"
            )
            k = gr.Slider(1, 32, value=8, step=1, label="Results")
            run_search = gr.Button("Search", variant="primary", elem_id="search")
            search_status = gr.Markdown(elem_id="search-status")
            tuned_hits = gallery("Fine-tuned CLIP", "search-tuned")
            base_hits = gallery("Base CLIP", "search-base")
            gr.Markdown("An image gives its nearest test captions and its zero-shot attributes.")
            with gr.Row():
                upload = gr.File(label="Upload an image", type="filepath")
                index = gr.Number(label="or a test image's index", precision=0)
            run_describe = gr.Button("Describe", elem_id="describe")
            describe_status = gr.Markdown(elem_id="describe-status")
            description = gr.Markdown(elem_id="description")

        def on_search(text: str, k_: float) -> tuple[Any, ...]:
            def hits() -> tuple[Any, ...]:
                tests_ = test_set()
                found = search.search(tests_, text, whole(k_, "results"))
                return tuple(
                    [(tests_.images[h.row], f"{h.rank}. {h.caption}") for h in found[m]]
                    for m in search.MODELS
                )

            return shown(hits, (None, None))

        def on_describe(path: str | None, index_: float | None) -> tuple[Any, ...]:
            def text() -> tuple[str]:
                tests_ = test_set()
                if path:
                    image = search.read_upload(path)
                else:
                    image = tests_.images[redress.checked_index(tests_, index_)]
                found = search.describe(tests_, image, 5)
                lines = [f"{h.rank}. {h.caption} ({h.score:.2f})" for h in found.captions]
                shots = [f"{a}: **{v}** ({p:.0%})" for a, (v, p) in found.attributes.items()]
                return (
                    "\n".join(["Nearest captions:", *lines, "", "Zero-shot: " + ", ".join(shots)]),
                )

            return shown(text, ("",))

        run_search.click(on_search, [query, k], [tuned_hits, base_hits, search_status])
        run_describe.click(on_describe, [upload, index], [description, describe_status])

        with gr.Tab("Redress"):
            with gr.Row():
                source = gr.Number(0, label="Test image index", elem_id="redress-index")
                target = gr.Textbox(
                    label="Target sentence (empty: the official pair's)", elem_id="target"
                )
                rows = gr.Slider(1, redress.MAX_ROWS, value=4, step=1, label="Rows (seeds)")
            run_redress = gr.Button("Redress", variant="primary", elem_id="redress")
            redress_status = gr.Markdown(elem_id="redress-status")
            used = gr.Markdown(elem_id="redress-sentence")
            with gr.Row():
                shown_input = gr.Image(label="Input", elem_id="redress-input")
                shown_mask = gr.Image(label="Region redrawn", elem_id="redress-mask")
                shown_map = gr.Image(label="Target map (v2)", elem_id="redress-map")
            base_rows = gallery("Base (zero-shot)", "redress-base")
            tuned_rows = gallery("Fine-tuned", "redress-tuned")

        def on_redress(index_: float | None, text: str, rows_: float) -> tuple[Any, ...]:
            def result() -> tuple[Any, ...]:
                done = redress.redress(outputs, test_set(), index_, text, whole(rows_, "rows"))
                return (
                    f"Redressed to: *{done.sentence}*",
                    done.source,
                    done.mask,
                    done.target_map,
                    list(done.rows["base"]),
                    list(done.rows["finetuned"]),
                )

            return shown(result, ("", None, None, None, None, None))

        run_redress.click(
            on_redress,
            [source, target, rows],
            [used, shown_input, shown_mask, shown_map, base_rows, tuned_rows, redress_status],
        )
    return page
