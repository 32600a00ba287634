"""The facts both sides read: the variant table, the architecture and its MAC count, input contracts, the target
table (targets/*.toml) and the bundle schema. Pure Python, no numpy."""
