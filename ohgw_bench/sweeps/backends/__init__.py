"""Backends run one replicate and return its rows; they never write the results store."""
