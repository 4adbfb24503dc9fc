"""Analysis of results stores: the statistics and the verdict (stats, with their calibration on synthetic
data in stat_calibration), the step-size frontier, the report, and the verification of the surrogate
against real sweeps (verify)."""
