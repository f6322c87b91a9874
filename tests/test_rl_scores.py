"""The reference scores (DQN Zoo's table), human-normalised scores and Wang et al. (2016)'s
improvement against hand computations."""

import numpy as np
import pytest

from refplastic.rl.scores import REFERENCE_SCORES, human_normalised, improvement, reference_scores


def test_the_table_is_dqn_zoos():
    assert len(REFERENCE_SCORES) == 57
    assert reference_scores("pong") == (-20.7, 14.6)
    assert reference_scores("breakout") == (1.7, 30.5)
    assert reference_scores("skiing") == (-17098.1, -4336.9)
    assert reference_scores("video_pinball") == (16256.9, 17667.9)
    assert all(human > random for random, human in REFERENCE_SCORES.values())


def test_human_normalised_by_hand():
    assert human_normalised(14.6, "pong") == 1.0 and human_normalised(-20.7, "pong") == 0.0
    assert human_normalised(0.0, "pong") == pytest.approx(20.7 / 35.3, rel=1e-15)
    assert human_normalised(21.0, "pong") == pytest.approx(41.7 / 35.3, rel=1e-15)  # the best Pong score
    assert human_normalised(16.1, "breakout") == pytest.approx(14.4 / 28.8, rel=1e-15) == pytest.approx(0.5)
    np.testing.assert_allclose(human_normalised(np.array([1.7, 30.5, 401.2]), "breakout"), [0.0, 1.0, 399.5 / 28.8],
                               rtol=1e-15)
    assert np.isnan(human_normalised(float("nan"), "pong"))


def test_improvement_by_hand():
    """(score - baseline) / (max(human, baseline) - random): the human score is the scale while the
    baseline is below it, the baseline's own score once above."""
    assert improvement(10.0, 5.0, "pong") == pytest.approx(5.0 / (14.6 + 20.7), rel=1e-15)
    assert improvement(-20.0, -19.0, "pong") == pytest.approx(-1.0 / 35.3, rel=1e-15)
    assert improvement(150.0, 100.0, "breakout") == pytest.approx(50.0 / (100.0 - 1.7), rel=1e-15)
    assert improvement(20.0, 30.5, "breakout") == pytest.approx(-10.5 / 28.8, rel=1e-15)
    assert improvement(3.0, 3.0, "breakout") == 0.0
    np.testing.assert_allclose(improvement(np.array([10.0, 150.0]), np.array([5.0, 100.0]), "breakout"),
                               [5.0 / 28.8, 50.0 / 98.3], rtol=1e-15)
    assert np.isnan(improvement(float("nan"), 1.0, "pong")) and np.isnan(improvement(1.0, float("nan"), "pong"))


def test_an_unknown_game_is_named_in_one_line():
    with pytest.raises(ValueError, match=r"^game 'tetris' has no reference scores \(DQN Zoo"):
        human_normalised(1.0, "tetris")
    with pytest.raises(ValueError, match="game 'Pong' has no reference scores"):
        improvement(1.0, 2.0, "Pong")
