"""Double DQN on Atari games (issue 15): the paper's large-scale check of LayerNorm (Lyle et al. 2023,
section 6.3, figure 7, appendix A.3), written on refplastic's own layers.

:mod:`.atari` (the games: N sub-environments stepped together in ale-py's C++ threads, resumable
by replaying their current episodes), :mod:`.frame_replay` (a replay buffer of single frames that
restacks observations exactly as the environment stacked them), :mod:`.scores` (the human and
random reference scores, human-normalised scores and figure 7's improvement measure),
:mod:`.nature_cnn`, :mod:`.targets`, :mod:`.learner`, :mod:`.config`, :mod:`.run` (the loop),
:mod:`.checkpoint`, :mod:`.results`, :mod:`.report` and :mod:`.experiment`. This package sits above
:mod:`refplastic.nn` and uses :mod:`refplastic.plasticity`; nothing below imports it.
"""
