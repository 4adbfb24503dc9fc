"""Executors run the function they are given over chunks or replicates (here, or as Ray tasks); they
import no backend."""
