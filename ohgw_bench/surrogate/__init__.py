"""The surrogate of real runs: collecting real full-budget runs and hyper-gradients (collect), the learned
model and its artifact (model), fitting it (fit), and how faithful it is (fidelity, noise_ceiling), with
the start-up overhead and epoch times measured from real sweeps (overhead). Only ``collect`` trains."""
