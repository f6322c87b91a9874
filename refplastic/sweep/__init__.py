"""Grids of runs (``refplastic sweep``): :mod:`.grid` (the axes and the runs they make),
:mod:`.directory` (the files of a grid in its directory, the manifest), :mod:`.task` (one run,
as a process of its own), :mod:`.executors` (this machine or a Dask cluster) and :mod:`.runner`
(the grid to its end, skipping what is done and resuming what is not).

Above :mod:`refplastic.plasticity` and :mod:`refplastic.rl`, whose commands it runs; nothing
below imports it.
"""
