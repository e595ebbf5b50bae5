"""Per-patient state: windows of recent signals and personal baselines."""
