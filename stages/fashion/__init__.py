"""Shared code of the Fashion Synthesis pipeline stages.

Modules: `config` (params and stage runner), `atomic` (all-or-nothing outputs),
`labels` (code -> name maps of the benchmark annotations).
"""
