"""Real trials: data, augmentation, models, training with a warm start, hyper-gradients and what they
cost. The only part of the package that imports torch."""
