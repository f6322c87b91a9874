"""The plasticity experiment of Lyle et al. (2023): interventions, the two-hot output, and the run."""
