"""Calibration-set recipes: one TOML file per recipe, loaded by edgekit.calibration_sets."""
