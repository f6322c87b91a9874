"""The paper's tables and figures from a directory of finished runs (``refplastic analyse``).

:mod:`.rank_correlation` (average ranks, Spearman's rho, its percentile bootstrap interval),
:mod:`.runs` (finding and loading the results files of a directory), :mod:`.figure6` (plasticity
loss per intervention and architecture), :mod:`.figure3` (Spearman correlations of plasticity
loss with the logged statistics, overall and by split), :mod:`.plots` (the figures, with
matplotlib) and :mod:`.report` (all of it into a report directory). docs/protocol.md, "Analysis",
says what each computes.
"""
