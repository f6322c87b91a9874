"""The DQN report's scores, tables and training-return bins on hand-made records."""

import csv
import io

import numpy as np
import pytest

from refplastic.rl import report


def record(episode_frames, episode_returns, last_frame, evaluations=()):
    return {"train": {"frame": [last_frame // 2, last_frame]},
            "episodes": {"frame": list(episode_frames), "return": list(episode_returns)},
            "evaluation": {"frame": [i * 100 for i in range(len(evaluations))], "return_mean": list(evaluations)}}


def test_late_training_return_averages_the_last_fifth():
    # F = 1000: episodes ending after frame 800 count; the one at exactly 800 does not
    r = record([100, 500, 800, 801, 1000], [1.0, 2.0, 3.0, 5.0, 10.0], 1000)
    assert report.late_training_return(r) == 7.5
    assert np.isnan(report.late_training_return(record([100], [1.0], 1000)))
    assert np.isnan(report.late_training_return(record([], [], 1000)))


def test_binned_training_return_by_hand():
    edges = np.array([0.0, 10.0, 20.0, 30.0])
    r = record([5, 10, 11, 25, 31, 0], [1.0, 3.0, 7.0, -2.0, 100.0, 50.0], 30)
    # (0, 10]: 1, 3 -> 2; (10, 20]: 7; (20, 30]: -2; frame 31 and frame 0 fall outside
    np.testing.assert_array_equal(report.binned_training_return(r, edges), [2.0, 7.0, -2.0])
    empty_middle = record([5, 25], [4.0, 6.0], 30)
    assert np.isnan(report.binned_training_return(empty_middle, edges)[1])


def run(game, layernorm, seed, evaluations, late_returns):
    frames = [900 + i for i in range(len(late_returns))]
    return (f"{game}-{layernorm}-{seed}.h5", {"game": game, "layernorm": layernorm, "seed": seed},
            record([100] + frames, [-99.0] + list(late_returns), 1000, evaluations))


def test_tables_of_both_scores():
    runs = [run("pong", False, 0, [-21, -20], [-20.0]), run("pong", False, 1, [-21, -18], [-19.0, -17.0]),
            run("pong", True, 0, [-21, -10], [-12.0])]
    rows = report.report_rows(runs)
    final, late = (rows[name][0] for name in ("final_evaluation", "late_training"))
    assert final["baseline"]["mean"] == -19 and final["baseline"]["sd"] == pytest.approx(np.sqrt(2))
    assert final["layernorm"]["seeds"] == 1 and np.isnan(final["layernorm"]["sd"])
    assert final["improvement"] == pytest.approx((-10 - -19) / (14.6 - -20.7))
    assert late["baseline"]["mean"] == (-20 + -18) / 2 and late["layernorm"]["mean"] == -12
    text = report.markdown(rows)
    assert "| pong | -19 +- 1.414 (2) |" in text and "| -10 (1) |" in text
    assert text.count("Median improvement over 1 games") == 2
    table = list(csv.DictReader(io.StringIO(report.csv_text(rows))))
    assert [row["score"] for row in table] == ["final_evaluation", "late_training"]
    assert float(table[1]["layernorm_mean"]) == -12


def test_frames_per_run_and_the_unequal_length_warning():
    equal = [run("pong", False, 0, [-21], [-20.0]), run("pong", True, 0, [-21], [-12.0])]
    text = report.markdown(report.report_rows(equal))
    assert "Frames per run: pong baseline 1,000, LayerNorm 1,000." in text and "unequal length" not in text
    longer = ("pong-long.h5", {"game": "pong", "layernorm": True, "seed": 1}, record([900], [-5.0], 3000, [-21, -5]))
    boxing = run("boxing", False, 0, [0], [1.0])
    text = report.markdown(report.report_rows(equal + [longer, boxing]))
    assert "**Runs of unequal length** in pong:" in text
    assert "pong baseline 1,000, LayerNorm 1,000/3,000" in text and "boxing baseline 1,000, LayerNorm -" in text
