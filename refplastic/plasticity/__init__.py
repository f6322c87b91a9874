"""The plasticity experiment of Lyle et al. (2023): tasks, agent, probes, interventions, one run.

:mod:`.config` (every setting, with its source, and the presets), :mod:`.mdp` (the classification
MDPs), :mod:`.replay`, :mod:`.agent` (epsilon-greedy acting, TD targets), :mod:`.heads` (scalar
and two-hot value heads), :mod:`.architectures` (the MLP and CNN), :mod:`.probes` (the probe task),
:mod:`.interventions`, :mod:`.continual_backprop`, :mod:`.hidden_units`, :mod:`.twohot`,
:mod:`.run` (the loop), :mod:`.results` (what a run records) and :mod:`.checkpoint`.
"""
