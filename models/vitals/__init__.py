"""The deterioration model: simulated vital-sign cohorts, MIMIC-IV demo validation."""
