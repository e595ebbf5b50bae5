"""The glucose forecaster: simulated CGM cohorts, dataset, baselines and evaluation."""
