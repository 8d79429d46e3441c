"""Magenta's PerformanceRNN configurations (``performance_model.default_configs``): the event encoding,
the velocity bins and the control signals each one conditions on, built from note-seq's own classes so
that inputs and labels are Magenta's by construction."""

from dataclasses import dataclass

from note_seq import encoder_decoder as ed
from note_seq import performance_controls as pc
from note_seq.performance_encoder_decoder import (
    ModuloPerformanceEventSequenceEncoderDecoder,
    PerformanceOneHotEncoding,
)

STEPS_PER_SECOND = 100  # note_seq.DEFAULT_STEPS_PER_SECOND: 10 ms time steps
MAX_NOTE_DURATION_SECONDS = 5.0  # performance_sequence_generator turns off notes held longer
DEFAULT_NOTE_DENSITY = pc.DEFAULT_NOTE_DENSITY  # 15 notes per second: the generator's RNN-steps estimate

DENSITY, PITCH = "notes_per_second", "pitch_class_histogram"


def _control(name: str):
    if name == DENSITY:
        return pc.NoteDensityPerformanceControlSignal(
            window_size_seconds=3.0, density_bin_ranges=[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0]
        )
    return pc.PitchHistogramPerformanceControlSignal(window_size_seconds=5.0)


@dataclass(frozen=True)
class PerformanceConfig:
    name: str
    num_velocity_bins: int
    modulo: bool = False  # ModuloPerformanceEventSequenceEncoderDecoder instead of one-hot inputs
    controls: tuple = ()  # control signal names, in Magenta's order
    optional: bool = False  # a disable-conditioning flag leads the control inputs

    def target_encoder(self):
        if self.modulo:
            return ModuloPerformanceEventSequenceEncoderDecoder(num_velocity_bins=self.num_velocity_bins)
        return ed.OneHotEventSequenceEncoderDecoder(PerformanceOneHotEncoding(num_velocity_bins=self.num_velocity_bins))

    def control_signals(self) -> list:
        return [_control(n) for n in self.controls]

    def control_encoder(self):
        """note-seq's encoder of one control event (a tuple of the controls' values; with optional
        conditioning ``(disable, values)``), or None for an unconditioned config."""
        if not self.controls:
            return None
        encoder = ed.MultipleEventSequenceEncoder([c.encoder for c in self.control_signals()])
        return ed.OptionalEventSequenceEncoder(encoder) if self.optional else encoder

    @property
    def input_size(self) -> int:
        control = self.control_encoder()
        return self.target_encoder().input_size + (control.input_size if control else 0)

    @property
    def num_classes(self) -> int:
        return self.target_encoder().num_classes


CONFIGS = {
    c.name: c
    for c in (
        PerformanceConfig("performance", 0),
        PerformanceConfig("performance_with_dynamics", 32),
        PerformanceConfig("performance_with_dynamics_and_modulo_encoding", 32, modulo=True),
        PerformanceConfig("density_conditioned_performance_with_dynamics", 32, controls=(DENSITY,)),
        PerformanceConfig("pitch_conditioned_performance_with_dynamics", 32, controls=(PITCH,)),
        PerformanceConfig("multiconditioned_performance_with_dynamics", 32, controls=(DENSITY, PITCH)),
        PerformanceConfig(
            "optional_multiconditioned_performance_with_dynamics", 32, controls=(DENSITY, PITCH), optional=True
        ),
    )
}
CONFIG_NAMES = tuple(CONFIGS)
