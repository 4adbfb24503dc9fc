"""The report of one results directory: report.md, summary.json, metrics.parquet and figures.

``make.make_report(results_dir)`` reads the store written by a sweep (``ohgw_bench.store``), computes
per-replicate metrics and paired comparisons (``ohgw_bench.analysis.stats``), judges every variant against
the pre-registered criteria, and writes everything a reader needs to check the claim, with n and spread
next to every statistic, into ``results_dir/report``: ``context`` resolves the inputs (variants,
baseline, τ) into one ``ReportContext``, which ``figures``, ``summary`` and ``markdown`` read.
"""
