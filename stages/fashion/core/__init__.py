"""Params, the stage runner, all-or-nothing outputs and model provenance: what every stage uses."""
