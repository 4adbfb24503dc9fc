"""Sweeps: schedulers × warm-start variants × paired seeds, real or simulated, into one results store.

``sweep`` drives; ``backends`` run one replicate and return its rows (``real`` on trial processes,
``persistent`` their long-lived workers, ``simulated`` on the surrogate); ``executors`` run what they are
given here or on Ray; ``replicate`` writes and reads the store's units; ``schedulers`` wraps Syne Tune's."""
