"""The performance_rnn family's checks: which config a checkpoint is, and the control values' 422s."""

import numpy as np
import pytest
from melody_rnn_support import request
from performance_rnn_support import family, to_events, weights

from magenta_api import Unprocessable
from magenta_api.testing import run_family
from magenta_api_performance_rnn.configs import CONFIGS
from magenta_api_performance_rnn.encoding import ConditionedEncoder, ControlSchedule


def test_a_checkpoint_without_a_config_or_of_another_config_says_which_fits():
    with pytest.raises(ValueError, match=r"set hparams\.config"):
        family("performance", hparams={})
    with pytest.raises(ValueError, match="not a PerformanceRNN config"):
        family("performance", hparams={"config": "basic_rnn"})
    with pytest.raises(ValueError, match="the weights fit config performance_with_dynamics"):
        family("performance_with_dynamics", hparams={"config": "performance"})
    with pytest.raises(ValueError, match="takes 409 inputs"):
        family("optional_multiconditioned_performance_with_dynamics", hparams={"config": "performance"})


def test_the_multiconditioned_config_on_weights_with_the_disable_flag_runs_as_the_optional_one():
    fam = family(
        "optional_multiconditioned_performance_with_dynamics",
        hparams={"config": "multiconditioned_performance_with_dynamics"},
    )
    assert fam.config.optional and fam.config.name.startswith("optional_")


@pytest.mark.parametrize(
    "params,field",
    [
        ({"notes_per_second": []}, "/notes_per_second"),
        ({"notes_per_second": [1.0] * 65}, "/notes_per_second"),
        ({"notes_per_second": True}, "/notes_per_second"),
        ({"pitch_class_histogram": []}, "/pitch_class_histogram"),
        ({"pitch_class_histogram": [[1] * 12] * 65}, "/pitch_class_histogram"),
        ({"pitch_class_histogram": [[1] * 12, 3]}, "/pitch_class_histogram"),
        ({"disable_conditioning": []}, "/disable_conditioning"),
    ],
)
def test_malformed_control_values_are_422_naming_the_field(params, field):
    fam = family("optional_multiconditioned_performance_with_dynamics")
    with pytest.raises(Unprocessable) as err:
        run_family(fam, request(length=200, **params))
    assert err.value.details["field"] == field and err.value.code == "invalid_control"


def test_a_control_schedule_changes_the_inputs_along_the_performance():
    config = CONFIGS["density_conditioned_performance_with_dynamics"]
    schedule = ControlSchedule(config, {"notes_per_second": [0.5, 40.0]}, None, num_steps=100)
    encoder = ConditionedEncoder(config, schedule)
    events = to_events([["note_on", 60], ["time_shift", 60], ["note_off", 60]])
    inputs = encoder.full(events)
    assert inputs[0, :8].argmax() == 0 and inputs[1, :8].argmax() == 6  # bins of 0.5 and 40 notes/s (32..64)
    tracker = encoder.tracker(events)
    np.testing.assert_array_equal(encoder.last([events], [tracker])[0], inputs[-1])
    np.testing.assert_array_equal(encoder.last([events])[0], inputs[-1])


def test_generation_stops_at_length_even_when_the_rnn_runs_past_it():
    fam = family("performance", variables=weights("performance"))
    out = run_family(fam, request(primer=[["note_on", 60], ["time_shift", 20]], length=100, seed=3))
    assert out.extra["end_step"] == 100
    assert out.sequences[0].total_time == pytest.approx(1.0)


@pytest.mark.parametrize("primer", [[], [["note_on"]], [["chord", 60]], [["note_on", 60.5]], ["note_on"]])
def test_malformed_event_list_primers_are_422(primer):
    fam = family("performance_with_dynamics")
    with pytest.raises(Unprocessable) as err:
        run_family(fam, request(primer=primer, length=300))
    assert err.value.details["field"] == "/primer" and err.value.code == "invalid_primer"
