"""Metrics on hand-made rolls: each expected value is worked out in the comment beside it."""

import math

import numpy as np
import pytest
import torch

from musicvae_course.core import metrics
from musicvae_course.core.model import MusicVAE, input_batches

C4 = 60 - 21  # row of middle C
E4, G4 = C4 + 4, C4 + 7


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    torch.set_num_threads(1)  # the test machine is shared: no oversubscription


def roll(*notes, steps=32):
    """(88, steps) bool from (row, start, stop) triples."""
    cells = np.zeros((88, steps), bool)
    for row, start, stop in notes:
        cells[row, start:stop] = True
    return cells


def test_frame_scores_count_cells():
    target = roll((C4, 0, 4))  # 4 cells
    predicted = roll((C4, 0, 2), (E4, 0, 1))  # 2 right, 1 wrong
    scores = metrics.frame_scores(predicted, target)
    assert scores["precision"] == pytest.approx(2 / 3)
    assert scores["recall"] == pytest.approx(2 / 4)
    assert scores["f1"] == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))


def test_frame_scores_threshold_on_probabilities():
    target = roll((C4, 0, 2))
    probabilities = np.zeros((88, 32))
    probabilities[C4, 0] = 0.5  # on: >= threshold, as pianoroll_to_midi
    probabilities[C4, 1] = 0.49  # off
    assert metrics.frame_scores(probabilities, target)["recall"] == pytest.approx(0.5)
    assert metrics.frame_scores(probabilities, target, threshold=0.4)["recall"] == 1.0


def test_onsets_tell_repeated_from_held_notes():
    held = roll((C4, 0, 8))  # one note
    repeated = roll((C4, 0, 3), (C4, 4, 8))  # two notes
    scores = metrics.onset_scores(repeated, held)
    assert scores["recall"] == 1.0 and scores["precision"] == 0.5
    assert metrics.frame_scores(repeated, held)["recall"] == pytest.approx(7 / 8)


def test_onset_one_step_late_does_not_match():
    assert metrics.onset_scores(roll((C4, 1, 4)), roll((C4, 0, 4)))["f1"] == 0.0


