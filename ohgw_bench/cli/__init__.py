"""The ``ohgw-bench`` command line: one parser (``main``); each domain module registers its verbs."""
