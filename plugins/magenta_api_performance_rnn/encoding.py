"""PerformanceRNN inputs: the events' own encoding, and for the conditioned configs the control signals
in front of it (note-seq's ``ConditionalEventSequenceEncoderDecoder`` layout).

The controls are a schedule, as ``performance_sequence_generator`` builds them: each control's values
(one value, or several spread evenly over the performance: ``_step_to_value``) looked up by the
performance's time step. The input of event ``p`` carries the control at the time step reached *after*
events ``0..p`` (Magenta's ``_extend_control_events``: the control of the event being predicted), so
a :class:`ControlTracker` per sequence follows the time step as events are appended and hands the
beam search each new input (the tracker protocol of ``magenta_api_melody_rnn.beam``).
"""

import numpy as np
from note_seq.performance_lib import PerformanceEvent

from magenta_api_melody_rnn.encoders import InputEncoder

from .configs import PerformanceConfig


def step_to_value(step: int, num_steps: int, values: list):
    """performance_sequence_generator._step_to_value: values spread evenly over ``num_steps``."""
    return values[min(step * len(values) // num_steps, len(values) - 1)]


class ControlSchedule:
    """The control event at each time step, and its encoding (cached: a schedule has few values)."""

    def __init__(self, config: PerformanceConfig, values: dict, disable: list | None, num_steps: int):
        self.config = config
        self.values = [list(values[name]) for name in config.controls]
        self.disable = list(disable) if disable is not None else [False]
        self.num_steps = max(1, int(num_steps))
        self._encoder = config.control_encoder()
        self._vectors: dict = {}

    def event(self, step: int):
        """Magenta's control event at ``step``: a tuple of values, ``(disable, values)`` when optional."""
        event = tuple(step_to_value(step, self.num_steps, v) for v in self.values)
        if self.config.optional:
            return (step_to_value(step, self.num_steps, self.disable), event)
        return event

    def vector(self, step: int) -> np.ndarray:
        key = tuple(min(step * len(v) // self.num_steps, len(v) - 1) for v in [*self.values, self.disable])
        out = self._vectors.get(key)
        if out is None:
            out = self._vectors[key] = np.asarray(self._encoder.events_to_input([self.event(step)], 0), np.float32)
        return out


class ControlTracker:
    """One sequence's time step and its last input vector ([controls | one-hot event])."""

    def __init__(self, encoder: "ConditionedEncoder", step: int = 0):
        self.encoder, self.step = encoder, step
        self.vector: np.ndarray | None = None

    def copy(self) -> "ControlTracker":
        out = ControlTracker(self.encoder, self.step)
        out.vector = self.vector
        return out

    def push(self, event) -> np.ndarray:
        if event.event_type == PerformanceEvent.TIME_SHIFT:
            self.step += event.event_value
        enc = self.encoder
        v = np.zeros(enc.input_size, np.float32)
        v[: enc.control_size] = enc.schedule.vector(self.step)
        v[enc.control_size + enc.target._index(event)] = 1.0
        self.vector = v
        return v

    def _vector(self) -> np.ndarray:
        assert self.vector is not None
        return self.vector


class ConditionedEncoder:
    """The beam search's encoder for a conditioned config (one-hot performance events after the controls)."""

    lookback = False
    one_hot = False

    def __init__(self, config: PerformanceConfig, schedule: ControlSchedule):
        self.target = InputEncoder(config.target_encoder())
        self.schedule = schedule
        self.control_size = config.control_encoder().input_size
        self.input_size = self.control_size + self.target.input_size
        self.num_classes = self.target.num_classes

    def tracker(self, events) -> ControlTracker:
        tracker = ControlTracker(self)
        for e in events:
            tracker.push(e)
        return tracker

    def full(self, events) -> np.ndarray:
        tracker = ControlTracker(self)
        return np.stack([tracker.push(e) for e in events])

    def last(self, batch, trackers=None) -> np.ndarray:
        if trackers is not None and all(t is not None for t in trackers):
            return np.stack([t._vector() for t in trackers])
        return np.stack([self.full(events)[-1] for events in batch])

    def labels(self, events) -> list:
        return self.target.labels(events)

    def to_event(self, class_index: int, events):
        return self.target.to_event(class_index, events)


def make_encoder(config: PerformanceConfig, schedule: ControlSchedule | None):
    """The beam search's encoder: note-seq's own for unconditioned configs, else :class:`ConditionedEncoder`."""
    if config.controls:
        assert schedule is not None
        return ConditionedEncoder(config, schedule)
    return InputEncoder(config.target_encoder())
