"""Studies: configurations (TOML, presets), the resumable runner, figures and reports."""
