"""mattex.calibration."""
