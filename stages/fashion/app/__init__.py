"""Try the trained models in a browser (`make app`, `python -m fashion.app`): generate,
search and redress over whatever `dvc repro` last produced.

`outputs` finds and loads the models (once); `generate`, `search` and `redress` are the three
tabs' logic, plain functions tested without a browser; `ui` only wires them to a Gradio page.
A problem the user can fix (a missing model, an empty prompt, an index out of range, an
upload that is not an image, a GPU out of memory) is an `AppError`, shown on the page.
"""
