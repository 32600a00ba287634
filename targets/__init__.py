"""Target declarations: one TOML file per target, loaded by edgekit.targets_registry."""