def test_silence_against_silence_is_perfect_and_missing_everything_scores_zero():
    silent = roll()
    assert metrics.frame_scores(silent, silent) == {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    missed = metrics.frame_scores(silent, roll((C4, 0, 4)))
    assert missed["recall"] == 0.0 and missed["f1"] == 0.0


def test_active_units_counts_dimensions_with_variance_above_threshold():
    rng = np.random.default_rng(0)
    mu = np.zeros((1000, 3))
    mu[:, 1] = rng.normal(0, math.sqrt(0.005), 1000)  # variance 0.005: inactive
    mu[:, 2] = rng.normal(0, 1, 1000)  # variance 1: active
    count, variance = metrics.active_units(mu)
    assert count == 1
    assert variance[0] == 0 and 0.003 < variance[1] < 0.007


def test_sample_statistics_on_a_c_major_triad():
    triad = roll((C4, 0, 8), (E4, 0, 4), (G4, 16, 20))  # C E G; beats 0, 1 and 4 sound
    assert metrics.pitch_range(triad)[0] == 7
    assert metrics.n_pitch_classes_used(triad)[0] == 3
    assert metrics.polyphony(triad)[0] == pytest.approx(16 / 12)  # 16 cells over 12 sounding steps
    assert metrics.pitch_class_entropy(triad)[0] == pytest.approx(math.log2(3))
    assert metrics.scale_consistency(triad)[0] == 1.0
    assert metrics.empty_beat_rate(triad)[0] == pytest.approx(5 / 8)


def test_pitch_class_entropy_counts_notes_not_cells():
    # C held for 12 steps and E for 1 step: two notes, one each -> 1 bit
    assert metrics.pitch_class_entropy(roll((C4, 0, 12), (E4, 20, 21)))[0] == pytest.approx(1.0)


def test_scale_consistency_of_the_chromatic_scale():
    chromatic = roll(*[(C4 + k, 2 * k, 2 * k + 1) for k in range(12)])
    assert metrics.scale_consistency(chromatic)[0] == pytest.approx(7 / 12)
    assert metrics.pitch_class_entropy(chromatic)[0] == pytest.approx(math.log2(12))


def test_empty_beat_rate_is_the_empty_share_not_the_sounding_one():
    # pypianoroll's function of this name returns the non-empty rate
    assert metrics.empty_beat_rate(roll())[0] == 1.0
    assert metrics.empty_beat_rate(roll((C4, 0, 32)))[0] == 0.0
    assert metrics.empty_beat_rate(roll((C4, 5, 6)))[0] == pytest.approx(7 / 8)


def test_groove_consistency():
    kicks = [(C4, t, t + 1) for t in (0, 4, 8, 12)]
    same = roll(*kicks, *[(C4, t + 16, t + 17) for t in (0, 4, 8, 12)])
    silent_then_kicks = roll(*[(C4, t + 16, t + 17) for t in (0, 4, 8, 12)])
    half = roll(*kicks, (C4, 16, 17), (C4, 24, 25))  # bar 2 keeps 2 of bar 1's 4 onsets
    values = metrics.groove_consistency(np.stack([same, silent_then_kicks, half, roll()]))
    assert values[0] == 1.0
    assert values[1] == 0.0  # MusPy scores this 0.967 (salu133445/muspy#73)
    assert values[2] == pytest.approx(0.5)  # |xor| 2 / |or| 4
    assert math.isnan(values[3])


def test_groove_ignores_a_note_held_over_the_bar_line():
    # one note from step 12 to 20: bar 2 has no onset of its own
    assert metrics.groove_consistency(roll((C4, 12, 20)))[0] == 0.0


def test_sample_statistics_average_over_non_empty_segments_only():
    batch = np.stack([roll((C4, 0, 4)), roll((C4, 0, 4), (G4, 0, 4)), roll(), roll()])
    stats = metrics.sample_statistics(batch)
    assert stats["n_segments"] == 4 and stats["empty_fraction"] == 0.5
    assert stats["pitch_range"] == pytest.approx(3.5)  # (0 + 7) / 2, silence not counted
    assert stats["polyphony"] == pytest.approx(1.5)
    assert stats["density"] == pytest.approx(12 / (4 * 88 * 32))
    assert set(metrics.SAMPLE_STATISTICS) <= set(stats)


def test_sample_statistics_accept_model_output_shape_and_probabilities():
    probabilities = np.zeros((2, 1, 88, 32))
    probabilities[0, 0, C4, :4] = 0.9
    probabilities[1, 0, C4, :4] = 0.2  # below threshold: an empty segment
    assert metrics.sample_statistics(probabilities)["empty_fraction"] == 0.5


def test_bad_roll_shape_is_named():
    with pytest.raises(ValueError, match="88"):
        metrics.sample_statistics(np.zeros((3, 80, 32)))


def test_scores_of_rolls_of_two_shapes_are_refused_not_broadcast():
    one = np.zeros((88, 32), bool)
    one[40, :8] = True
    batch = np.stack([one, one, one])
    # a batch against one roll was broadcast: 24 true positives of 8 target cells, recall 3, a negative miss count
    with pytest.raises(ValueError, match=r"predicted \(3, 88, 32\) and target \(88, 32\) differ in shape"):
        metrics.frame_scores(batch, one)
    with pytest.raises(ValueError, match="differ in shape"):
        metrics.onset_scores(one, one[:, :16])
    assert metrics.frame_scores(one[None, None], one)["f1"] == 1.0  # the model's (1, 1, 88, 32) against a roll


@pytest.mark.parametrize("name", ["steps_per_beat", "steps_per_bar"])
@pytest.mark.parametrize("steps", [0, -4, 2.5, True])
def test_a_beat_or_bar_of_no_steps_is_refused_by_name(name, steps):
    function = metrics.empty_beat_rate if name == "steps_per_beat" else metrics.groove_consistency
    with pytest.raises(ValueError, match=f"{name} must be a whole number of steps >= 1"):  # was ZeroDivisionError
        function(np.zeros((2, 88, 32), bool), **{name: steps})


@pytest.fixture(scope="module")
def model_and_rolls():
    torch.manual_seed(0)
    model = MusicVAE(latent_dim=8).eval()
    rolls = np.random.default_rng(1).random((24, 88, 32)) < 0.05
    return model, rolls


def test_evaluate_frame_scores_match_the_models_reconstruction(model_and_rolls):
    model, rolls = model_and_rolls
    table = metrics.evaluate(model, rolls, batch_size=10)
    with torch.no_grad():
        x = torch.as_tensor(rolls, dtype=torch.float32).unsqueeze(1)
        reconstruction, mu, log_var = model(x)
    assert table["frame_f1"] == pytest.approx(metrics.frame_scores(reconstruction, x)["f1"])
    assert table["onset_f1"] == pytest.approx(metrics.onset_scores(reconstruction, x)["f1"])
    kl = metrics.kl_per_dimension(mu, log_var).sum(1).mean().item()
    assert table["kl"] == pytest.approx(kl, rel=1e-5)
    assert table["neg_elbo"] == pytest.approx(table["reconstruction"] + table["kl"])
    assert table["n_segments"] == 24 and table["latent_dim"] == 8
    assert table["active_units"] == metrics.active_units(mu)[0]
    assert "frame_f1" in str(table) and len(table.rows()) == len(table)


def test_evaluate_is_deterministic_and_restores_training_mode(model_and_rolls):
    model, rolls = model_and_rolls
    model.train()
    first = metrics.evaluate(model, rolls, batch_size=7)
    assert model.training
    model.eval()
    assert metrics.evaluate(model, rolls, batch_size=7) == first


def test_evaluation_sums_of_shards_add_up(model_and_rolls):
    # what fit relies on under torchrun: each rank sums its shard, the sums are added
    model, rolls = model_and_rolls
    batches = input_batches
    a = metrics.evaluation_sums(model, batches(rolls[:10], 4, model.device))
    b = metrics.evaluation_sums(model, batches(rolls[10:], 4, model.device))
    whole = metrics.summarize_sums(a + b, model.latent_dim)
    direct = metrics.evaluate(model, rolls)
    for name in ("frame_f1", "onset_f1", "kl", "active_units", "n_segments"):
        assert whole[name] == pytest.approx(direct[name])
