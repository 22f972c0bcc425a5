"""Exploratory data analysis: tables and figures of the eda stage."""
