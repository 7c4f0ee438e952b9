"""Synthetic music styles and the pure-numpy renderer of one clip.

A :class:`Style` describes a genre the way a musician would: tempo range, meter and swing, drum
patterns, harmony (scales, progressions, chord kinds), the instruments that play chords, bass and
lead lines (each a :class:`Layer` with its rhythm, timbre, register and effects), and the production
(reverb, brightness, dynamics, compression, noise).  :func:`render_clip` draws one clip from a
style with its own key, tempo, instrument mix, gains, effects and noise, so clips of one style vary
and neighbouring styles overlap, as real genres do.

Everything is plain numpy/scipy and deterministic given the seed.  Building blocks:

* oscillators and envelopes (sine, naive saw/square, additive, FM, detuned pads),
* Karplus-Strong plucked strings (block-recursive, vectorised per period),
* synthesised drums (kick with pitch sweep, snare/clap/hats/ride/crash/shaker/rim from filtered noise
  and inharmonic partials),
* effects: Butterworth filters, ``tanh`` distortion and compression, a noise-tail convolution
  reverb, dynamics envelopes, noise floor and vinyl crackle.

Samples are float32 mono in [-1, 1]; times are in seconds; pitches are MIDI note numbers.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Mapping

import numpy as np
import scipy.signal

__all__ = [
    "Layer",
    "Style",
    "STYLES",
    "STYLE_NAMES",
    "SCALES",
    "TIMBRES",
    "KITS",
    "render_clip",
    "render_kit",
    "render_voice",
    "karplus_strong",
    "reverb",
]

#: Scales as semitone offsets from the key's root.
SCALES: dict[str, tuple[int, ...]] = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "harmonic_minor": (0, 2, 3, 5, 7, 8, 11),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
    "lydian": (0, 2, 4, 6, 7, 9, 11),
    "phrygian": (0, 1, 3, 5, 7, 8, 10),
    "pentatonic_major": (0, 2, 4, 7, 9),
    "pentatonic_minor": (0, 3, 5, 7, 10),
    "blues": (0, 3, 5, 6, 7, 10),
}

#: Drum pattern velocity characters: accent, normal, ghost; any other character is a rest.
_VELOCITY = {"X": 1.0, "x": 0.75, "o": 0.35}

_CHORD_KINDS = ("triad", "seventh", "power", "sus2")


@dataclasses.dataclass(frozen=True)
class Layer:
    """One instrument part of a style: what it plays, how, with which sound.

    Attributes
    ----------
    role : str
        ``"chords"``, ``"bass"`` or ``"lead"``: chooses the register and the note source.
    rhythms : tuple of str
        Rhythm generators, one drawn per clip (see ``_RHYTHMS``).
    timbres : tuple of str
        Instrument timbres, one drawn per clip (keys of :data:`TIMBRES`).
    probability : float
        Chance the layer plays in a clip.
    level : (float, float)
        Range of the layer's mix gain.
    octave : int
        Register shift in octaves from the role's home register.
    drive : (float, float)
        Range of the ``tanh`` distortion drive (0 is clean).
    cutoff : (float, float)
        Range of the layer's low-pass cutoff in Hz.
    density : (float, float)
        Range of the note probability per step for generated lines (lead, stabs, riffs).
    """

    role: str
    rhythms: tuple[str, ...]
    timbres: tuple[str, ...]
    probability: float = 1.0
    level: tuple[float, float] = (0.6, 1.0)
    octave: int = 0
    drive: tuple[float, float] = (0.0, 0.0)
    cutoff: tuple[float, float] = (3000.0, 9000.0)
    density: tuple[float, float] = (0.3, 0.6)


@dataclasses.dataclass(frozen=True)
class Style:
    """A genre-like style: the distributions every clip of it is drawn from.

    Attributes
    ----------
    name : str
        Label (folder name in the GTZAN layout).
    description : str
        One line for humans.
    tempo : (float, float)
        Tempo range in beats per minute.
    meters : tuple of int
        Beats per bar, one drawn per clip.
    steps_per_beat : int
        Grid resolution: 2 (eighths), 3 (triplets: shuffle and swing feel) or 4 (sixteenths).
    swing : (float, float)
        Delay of every off-beat step as a fraction of a step (0 is straight).
    scales : tuple of (str, str)
        ``(chord scale, lead scale)`` pairs, one drawn per clip.
    progressions : tuple of tuple of int
        Chord roots as 0-based scale degrees, one progression drawn per clip.
    chord_kinds : tuple of str
        ``triad``, ``seventh``, ``power`` or ``sus2``.
    bars_per_chord : tuple of int
        How long each chord lasts, one drawn per clip.
    layers : tuple of Layer
        The instrument parts.
    kits : tuple of str
        Drum kits (keys of :data:`KITS`), one drawn per clip; empty for no drums.
    drum_patterns : mapping of int to tuple of mapping of str to str
        Per meter, alternative one-bar patterns ``{drum: steps}`` with ``meter * steps_per_beat``
        characters each (``X`` accent, ``x`` normal, ``o`` ghost, anything else a rest).
    drum_probability : float
        Chance that drums play in a clip.
    drum_level : (float, float)
        Range of the drum bus gain.
    reverb_seconds, reverb_mix : (float, float)
        Ranges of the reverb decay time (to -60 dB) and wet fraction.
    brightness : (float, float)
        Range of the master low-pass cutoff in Hz.
    dynamics : tuple of str
        Loudness shapes over the clip: ``flat``, ``swell``, ``crescendo``, ``decrescendo``.
    compression : (float, float)
        Range of the master ``tanh`` drive (near 0 is transparent, 4 is squashed).
    noise_db : (float, float)
        Range of the noise floor level in dB full scale.
    crackle : float
        Chance of vinyl crackle.
    humanize_ms : (float, float)
        Range of the timing jitter standard deviation in milliseconds.
    """

    name: str
    description: str
    tempo: tuple[float, float]
    meters: tuple[int, ...]
    steps_per_beat: int
    swing: tuple[float, float]
    scales: tuple[tuple[str, str], ...]
    progressions: tuple[tuple[int, ...], ...]
    chord_kinds: tuple[str, ...]
    bars_per_chord: tuple[int, ...]
    layers: tuple[Layer, ...]
    kits: tuple[str, ...] = ()
    drum_patterns: Mapping[int, tuple[Mapping[str, str], ...]] = dataclasses.field(default_factory=dict)
    drum_probability: float = 1.0
    drum_level: tuple[float, float] = (0.5, 0.9)
    reverb_seconds: tuple[float, float] = (0.4, 1.2)
    reverb_mix: tuple[float, float] = (0.05, 0.25)
    brightness: tuple[float, float] = (5000.0, 10000.0)
    dynamics: tuple[str, ...] = ("flat",)
    compression: tuple[float, float] = (0.3, 1.5)
    noise_db: tuple[float, float] = (-75.0, -45.0)
    crackle: float = 0.0
    humanize_ms: tuple[float, float] = (2.0, 8.0)

    def __post_init__(self) -> None:
        problems = []
        for meter, patterns in self.drum_patterns.items():
            for pattern in patterns:
                for drum, steps in pattern.items():
                    if len(steps) != meter * self.steps_per_beat:
                        problems.append(f"{drum} pattern {steps!r} is not {meter}x{self.steps_per_beat} steps")
                    if drum not in _DRUMS:
                        problems.append(f"unknown drum {drum!r}")
        if self.kits and not all(m in self.drum_patterns for m in self.meters):
            problems.append("every meter needs drum patterns when the style has kits")
        for chord_scale, lead_scale in self.scales:
            if chord_scale not in SCALES or lead_scale not in SCALES:
                problems.append(f"unknown scale in {(chord_scale, lead_scale)}")
        for layer in self.layers:
            problems += [f"unknown rhythm {r!r}" for r in layer.rhythms if r not in _RHYTHMS]
            problems += [f"unknown timbre {t!r}" for t in layer.timbres if t not in TIMBRES]
            if layer.role not in _HOME:
                problems.append(f"unknown role {layer.role!r}")
        problems += [f"unknown kit {k!r}" for k in self.kits if k not in KITS]
        problems += [f"unknown chord kind {k!r}" for k in self.chord_kinds if k not in _CHORD_KINDS]
        if problems:
            raise ValueError(f"style {self.name!r}: " + "; ".join(problems))


# --------------------------------------------------------------------------------------------
# Signal building blocks


def midi_to_hz(midi: float | np.ndarray) -> float | np.ndarray:
    """Frequency in Hz of a MIDI note number (A4 = 69 = 440 Hz)."""
    return 440.0 * 2.0 ** ((np.asarray(midi, dtype=np.float64) - 69.0) / 12.0)


def _envelope(n_gate: int, n_total: int, *, sr: int, attack: float, decay: float, sustain: float,
              release: float) -> np.ndarray:
    """ADSR-like envelope, shape ``(n_total,)``: linear attack, exponential decay and release."""
    n_attack = min(n_total, max(1, int(attack * sr)))
    n_hold = min(n_gate, n_total)
    env = np.empty(n_total)
    env[:n_attack] = np.arange(n_attack) / n_attack
    if n_hold > n_attack:
        env[n_attack:n_hold] = sustain + (1.0 - sustain) * np.exp(np.arange(n_hold - n_attack) * (-1.0 / (decay * sr)))
    if n_hold < n_total:
        level = env[n_hold - 1] if n_hold > 0 else 0.0
        env[n_hold:] = level * np.exp(np.arange(n_total - n_hold) * (-1.0 / (max(release, 1e-3) * sr)))
    return env


def _tail(release: float, sr: int) -> int:
    return int(4.0 * release * sr)


def _saw(freq: float | np.ndarray, t: np.ndarray, phase: float = 0.0) -> np.ndarray:
    return 2.0 * np.mod(freq * t + phase, 1.0) - 1.0


def _additive(freq: float, t: np.ndarray, amps: np.ndarray, *, sr: int, vibrato: float = 0.0,
              rate: float = 5.5, stretch: float = 0.0, decays: np.ndarray | None = None) -> np.ndarray:
    """Sum of partials ``k * freq * sqrt(1 + stretch k^2)`` below Nyquist, with optional vibrato.

    Harmonic partials without their own decays are read from a one-period wavetable (one lookup per
    sample however many partials); stretched or individually decaying partials are summed directly.
    """
    n_partials = min(len(amps), int(0.45 * sr / freq))
    amps = np.asarray(amps[: max(n_partials, 1)], dtype=np.float64)
    cycles = freq * t
    if vibrato:
        cycles = cycles + (vibrato * freq / (2 * np.pi * rate)) * np.sin(2 * np.pi * rate * t)
    if stretch == 0.0 and decays is None:
        table = _wavetable(tuple(np.round(amps, 6)))
        index = (np.mod(cycles, 1.0) * _TABLE_SIZE).astype(np.int64)
        return table[index]
    out = np.zeros_like(t)
    for k, a in enumerate(amps, start=1):
        ratio = k * np.sqrt(1.0 + stretch * k * k)
        if ratio * freq >= 0.45 * sr:
            break
        partial = a * np.sin(2 * np.pi * ratio * cycles)
        if decays is not None:
            partial *= np.exp(-t / decays[k - 1])
        out += partial
    return out


_TABLE_SIZE = 4096


@functools.lru_cache(maxsize=128)
def _wavetable(amps: tuple[float, ...]) -> np.ndarray:
    """One period of ``sum_k amps[k-1] sin(2 pi k x)``, sampled at ``_TABLE_SIZE`` points (+1 guard)."""
    x = np.arange(_TABLE_SIZE + 1) / _TABLE_SIZE
    return sum(a * np.sin(2 * np.pi * k * x) for k, a in enumerate(amps, start=1))


def karplus_strong(freq: float, n: int, *, sr: int, rng: np.random.Generator, decay: float = 1.5,
                   brightness: float = 0.7) -> np.ndarray:
    """Plucked string by the Karplus-Strong algorithm.

    Parameters
    ----------
    freq : float
        Fundamental in Hz.
    n : int
        Output length in samples.
    sr : int
        Sampling rate in Hz.
    rng : np.random.Generator
        Source of the excitation noise burst.
    decay : float
        Time in seconds for the string to fall by 60 dB.
    brightness : float
        0..1; lower values low-pass the excitation for a darker, softer pluck.

    Returns
    -------
    np.ndarray, float64, shape (n,)

    Notes
    -----
    The recursion ``y[i] = g (y[i-P] + y[i-P-1]) / 2`` only looks one period back, so it is computed
    one period-long block at a time (``n / P`` numpy operations instead of ``n`` Python steps).
    """
    period = max(2, int(round(sr / freq - 0.5)))
    burst = rng.uniform(-1.0, 1.0, period + 1)
    for _ in range(int(round((1.0 - brightness) * 6))):
        burst = 0.5 * (burst + np.roll(burst, 1))
    burst -= burst.mean()
    y = np.zeros(n + period + 1)
    y[: period + 1] = burst
    g = 10.0 ** (-3.0 / (decay * freq))  # per-period loss for -60 dB after `decay` seconds
    for start in range(period + 1, len(y), period):
        end = min(start + period, len(y))
        y[start:end] = g * 0.5 * (y[start - period : end - period] + y[start - period - 1 : end - period - 1])
    return y[:n]


@functools.lru_cache(maxsize=256)
def _sos(kind: str, cutoff: float | tuple[float, float], sr: int, order: int) -> np.ndarray:
    nyq = sr / 2.0
    if isinstance(cutoff, tuple):
        wn = (max(cutoff[0], 10.0) / nyq, min(cutoff[1], 0.95 * nyq) / nyq)
    else:
        wn = min(max(cutoff, 10.0), 0.95 * nyq) / nyq
    return scipy.signal.butter(order, wn, btype=kind, output="sos")


def _filter(y: np.ndarray, kind: str, cutoff: float | tuple[float, float], *, sr: int, order: int = 2) -> np.ndarray:
    """Butterworth ``lowpass``/``highpass``/``bandpass`` (cutoffs in Hz, clipped below Nyquist)."""
    if kind == "lowpass" and cutoff >= 0.95 * sr / 2:
        return y
    return scipy.signal.sosfilt(_sos(kind, cutoff, sr, order), y)


def _distort(y: np.ndarray, drive: float) -> np.ndarray:
    """``tanh`` waveshaper normalised so that full scale stays full scale; drive 0 is identity."""
    if drive <= 0:
        return y
    return np.tanh(drive * y) / np.tanh(drive)


def reverb(y: np.ndarray, *, sr: int, rng: np.random.Generator, seconds: float, mix: float,
           darkness: float = 4000.0) -> np.ndarray:
    """Convolution reverb with an exponentially decaying, low-passed noise tail.

    Parameters
    ----------
    y : np.ndarray, shape (n,)
        Dry signal.
    sr : int
        Sampling rate in Hz.
    rng : np.random.Generator
        Source of the impulse response noise.
    seconds : float
        Decay time to -60 dB in seconds.
    mix : float
        Wet fraction in [0, 1].
    darkness : float
        Low-pass cutoff of the tail in Hz.

    Returns
    -------
    np.ndarray, shape (n,)
        ``(1 - mix) * y + mix * wet``, the wet part scaled to the dry RMS.
    """
    if mix <= 0 or seconds <= 0:
        return y
    n_ir = max(16, int(seconds * sr))
    t = np.arange(n_ir) / sr
    ir = rng.standard_normal(n_ir) * np.exp(-6.9 * t / seconds)
    ir = _filter(ir, "lowpass", darkness, sr=sr)
    pre = int(rng.uniform(0.01, 0.04) * sr)
    ir = np.concatenate([np.zeros(pre), ir])
    wet = scipy.signal.oaconvolve(y, ir)[: len(y)]
    dry_rms = np.sqrt(np.mean(y * y)) + 1e-12
    wet *= dry_rms / (np.sqrt(np.mean(wet * wet)) + 1e-12)
    return (1.0 - mix) * y + mix * wet


# --------------------------------------------------------------------------------------------
# Instrument timbres: (freq, n_gate, sr, rng) -> samples (gate plus release tail)

TimbreFn = Callable[[float, int, int, np.random.Generator], np.ndarray]


def _t(n: int, sr: int) -> np.ndarray:
    return np.arange(n) / sr


def _sine(freq, n_gate, sr, rng):
    n = n_gate + _tail(0.05, sr)
    t = _t(n, sr)
    y = np.sin(2 * np.pi * freq * t) + 0.15 * np.sin(4 * np.pi * freq * t)
    return y * _envelope(n_gate, n, sr=sr, attack=0.01, decay=0.4, sustain=0.7, release=0.05)


def _saw_voice(freq, n_gate, sr, rng):
    n = n_gate + _tail(0.04, sr)
    t = _t(n, sr)
    y = 0.5 * (_saw(freq, t) + _saw(freq * 1.003, t, 0.3))
    return y * _envelope(n_gate, n, sr=sr, attack=0.005, decay=0.25, sustain=0.6, release=0.04)


def _square(freq, n_gate, sr, rng):
    n = n_gate + _tail(0.04, sr)
    t = _t(n, sr)
    y = np.sign(np.sin(2 * np.pi * freq * t)) * 0.6
    return y * _envelope(n_gate, n, sr=sr, attack=0.005, decay=0.3, sustain=0.7, release=0.04)


def _sub808(freq, n_gate, sr, rng):
    n = n_gate + _tail(0.15, sr)
    t = _t(n, sr)
    f = freq * (1.0 + 0.8 * np.exp(-t / 0.02))
    y = np.tanh(1.5 * np.sin(2 * np.pi * np.cumsum(f) / sr))
    return y * _envelope(n_gate, n, sr=sr, attack=0.002, decay=0.6, sustain=0.3, release=0.15)


def _pluck(freq, n_gate, sr, rng):
    n = n_gate + _tail(0.08, sr)
    y = karplus_strong(freq, n, sr=sr, rng=rng, decay=rng.uniform(0.8, 2.5), brightness=rng.uniform(0.5, 0.9))
    return y * _envelope(n_gate, n, sr=sr, attack=0.001, decay=10.0, sustain=1.0, release=0.08)


def _pluck_bass(freq, n_gate, sr, rng):
    n = n_gate + _tail(0.06, sr)
    y = karplus_strong(freq, n, sr=sr, rng=rng, decay=rng.uniform(0.6, 1.5), brightness=0.3)
    return y * _envelope(n_gate, n, sr=sr, attack=0.001, decay=10.0, sustain=1.0, release=0.06)


def _guitar(freq, n_gate, sr, rng):
    """Sustained string for distortion: a long-decay pluck with a little saw for body."""
    n = n_gate + _tail(0.05, sr)
    t = _t(n, sr)
    y = karplus_strong(freq, n, sr=sr, rng=rng, decay=4.0, brightness=0.9) + 0.3 * _saw(freq, t)
    return y * _envelope(n_gate, n, sr=sr, attack=0.002, decay=10.0, sustain=1.0, release=0.05)


def _epiano(freq, n_gate, sr, rng):
    n = n_gate + _tail(0.15, sr)
    t = _t(n, sr)
    index = 1.8 * np.exp(-t / 0.25) + 0.2
    y = np.sin(2 * np.pi * freq * t + index * np.sin(2 * np.pi * freq * t))
    y += 0.15 * np.exp(-t / 0.03) * np.sin(2 * np.pi * min(freq * 14.0, 0.4 * sr) * t)
    return y * _envelope(n_gate, n, sr=sr, attack=0.002, decay=0.8, sustain=0.3, release=0.15)


def _bell(freq, n_gate, sr, rng):
    n = n_gate + _tail(0.6, sr)
    t = _t(n, sr)
    index = 3.0 * np.exp(-t / 0.5)
    y = np.sin(2 * np.pi * freq * t + index * np.sin(2 * np.pi * 3.5 * freq * t))
    return y * _envelope(n_gate, n, sr=sr, attack=0.002, decay=1.2, sustain=0.0, release=0.6)


def _organ(freq, n_gate, sr, rng):
    n = n_gate + _tail(0.03, sr)
    t = _t(n, sr)
    amps = np.array([1.0, 0.8, 0.6, 0.5, 0.0, 0.35, 0.0, 0.3])
    y = _additive(freq, t, amps, sr=sr, vibrato=0.004, rate=6.5) / 2.5
    return y * _envelope(n_gate, n, sr=sr, attack=0.01, decay=1.0, sustain=1.0, release=0.03)


def _pad(freq, n_gate, sr, rng):
    n = n_gate + _tail(0.4, sr)
    t = _t(n, sr)
    y = (_saw(freq, t) + _saw(freq * 1.006, t, 0.4) + _saw(freq * 0.994, t, 0.7)) / 3.0
    return y * _envelope(n_gate, n, sr=sr, attack=rng.uniform(0.2, 0.6), decay=2.0, sustain=0.8, release=0.4)


def _strings(freq, n_gate, sr, rng):
    n = n_gate + _tail(0.25, sr)
    t = _t(n, sr)
    amps = 1.0 / np.arange(1, 13)
    y = _additive(freq, t, amps, sr=sr, vibrato=0.006, rate=rng.uniform(4.5, 6.0)) / 2.0
    return y * _envelope(n_gate, n, sr=sr, attack=rng.uniform(0.08, 0.25), decay=2.0, sustain=0.9, release=0.25)


def _piano(freq, n_gate, sr, rng):
    n = n_gate + _tail(0.2, sr)
    t = _t(n, sr)
    k = np.arange(1, 11)
    bright = _additive(freq, t, 1.0 / k ** 1.1, sr=sr)  # upper partials die first: a bright layer
    dull = _additive(freq, t, np.array([1.0, 0.3, 0.1]), sr=sr)  # decays fast over a dull one
    y = bright * np.exp(-t / 0.25) + dull * np.exp(-t / 1.8)
    n_hammer = min(n, int(0.05 * sr))  # a short noise thump at the hammer strike
    y[:n_hammer] += 0.2 * np.exp(-t[:n_hammer] / 0.01) * rng.standard_normal(n_hammer)
    return y * _envelope(n_gate, n, sr=sr, attack=0.002, decay=10.0, sustain=1.0, release=0.2)


def _flute(freq, n_gate, sr, rng):
    n = n_gate + _tail(0.08, sr)
    t = _t(n, sr)
    y = _additive(freq, t, np.array([1.0, 0.25, 0.1]), sr=sr, vibrato=0.008, rate=5.0)
    y += 0.08 * rng.standard_normal(n)
    return y * _envelope(n_gate, n, sr=sr, attack=0.07, decay=1.0, sustain=0.85, release=0.08)


#: Instrument timbres by name.
TIMBRES: dict[str, TimbreFn] = {
    "sine": _sine,
    "saw": _saw_voice,
    "square": _square,
    "sub808": _sub808,
    "pluck": _pluck,
    "pluck_bass": _pluck_bass,
    "guitar": _guitar,
    "epiano": _epiano,
    "bell": _bell,
    "organ": _organ,
    "pad": _pad,
    "strings": _strings,
    "piano": _piano,
    "flute": _flute,
}


def render_voice(timbre: str, midi: float, gate: float, *, sr: int, rng: np.random.Generator) -> np.ndarray:
    """One note of ``timbre``: ``gate`` seconds held plus its release tail, float64, peak ~1."""
    return TIMBRES[timbre](float(midi_to_hz(midi)), max(1, int(gate * sr)), sr, rng)


# --------------------------------------------------------------------------------------------
# Drums

_DRUMS = ("kick", "snare", "clap", "rim", "hat", "openhat", "ride", "crash", "shaker", "tom")


def _noise_hit(n: int, sr: int, rng: np.random.Generator, *, band: tuple[float, float] | float, kind: str,
               decay: float, attack: float = 0.0005) -> np.ndarray:
    y = _filter(rng.standard_normal(n), kind, band, sr=sr, order=2)
    t = _t(n, sr)
    env = np.minimum(t / attack, 1.0) * np.exp(-t / decay)
    return y * env / (np.abs(y).max() + 1e-12)


def _kick(sr, rng, *, f0, f1, sweep, decay, click):
    n = int(decay * 5 * sr)
    t = _t(n, sr)
    f = f1 + (f0 - f1) * np.exp(-t / sweep)
    y = np.sin(2 * np.pi * np.cumsum(f) / sr) * np.exp(-t / decay)
    y += click * np.exp(-t / 0.003) * rng.standard_normal(n)
    return np.tanh(1.5 * y)


def _snare(sr, rng, *, tone, decay, snappy):
    n = int(decay * 5 * sr)
    t = _t(n, sr)
    body = np.sin(2 * np.pi * tone * t) * np.exp(-t / 0.05)
    return 0.5 * body + snappy * _noise_hit(n, sr, rng, band=(1500.0, 9000.0), kind="bandpass", decay=decay)


def _metal(sr, rng, *, decay, n_seconds, base):
    """Cymbal: inharmonic square partials plus high-passed noise."""
    n = int(n_seconds * sr)
    t = _t(n, sr)
    ratios = np.array([2.0, 3.0, 4.16, 5.43, 6.79, 8.21])
    y = sum(np.sign(np.sin(2 * np.pi * base * r * t + r)) for r in ratios) / len(ratios)
    y = 0.5 * y + rng.standard_normal(n)
    y = _filter(y, "highpass", 6000.0, sr=sr, order=2)
    return y * np.exp(-t / decay) / (np.abs(y).max() + 1e-12)


def _clap(sr, rng, *, decay):
    n = int(decay * 6 * sr)
    out = np.zeros(n)
    for k, off in enumerate((0.0, 0.011, 0.022)):
        start = int(off * sr)
        out[start:] += (0.6 if k < 2 else 1.0) * _noise_hit(n - start, sr, rng, band=(900.0, 5000.0),
                                                             kind="bandpass", decay=0.008 if k < 2 else decay)
    return out


def render_kit(kind: str, *, sr: int, rng: np.random.Generator,
               drums: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
    """Synthesise a drum kit, tuned per call by ``rng``.

    Parameters
    ----------
    kind : str
        One of :data:`KITS`.
    sr : int
        Sampling rate in Hz.
    rng : np.random.Generator
        Source of tunings and noise.
    drums : tuple of str, optional
        Only these drums (default: all of them); a kit costs a few ms per drum.

    Returns
    -------
    dict of str to np.ndarray
        ``{drum name: samples}``, float64, peak about 1.
    """
    u = rng.uniform
    tight = kind in ("electronic", "808")

    def kick() -> np.ndarray:
        if kind == "808":
            return _kick(sr, rng, f0=u(90, 130), f1=u(38, 50), sweep=0.04, decay=u(0.3, 0.7), click=0.05)
        if kind == "electronic":
            return _kick(sr, rng, f0=u(150, 220), f1=u(45, 58), sweep=0.025, decay=u(0.12, 0.25), click=0.2)
        if kind == "brush":
            return 0.6 * _kick(sr, rng, f0=u(90, 120), f1=u(50, 65), sweep=0.02, decay=u(0.08, 0.15), click=0.05)
        return _kick(sr, rng, f0=u(110, 170), f1=u(50, 70), sweep=0.03, decay=u(0.08, 0.2), click=0.3)

    def snare() -> np.ndarray:
        if kind == "brush":
            return _noise_hit(int(0.5 * sr), sr, rng, band=(800.0, 6000.0), kind="bandpass", decay=u(0.08, 0.18),
                              attack=0.01)
        if kind == "hand":  # a bongo-like drum instead of a snare
            return _kick(sr, rng, f0=u(350, 450), f1=u(250, 320), sweep=0.01, decay=0.08, click=0.2)
        return _snare(sr, rng, tone=u(160, 240), decay=u(0.12, 0.25), snappy=0.8)

    def rim() -> np.ndarray:
        t = _t(int(0.06 * sr), sr)
        return np.sin(2 * np.pi * u(700, 1100) * t) * np.exp(-t / 0.01)

    def ride() -> np.ndarray:
        t = _t(int(2.5 * sr), sr)
        bell = _filter(np.sin(2 * np.pi * u(2500, 3500) * t), "lowpass", 9000.0, sr=sr) * np.exp(-t / 0.4)
        return 0.6 * _metal(sr, rng, decay=u(0.6, 1.2), n_seconds=2.5, base=u(350, 500)) + 0.3 * bell

    makers: dict[str, Callable[[], np.ndarray]] = {
        "kick": kick,
        "snare": snare,
        "clap": lambda: _clap(sr, rng, decay=u(0.08, 0.2)),
        "rim": rim,
        "hat": lambda: _metal(sr, rng, decay=u(0.02, 0.04) if tight else u(0.03, 0.06), n_seconds=0.25,
                              base=u(300, 420)),
        "openhat": lambda: _metal(sr, rng, decay=u(0.15, 0.35), n_seconds=1.0, base=u(300, 420)),
        "ride": ride,
        "crash": lambda: _metal(sr, rng, decay=u(0.8, 1.6), n_seconds=3.0, base=u(250, 400)),
        "shaker": lambda: _noise_hit(int(0.15 * sr), sr, rng, band=(4000.0, 10000.0), kind="bandpass",
                                     decay=0.03, attack=0.015),
        "tom": lambda: _kick(sr, rng, f0=u(160, 220), f1=u(90, 130), sweep=0.05, decay=u(0.15, 0.3), click=0.1),
    }
    return {name: makers[name]() for name in (drums or _DRUMS)}


#: Drum kit kinds.
KITS = ("acoustic", "rock", "electronic", "808", "brush", "hand")

_DRUM_GAIN = {"kick": 1.0, "snare": 0.8, "clap": 0.7, "rim": 0.5, "hat": 0.35, "openhat": 0.35, "ride": 0.35,
              "crash": 0.4, "shaker": 0.3, "tom": 0.6}


# --------------------------------------------------------------------------------------------
# Clip context and rhythm generators


@dataclasses.dataclass
class _Clip:
    """Everything drawn for one clip that the rhythm generators share."""

    sr: int
    n: int
    rng: np.random.Generator
    tempo: float
    meter: int
    spb: int
    swing: float
    offset: float
    n_bars: int
    key: int
    chord_scale: tuple[int, ...]
    lead_scale: tuple[int, ...]
    chord_degrees: list[int]
    chord_kind: str
    humanize: float
    kick_steps: list[int]

    @property
    def step(self) -> float:
        return 60.0 / self.tempo / self.spb

    @property
    def beat(self) -> float:
        return 60.0 / self.tempo

    @property
    def bar(self) -> float:
        return self.meter * self.beat

    @property
    def steps_per_bar(self) -> int:
        return self.meter * self.spb

    def time(self, bar: int, step: float) -> float:
        """Clip time in seconds of grid ``step`` of ``bar``, with swing and human timing."""
        swung = self.swing if (self.spb in (2, 4) and int(step) % 2 == 1) else 0.0
        jitter = self.rng.normal(0.0, self.humanize) if self.humanize else 0.0
        return bar * self.bar + (step + swung) * self.step - self.offset + jitter

    def chord_root(self, bar: int) -> int:
        """Scale degree of the chord root in ``bar``."""
        return self.chord_degrees[bar % len(self.chord_degrees)]

    def degree_midi(self, degree: int, *, scale: tuple[int, ...], base: int) -> int:
        octave, index = divmod(degree, len(scale))
        return base + self.key + 12 * octave + scale[index]

    def chord(self, bar: int, *, base: int) -> list[int]:
        """MIDI notes of the chord in ``bar`` voiced from ``base``."""
        d = self.chord_root(bar)
        root = self.degree_midi(d, scale=self.chord_scale, base=base)
        if self.chord_kind == "power":
            return [root, root + 7, root + 12]
        degrees = {"triad": (0, 2, 4), "seventh": (0, 2, 4, 6), "sus2": (0, 1, 4)}[self.chord_kind]
        return [self.degree_midi(d + k, scale=self.chord_scale, base=base) for k in degrees]

    def bass_root(self, bar: int, *, base: int) -> int:
        return self.degree_midi(self.chord_root(bar), scale=self.chord_scale, base=base)


Event = tuple[float, float, float, float]  # (time s, midi, gate s, velocity)


def _rh_sustain(c: _Clip, notes: Callable[[int], list[int]], density: float) -> list[Event]:
    out = []
    for bar in range(c.n_bars):
        out += [(c.time(bar, 0), m, c.bar * 0.98, 0.7) for m in notes(bar)]
    return out


def _rh_beats(c: _Clip, notes, density):
    out = []
    for bar in range(c.n_bars):
        for beat in range(c.meter):
            vel = 0.8 if beat == 0 else 0.6
            out += [(c.time(bar, beat * c.spb), m, c.beat * 0.8, vel) for m in notes(bar)]
    return out


def _rh_offbeat(c: _Clip, notes, density):
    gate = c.rng.uniform(0.08, 0.18)
    half = max(1, c.spb // 2)
    out = []
    for bar in range(c.n_bars):
        for beat in range(c.meter):
            out += [(c.time(bar, beat * c.spb + half), m, gate, 0.8) for m in notes(bar)]
    return out


def _bar_pattern(c: _Clip, density: float, *, always_first: bool = True) -> list[int]:
    hits = [s for s in range(c.steps_per_bar) if c.rng.random() < density]
    if always_first and 0 not in hits:
        hits.insert(0, 0)
    return hits


def _rh_stabs(c: _Clip, notes, density):
    pattern = _bar_pattern(c, density)
    gate = c.step * c.rng.uniform(0.8, 2.0)
    return [(c.time(bar, s), m, gate, 0.8) for bar in range(c.n_bars) for s in pattern for m in notes(bar)]


def _rh_strum(c: _Clip, notes, density):
    half = max(1, c.spb // 2)
    positions = [p for p in range(0, c.steps_per_bar, half) if p == 0 or c.rng.random() < max(density, 0.5)]
    spread = c.rng.uniform(0.008, 0.02)
    out = []
    for bar in range(c.n_bars):
        for i, p in enumerate(positions):
            nxt = positions[i + 1] if i + 1 < len(positions) else c.steps_per_bar
            gate = (nxt - p) * c.step
            chord = notes(bar) if i % 2 == 0 else notes(bar)[::-1]
            t0 = c.time(bar, p)
            out += [(t0 + k * spread, m, gate, 0.75 if p % c.spb == 0 else 0.55) for k, m in enumerate(chord)]
    return out


def _rh_arpeggio(c: _Clip, notes, density):
    shape = [(0, 1, 2, 1), (0, 1, 2, 3), (0, 2, 1, 2), (2, 1, 0, 1), (0, 1, 2, 3, 2, 1)][c.rng.integers(5)]
    every = 1 if c.spb <= 3 else int(c.rng.choice([1, 2]))
    out = []
    for bar in range(c.n_bars):
        chord = notes(bar)
        chord = chord + [chord[0] + 12]
        for i, s in enumerate(range(0, c.steps_per_bar, every)):
            out.append((c.time(bar, s), chord[shape[i % len(shape)] % len(chord)], c.step * every * 1.6, 0.6))
    return out


def _rh_chug(c: _Clip, notes, density):
    accents = set(_bar_pattern(c, 0.3))
    out = []
    for bar in range(c.n_bars):
        for s in range(c.steps_per_bar):
            accent = s in accents
            gate = c.step * (1.8 if accent else 0.5)
            out += [(c.time(bar, s), m, gate, 0.95 if accent else 0.6) for m in notes(bar)]
    return out


def _rh_comp(c: _Clip, notes, density):
    out = []
    for bar in range(c.n_bars):  # improvised: a new pattern every bar
        for s in _bar_pattern(c, density * 0.4, always_first=False):
            out += [(c.time(bar, s), m, c.rng.uniform(0.15, 0.5), c.rng.uniform(0.5, 0.8)) for m in notes(bar)]
    return out


def _rh_shuffle(c: _Clip, notes, density):
    """Blues guitar shuffle: root-fifth / root-sixth on the long-short triplet positions."""
    out = []
    for bar in range(c.n_bars):
        root = notes(bar)[0]
        for beat in range(c.meter):
            upper = root + (7 if beat % 2 == 0 else 9)
            for pos, vel in ((0, 0.8), (c.spb - 1, 0.55)):
                t = c.time(bar, beat * c.spb + pos)
                out += [(t, root, c.step * 1.5, vel), (t, upper, c.step * 1.5, vel)]
    return out


def _rh_pedal(c: _Clip, notes, density):
    return [(c.time(bar, 0), notes(bar)[0], c.bar * 0.98, 0.8) for bar in range(c.n_bars)]


def _rh_root8(c: _Clip, notes, density):
    half = max(1, c.spb // 2)
    return [(c.time(bar, s), notes(bar)[0], c.step * half * 0.85, 0.85 if s % c.spb == 0 else 0.65)
            for bar in range(c.n_bars) for s in range(0, c.steps_per_bar, half)]


def _rh_walking(c: _Clip, notes, density):
    out = []
    for bar in range(c.n_bars):
        root = notes(bar)[0]
        nxt = notes(bar + 1)[0]
        line = [root]
        for beat in range(1, c.meter):
            if beat == c.meter - 1:
                line.append(nxt + int(c.rng.choice([-1, 1, -2])))
            else:
                line.append(root + int(c.rng.choice([2, 3, 4, 5, 7, 9, 10, -2])))
        out += [(c.time(bar, b * c.spb), m, c.beat * 0.9, 0.75) for b, m in enumerate(line)]
    return out


def _rh_boogie(c: _Clip, notes, density):
    figure = (0, 4, 7, 9, 10, 9, 7, 4)
    out = []
    i = 0
    for bar in range(c.n_bars):
        root = notes(bar)[0]
        for beat in range(c.meter):
            for pos in (0, c.spb - 1):
                out.append((c.time(bar, beat * c.spb + pos), root + figure[i % 8], c.step * 1.4, 0.75))
                i += 1
    return out


def _rh_octave(c: _Clip, notes, density):
    half = max(1, c.spb // 2)
    offbeat_only = c.rng.random() < 0.5
    out = []
    for bar in range(c.n_bars):
        root = notes(bar)[0]
        for k, s in enumerate(range(0, c.steps_per_bar, half)):
            if offbeat_only and s % c.spb == 0:
                continue
            out.append((c.time(bar, s), root + (12 if k % 2 else 0), c.step * half * 0.7, 0.8))
    return out


def _rh_sub(c: _Clip, notes, density):
    hits = c.kick_steps or [0, c.steps_per_bar // 2]
    out = []
    for bar in range(c.n_bars):
        for i, s in enumerate(hits):
            nxt = hits[i + 1] if i + 1 < len(hits) else c.steps_per_bar + hits[0]
            out.append((c.time(bar, s), notes(bar)[0], (nxt - s) * c.step * 0.95, 0.9))
    return out


def _rh_riff(c: _Clip, notes, density):
    steps = _bar_pattern(c, density)
    intervals = [int(c.rng.choice([0, 0, 7, 12, 10, 3, 5])) for _ in steps]
    return [(c.time(bar, s), notes(bar)[0] + iv, c.step * 1.5, 0.85)
            for bar in range(c.n_bars) for s, iv in zip(steps, intervals)]


def _rh_motif(c: _Clip, notes, density):
    """A one- or two-bar melody in the lead scale, repeated with small variations."""
    length = int(c.rng.choice([1, 2])) * c.steps_per_bar
    steps = [s for s in range(length) if c.rng.random() < density] or [0]
    degree = int(c.rng.integers(0, len(c.lead_scale)))
    pitches = []
    for _ in steps:
        degree += int(c.rng.choice([-2, -1, -1, 0, 1, 1, 2, 3]))
        degree = int(np.clip(degree, -2, 2 * len(c.lead_scale)))
        pitches.append(degree)
    base = notes(0)[0] - c.key  # register of the layer, without the key
    out = []
    for start_bar in range(0, c.n_bars, length // c.steps_per_bar):
        for i, (s, d) in enumerate(zip(steps, pitches)):
            if c.rng.random() < 0.1:
                d += int(c.rng.choice([-1, 1]))
            nxt = steps[i + 1] if i + 1 < len(steps) else length
            bar, step = divmod(s, c.steps_per_bar)
            midi = c.degree_midi(d, scale=c.lead_scale, base=base)
            out.append((c.time(start_bar + bar, step), midi, (nxt - s) * c.step * 0.9, c.rng.uniform(0.6, 0.9)))
    return out


def _rh_long(c: _Clip, notes, density):
    """A slow melody: one lead-scale note every one or two beats, legato."""
    every = int(c.rng.choice([1, 2])) * c.spb
    degree = int(c.rng.integers(0, len(c.lead_scale)))
    base = notes(0)[0] - c.key
    out = []
    for bar in range(c.n_bars):
        for s in range(0, c.steps_per_bar, every):
            degree = int(np.clip(degree + int(c.rng.choice([-2, -1, 0, 1, 2])), -1, 2 * len(c.lead_scale)))
            out.append((c.time(bar, s), c.degree_midi(degree, scale=c.lead_scale, base=base), every * c.step, 0.7))
    return out


_RHYTHMS: dict[str, Callable[[_Clip, Callable[[int], list[int]], float], list[Event]]] = {
    "sustain": _rh_sustain,
    "beats": _rh_beats,
    "offbeat": _rh_offbeat,
    "stabs": _rh_stabs,
    "strum": _rh_strum,
    "arpeggio": _rh_arpeggio,
    "chug": _rh_chug,
    "comp": _rh_comp,
    "shuffle": _rh_shuffle,
    "pedal": _rh_pedal,
    "root8": _rh_root8,
    "walking": _rh_walking,
    "boogie": _rh_boogie,
    "octave": _rh_octave,
    "sub": _rh_sub,
    "riff": _rh_riff,
    "motif": _rh_motif,
    "long": _rh_long,
}

#: Home register (MIDI base added to the key) of each role.
_HOME = {"chords": 48, "bass": 36, "lead": 67}


# --------------------------------------------------------------------------------------------
# Mixing


def _place(out: np.ndarray, sound: np.ndarray, start: int, gain: float) -> None:
    """Add ``gain * sound`` into ``out`` starting at sample ``start`` (clipped at both ends)."""
    lo, hi = max(start, 0), min(start + len(sound), len(out))
    if hi > lo:
        out[lo:hi] += gain * sound[lo - start : hi - start]


def _render_events(c: _Clip, events: list[Event], timbre: str) -> np.ndarray:
    out = np.zeros(c.n)
    cache: dict[tuple[int, int], np.ndarray] = {}
    for t, midi, gate, vel in events:
        start = int(round(t * c.sr))
        key = (int(round(midi)), max(1, int(round(gate * c.sr / 512))))  # gates quantised to 512 samples
        if key not in cache:
            cache[key] = render_voice(timbre, key[0], key[1] * 512 / c.sr, sr=c.sr, rng=c.rng)
        _place(out, cache[key], start, vel)
    return out


def _render_layer(c: _Clip, layer: Layer) -> np.ndarray:
    rng = c.rng
    rhythm = layer.rhythms[rng.integers(len(layer.rhythms))]
    timbre = layer.timbres[rng.integers(len(layer.timbres))]
    density = rng.uniform(*layer.density)
    base = _HOME[layer.role] + 12 * layer.octave
    if layer.role == "chords":
        def notes(bar: int) -> list[int]:
            return c.chord(bar, base=base)
    elif layer.role == "bass":
        def notes(bar: int) -> list[int]:
            return [c.bass_root(bar, base=base)]
    else:
        def notes(bar: int) -> list[int]:
            return [base + c.key]
    y = _render_events(c, _RHYTHMS[rhythm](c, notes, density), timbre)
    peak = np.abs(y).max()
    if peak > 0:
        y /= peak
    y = _distort(y, rng.uniform(*layer.drive))
    return _filter(y, "lowpass", rng.uniform(*layer.cutoff), sr=c.sr)


def _render_drums(c: _Clip, kit: dict[str, np.ndarray], pattern: Mapping[str, str]) -> np.ndarray:
    rng = c.rng
    dropout = rng.uniform(0.0, 0.08)
    ghosts = rng.uniform(0.0, 0.1)
    fill_every = int(rng.choice([4, 8]))
    out = np.zeros(c.n)
    for bar in range(c.n_bars):
        for drum, steps in pattern.items():
            for s, ch in enumerate(steps):
                vel = _VELOCITY.get(ch, 0.0)
                if vel == 0.0 and drum in ("snare", "hat") and rng.random() < ghosts:
                    vel = 0.3
                if vel == 0.0 or rng.random() < dropout:
                    continue
                vel *= rng.uniform(0.85, 1.0)
                _place(out, kit[drum], int(round(c.time(bar, s) * c.sr)), vel * _DRUM_GAIN[drum])
        if bar % fill_every == fill_every - 1 and "snare" in pattern and rng.random() < 0.5:
            for s in range(c.steps_per_bar - c.spb, c.steps_per_bar):  # a short fill on the last beat
                _place(out, kit["tom" if s % 2 else "snare"], int(round(c.time(bar, s) * c.sr)), 0.6)
    return out / (np.abs(out).max() + 1e-12)


def _dynamics(kind: str, n: int, *, sr: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / sr
    if kind == "swell":
        return 0.65 + 0.35 * np.sin(2 * np.pi * t / rng.uniform(4.0, 10.0) + rng.uniform(0, 2 * np.pi))
    if kind == "crescendo":
        return np.linspace(rng.uniform(0.25, 0.6), 1.0, n)
    if kind == "decrescendo":
        return np.linspace(1.0, rng.uniform(0.25, 0.6), n)
    return np.ones(n)


def render_clip(style: str | Style, *, seconds: float, sample_rate: int,
                seed: int | np.random.SeedSequence | np.random.Generator) -> np.ndarray:
    """Render one clip of ``style``.

    Parameters
    ----------
    style : str or Style
        A name in :data:`STYLES` or a :class:`Style`.
    seconds : float
        Clip length in seconds.
    sample_rate : int
        Sampling rate in Hz (synthesis happens at this rate; 22050 matches the default features).
    seed : int, np.random.SeedSequence or np.random.Generator
        Everything random about the clip (key, tempo, parts, gains, effects, noise) comes from it.

    Returns
    -------
    np.ndarray, float32, shape (round(seconds * sample_rate),)
        Mono samples, peak at most 0.89 (-1 dBFS), DC removed, finite.
    """
    spec = STYLES[style] if isinstance(style, str) else style
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    sr = int(sample_rate)
    n = int(round(seconds * sr))
    if n <= 0:
        raise ValueError(f"seconds must give at least one sample, got {seconds}")
    # every draw from rng happens in this order, step by step: the same seed gives the same clip
    c, drums_on = _plan_clip(spec, rng=rng, seconds=seconds, sr=sr, n=n)
    mix = _play_parts(spec, c, drums_on=drums_on)
    mix = _master(mix, spec, rng=rng, sr=sr)
    noise = _background_noise(spec, rng=rng, n=n, sr=sr)
    return _finish(mix, noise, rng=rng, sr=sr)


def _plan_clip(spec: Style, *, rng: np.random.Generator, seconds: float, sr: int, n: int) -> tuple[_Clip, bool]:
    """Draw tempo, meter, key, scales, chord progression and feel; -> (the clip's plan, whether drums play)."""
    tempo = rng.uniform(*spec.tempo)
    meter = int(spec.meters[rng.integers(len(spec.meters))])
    chord_scale, lead_scale = spec.scales[rng.integers(len(spec.scales))]
    progression = list(spec.progressions[rng.integers(len(spec.progressions))])
    per = int(spec.bars_per_chord[rng.integers(len(spec.bars_per_chord))])
    bar_seconds = meter * 60.0 / tempo
    offset = rng.uniform(0.0, bar_seconds)
    start_bar = int(rng.integers(len(progression)))  # the excerpt starts anywhere in the song
    degrees = [progression[(start_bar + i // per) % len(progression)] for i in range(per * len(progression))]
    drums_on = bool(spec.kits) and rng.random() < spec.drum_probability
    c = _Clip(
        sr=sr, n=n, rng=rng, tempo=tempo, meter=meter, spb=spec.steps_per_beat,
        swing=rng.uniform(*spec.swing), offset=offset, n_bars=int(np.ceil((seconds + offset) / bar_seconds)) + 1,
        key=int(rng.integers(0, 12)), chord_scale=SCALES[chord_scale], lead_scale=SCALES[lead_scale],
        chord_degrees=degrees, chord_kind=spec.chord_kinds[rng.integers(len(spec.chord_kinds))],
        humanize=rng.uniform(*spec.humanize_ms) / 1000.0, kick_steps=[],
    )
    return c, drums_on


def _play_parts(spec: Style, c: _Clip, *, drums_on: bool) -> np.ndarray:
    """The drums (when on; their kick steps go to ``c.kick_steps``) and each layer that plays, mixed, float64 ``(n,)``."""
    rng, sr = c.rng, c.sr
    mix = np.zeros(c.n)
    if drums_on:
        kit_kind = spec.kits[rng.integers(len(spec.kits))]
        patterns = spec.drum_patterns[c.meter]
        pattern = patterns[rng.integers(len(patterns))]
        kit = render_kit(kit_kind, sr=sr, rng=rng, drums=tuple(sorted(set(pattern) | {"snare", "tom"})))
        c.kick_steps.extend(s for s, ch in enumerate(pattern.get("kick", "")) if ch in _VELOCITY)
        mix += rng.uniform(*spec.drum_level) * _render_drums(c, kit, pattern)
    for layer in spec.layers:
        if rng.random() < layer.probability:
            mix += rng.uniform(*layer.level) * _render_layer(c, layer)
    return mix


def _master(mix: np.ndarray, spec: Style, *, rng: np.random.Generator, sr: int) -> np.ndarray:
    """Dynamics, reverb, tone (low- and high-pass), normalisation to peak 1 and compression."""
    mix = mix * _dynamics(spec.dynamics[rng.integers(len(spec.dynamics))], len(mix), sr=sr, rng=rng)
    mix = reverb(mix, sr=sr, rng=rng, seconds=rng.uniform(*spec.reverb_seconds), mix=rng.uniform(*spec.reverb_mix),
                 darkness=rng.uniform(2500.0, 7000.0))
    mix = _filter(mix, "lowpass", rng.uniform(*spec.brightness), sr=sr)
    mix = _filter(mix, "highpass", rng.uniform(25.0, 90.0), sr=sr)
    mix /= np.abs(mix).max() + 1e-12
    return _distort(mix, rng.uniform(*spec.compression))


def _background_noise(spec: Style, *, rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Hiss at the style's level (half white, half low-passed), plus vinyl crackle for some styles."""
    noise = rng.standard_normal(n)
    noise = 0.5 * noise + 0.5 * _filter(noise, "lowpass", rng.uniform(300.0, 3000.0), sr=sr) * 3.0
    noise *= 10.0 ** (rng.uniform(*spec.noise_db) / 20.0) / (np.sqrt(np.mean(noise * noise)) + 1e-12)
    if rng.random() < spec.crackle:
        clicks = rng.random(n) < rng.uniform(5.0, 30.0) / sr
        noise += _filter(clicks * rng.uniform(-0.05, 0.05, n), "highpass", 1000.0, sr=sr)
    return noise


def _finish(mix: np.ndarray, noise: np.ndarray, *, rng: np.random.Generator, sr: int) -> np.ndarray:
    """Level, noise, 10 ms fades, no DC, peak at most :data:`_CEILING`; -> float32."""
    n = len(mix)
    mix = mix * rng.uniform(0.25, _CEILING) + noise
    ramp = min(n // 2, int(0.01 * sr))  # 10 ms fades: no click at the cut
    if ramp:
        fade = np.linspace(0.0, 1.0, ramp)
        mix[:ramp] *= fade
        mix[-ramp:] *= fade[::-1]
    mix -= mix.mean()
    peak = np.abs(mix).max()
    if peak > _CEILING:
        mix *= _CEILING / peak
    return mix.astype(np.float32)


#: Highest sample peak of a clip (-1 dBFS, mastering practice: headroom for lossy encoders).
_CEILING = 0.89


# --------------------------------------------------------------------------------------------
# The styles


def _p(**steps: str) -> dict[str, str]:
    return steps


# Styles overlap on purpose (a mean-MFCC classifier must not separate them), but not to the point of
# identical recipes: ambient keeps pads and organ (sustained strings are classical's), classical
# plays arpeggios and block chords, blues always has its shuffle drums, and jazz starts at 120 BPM,
# above most blues.  Those four choices took the demo from 0.93 to 0.97 track accuracy (docs/demo.md, "genreflow demo").
_STYLE_LIST = (
    Style(
        name="ambient",
        description="beatless drones and pads, slow swells, long reverb, bells and breathy flutes",
        tempo=(55.0, 85.0), meters=(4,), steps_per_beat=2, swing=(0.0, 0.0),
        scales=(("major", "pentatonic_major"), ("lydian", "lydian"), ("dorian", "dorian"), ("minor", "minor")),
        progressions=((0, 3), (0, 5, 3, 4), (0, 4, 5, 3), (0, 1)),
        chord_kinds=("sus2", "seventh", "triad"), bars_per_chord=(2, 4),
        layers=(
            Layer("chords", ("sustain",), ("pad", "pad", "organ"), level=(0.7, 1.0), cutoff=(1200.0, 4000.0)),
            Layer("bass", ("pedal",), ("sine", "pad"), probability=0.9, level=(0.3, 0.6), octave=-1,
                  cutoff=(300.0, 800.0)),
            Layer("lead", ("long", "motif"), ("bell", "flute", "sine", "epiano"), probability=0.7,
                  level=(0.2, 0.5), density=(0.08, 0.2), cutoff=(3000.0, 8000.0)),
        ),
        kits=("hand",), drum_patterns={4: (_p(shaker="x.o.x.o."), _p(rim="x.......", shaker="..o...o."))},
        drum_probability=0.2, drum_level=(0.1, 0.25),
        reverb_seconds=(2.0, 4.0), reverb_mix=(0.35, 0.6), brightness=(2500.0, 7000.0),
        dynamics=("swell", "crescendo", "decrescendo"), compression=(0.1, 0.6), noise_db=(-80.0, -45.0),
        humanize_ms=(5.0, 20.0),
    ),
    Style(
        name="blues",
        description="12-bar shuffle in triplet feel, boogie bass, overdriven guitar, organ, blues-scale licks",
        tempo=(65.0, 115.0), meters=(4,), steps_per_beat=3, swing=(0.0, 0.0),
        scales=(("mixolydian", "blues"), ("dorian", "blues"), ("mixolydian", "pentatonic_minor")),
        progressions=((0, 0, 0, 0, 3, 3, 0, 0, 4, 3, 0, 4), (0, 3, 0, 0, 3, 3, 0, 0, 4, 3, 0, 0)),
        chord_kinds=("seventh", "triad"), bars_per_chord=(1,),
        layers=(
            Layer("chords", ("shuffle", "shuffle", "sustain"), ("guitar", "organ", "epiano", "piano"),
                  level=(0.5, 0.9), drive=(0.0, 3.0), cutoff=(2000.0, 5000.0), density=(0.4, 0.8)),
            Layer("bass", ("boogie", "walking"), ("pluck_bass", "sine"), level=(0.5, 0.9), cutoff=(500.0, 1500.0)),
            Layer("lead", ("motif",), ("guitar", "organ", "square", "pluck"), probability=0.7, level=(0.3, 0.6),
                  drive=(0.0, 2.5), density=(0.2, 0.45), cutoff=(2500.0, 6000.0)),
        ),
        kits=("acoustic", "brush"),
        drum_patterns={4: (
            _p(kick="X.....x.....", snare="...X.....X..", hat="x.xx.xx.xx.x"),
            _p(kick="X.....X.....", snare="...x.....x..", ride="x.xx.xx.xx.x"),
        )},
        drum_probability=1.0, drum_level=(0.4, 0.8),
        reverb_seconds=(0.6, 1.6), reverb_mix=(0.1, 0.3), brightness=(3500.0, 8000.0),
        dynamics=("flat", "swell"), compression=(0.3, 1.5), noise_db=(-70.0, -42.0), crackle=0.3,
    ),
    Style(
        name="classical",
        description="no drums: piano arpeggios and block chords, string sections, crescendi, hall reverb",
        tempo=(60.0, 140.0), meters=(3, 4), steps_per_beat=4, swing=(0.0, 0.0),
        scales=(("major", "major"), ("harmonic_minor", "harmonic_minor"), ("minor", "harmonic_minor")),
        progressions=((0, 3, 4, 0), (0, 5, 3, 4), (0, 4, 5, 2, 3, 0, 3, 4), (0, 1, 4, 0)),
        chord_kinds=("triad", "triad", "seventh"), bars_per_chord=(1, 2),
        layers=(
            Layer("chords", ("arpeggio", "arpeggio", "beats"), ("piano", "strings", "pluck"), level=(0.6, 1.0),
                  cutoff=(3000.0, 8000.0)),
            Layer("bass", ("pedal", "beats"), ("strings", "piano"), probability=0.7, level=(0.3, 0.6), octave=-1,
                  cutoff=(600.0, 2000.0)),
            Layer("lead", ("long", "motif"), ("strings", "flute", "piano"), probability=0.8, level=(0.4, 0.8),
                  density=(0.25, 0.5), cutoff=(3000.0, 8000.0)),
        ),
        reverb_seconds=(1.5, 3.0), reverb_mix=(0.2, 0.45), brightness=(4000.0, 9000.0),
        dynamics=("crescendo", "decrescendo", "swell", "flat"), compression=(0.05, 0.4), noise_db=(-80.0, -50.0),
        humanize_ms=(4.0, 15.0),
    ),
    Style(
        name="electronic",
        description="four-on-the-floor kick, off-beat hats and claps, saw bass, supersaw stabs and arpeggios",
        tempo=(118.0, 136.0), meters=(4,), steps_per_beat=4, swing=(0.0, 0.08),
        scales=(("minor", "minor"), ("dorian", "pentatonic_minor"), ("phrygian", "minor")),
        progressions=((0, 0, 5, 6), (0, 5, 3, 4), (0, 3), (0,)),
        chord_kinds=("triad", "seventh", "sus2"), bars_per_chord=(1, 2),
        layers=(
            Layer("chords", ("stabs", "arpeggio", "sustain", "offbeat"), ("pad", "saw", "square"), level=(0.4, 0.8),
                  cutoff=(1500.0, 7000.0), density=(0.2, 0.45)),
            Layer("bass", ("octave", "root8", "riff"), ("saw", "square", "sub808"), level=(0.6, 1.0),
                  cutoff=(300.0, 1200.0), density=(0.3, 0.6)),
            Layer("lead", ("motif",), ("saw", "square", "bell"), probability=0.5, level=(0.2, 0.5),
                  density=(0.3, 0.6), cutoff=(2000.0, 8000.0)),
        ),
        kits=("electronic", "808"),
        drum_patterns={4: (
            _p(kick="X...X...X...X...", clap="....X.......X...", openhat="..x...x...x...x.", hat="xxxxxxxxxxxxxxxx"),
            _p(kick="X...X...X...X...", snare="....X.......X...", hat="..x...x...x...x."),
            _p(kick="X...X...X...X..x", clap="....X.......X...", hat="x.x.x.x.x.x.x.x.", openhat="..x...x...x...x."),
        )},
        drum_probability=0.97, drum_level=(0.6, 1.0),
        reverb_seconds=(0.3, 1.5), reverb_mix=(0.05, 0.25), brightness=(6000.0, 10500.0),
        dynamics=("flat",), compression=(1.0, 3.5), noise_db=(-85.0, -55.0),
        humanize_ms=(0.0, 1.0),
    ),
    Style(
        name="folk",
        description="strummed and picked acoustic strings, waltz or two-step, hand percussion, flute melodies",
        tempo=(85.0, 135.0), meters=(3, 4), steps_per_beat=2, swing=(0.0, 0.15),
        scales=(("major", "major"), ("mixolydian", "pentatonic_major"), ("major", "pentatonic_major"),
                ("dorian", "dorian")),
        progressions=((0, 3, 4, 0), (0, 4, 0, 3), (0, 6, 3, 0), (0, 3, 0, 4)),
        chord_kinds=("triad", "sus2"), bars_per_chord=(1, 2),
        layers=(
            Layer("chords", ("strum", "arpeggio"), ("pluck",), level=(0.7, 1.0), cutoff=(3000.0, 7000.0),
                  density=(0.5, 0.9)),
            Layer("bass", ("root8", "pedal", "beats"), ("pluck_bass", "pluck"), probability=0.8, level=(0.4, 0.7),
                  cutoff=(600.0, 2000.0)),
            Layer("lead", ("motif", "long"), ("flute", "pluck", "strings"), probability=0.6, level=(0.3, 0.6),
                  density=(0.3, 0.6), cutoff=(3000.0, 7000.0)),
        ),
        kits=("hand", "brush"),
        drum_patterns={
            3: (_p(kick="X.....", snare="..x.x.", shaker="xoxoxo"), _p(kick="X.....", shaker="x.x.x.")),
            4: (_p(kick="X...X...", snare="..x...x.", shaker="xoxoxoxo"), _p(kick="X.......", shaker="x.x.x.x.")),
        },
        drum_probability=0.55, drum_level=(0.25, 0.55),
        reverb_seconds=(0.5, 1.5), reverb_mix=(0.1, 0.3), brightness=(4000.0, 9000.0),
        dynamics=("flat", "swell"), compression=(0.2, 1.0), noise_db=(-75.0, -45.0),
        humanize_ms=(4.0, 12.0),
    ),
    Style(
        name="hiphop",
        description="slow boom-bap or trap beats with swing, 808 sub bass, lo-fi keys, vinyl noise",
        tempo=(78.0, 98.0), meters=(4,), steps_per_beat=4, swing=(0.08, 0.3),
        scales=(("minor", "pentatonic_minor"), ("dorian", "minor"), ("phrygian", "minor")),
        progressions=((0, 5), (0, 3), (0, 6, 5, 4), (0,)),
        chord_kinds=("seventh", "triad"), bars_per_chord=(1, 2),
        layers=(
            Layer("chords", ("sustain", "stabs", "comp"), ("epiano", "piano", "pad", "bell"), level=(0.35, 0.7),
                  cutoff=(1200.0, 3500.0), density=(0.2, 0.4)),
            Layer("bass", ("sub",), ("sub808", "sine"), level=(0.8, 1.0), cutoff=(200.0, 600.0)),
            Layer("lead", ("motif",), ("bell", "flute", "epiano"), probability=0.35, level=(0.15, 0.35),
                  density=(0.1, 0.3), cutoff=(2000.0, 5000.0)),
        ),
        kits=("808", "acoustic"),
        drum_patterns={4: (
            _p(kick="X......x..X.....", snare="....X.......X...", hat="x.x.x.x.x.x.x.x."),
            _p(kick="X.....X...x.....", snare="....X.......X...", hat="x.x.x.x.x.xxx.x."),
            _p(kick="X..x......X..x..", clap="....X.......X...", hat="xxxxxxxxxxxxxxxx"),
        )},
        drum_probability=1.0, drum_level=(0.8, 1.0),
        reverb_seconds=(0.3, 1.0), reverb_mix=(0.05, 0.2), brightness=(3500.0, 8000.0),
        dynamics=("flat",), compression=(1.0, 3.0), noise_db=(-60.0, -36.0), crackle=0.6,
        humanize_ms=(3.0, 10.0),
    ),
    Style(
        name="jazz",
        description="swung ride cymbal, walking bass, seventh-chord comping on electric piano, modal solos",
        tempo=(120.0, 220.0), meters=(4,), steps_per_beat=3, swing=(0.0, 0.0),
        scales=(("dorian", "dorian"), ("mixolydian", "mixolydian"), ("major", "major")),
        progressions=((1, 4, 0, 0), (1, 4, 0, 5), (0, 5, 1, 4), (2, 5, 1, 4)),
        chord_kinds=("seventh",), bars_per_chord=(1,),
        layers=(
            Layer("chords", ("comp", "comp", "sustain"), ("epiano", "piano", "organ"), level=(0.4, 0.8),
                  cutoff=(2000.0, 5000.0), density=(0.4, 0.9)),
            Layer("bass", ("walking",), ("pluck_bass", "sine"), level=(0.7, 1.0), cutoff=(500.0, 1500.0)),
            Layer("lead", ("motif",), ("square", "flute", "epiano", "saw"), probability=0.6, level=(0.3, 0.6),
                  density=(0.4, 0.8), cutoff=(1500.0, 4500.0)),
        ),
        kits=("brush", "acoustic"),
        drum_patterns={4: (
            _p(ride="X..x.xX..x.x", hat="...x.....x..", kick="o..........."),
            _p(ride="x..x.xx..x.x", hat="...x.....x..", snare="......o....o"),
            _p(ride="X..x.xX..x.x", hat="...x.....x..", snare="...o.....o..", kick="......o....."),
        )},
        drum_probability=0.9, drum_level=(0.35, 0.7),
        reverb_seconds=(0.8, 2.0), reverb_mix=(0.1, 0.3), brightness=(4000.0, 9000.0),
        dynamics=("flat", "swell"), compression=(0.1, 0.8), noise_db=(-75.0, -45.0), crackle=0.15,
        humanize_ms=(3.0, 10.0),
    ),
    Style(
        name="metal",
        description="fast double-kick, palm-muted distorted power chords, phrygian riffs, cymbal wash",
        tempo=(135.0, 200.0), meters=(4,), steps_per_beat=4, swing=(0.0, 0.0),
        scales=(("phrygian", "phrygian"), ("minor", "harmonic_minor"), ("minor", "pentatonic_minor")),
        progressions=((0, 0, 1, 0), (0, 5, 6, 0), (0, 3, 1, 0), (0,)),
        chord_kinds=("power",), bars_per_chord=(1, 2),
        layers=(
            Layer("chords", ("chug", "chug", "sustain"), ("guitar", "saw"), level=(0.8, 1.0), octave=-1,
                  drive=(5.0, 14.0), cutoff=(3500.0, 7000.0)),
            Layer("bass", ("root8", "chug"), ("saw", "pluck_bass"), level=(0.5, 0.8), drive=(0.0, 3.0),
                  cutoff=(400.0, 1200.0)),
            Layer("lead", ("motif",), ("guitar", "square"), probability=0.4, level=(0.2, 0.45), drive=(3.0, 8.0),
                  density=(0.4, 0.8), cutoff=(2500.0, 6000.0)),
        ),
        kits=("rock",),
        drum_patterns={4: (
            _p(kick="xxxxxxxxxxxxxxxx", snare="....X.......X...", ride="x.x.x.x.x.x.x.x.", crash="X..............."),
            _p(kick="X.x.X.x.X.x.X.x.", snare="....X.......X...", hat="x.x.x.x.x.x.x.x.", crash="X.......X......."),
            _p(kick="X.x.X.x.X.x.X.x.", snare="..X...X...X...X.", crash="X...X...X...X..."),
        )},
        drum_probability=0.97, drum_level=(0.6, 0.9),
        reverb_seconds=(0.3, 1.0), reverb_mix=(0.05, 0.2), brightness=(6000.0, 10500.0),
        dynamics=("flat",), compression=(1.5, 4.0), noise_db=(-70.0, -45.0),
        humanize_ms=(1.0, 4.0),
    ),
    Style(
        name="reggae",
        description="one-drop drums, off-beat skank chords and organ bubble, melodic deep bass, swung hats",
        tempo=(62.0, 92.0), meters=(4,), steps_per_beat=4, swing=(0.05, 0.25),
        scales=(("major", "major"), ("minor", "pentatonic_minor"), ("dorian", "dorian")),
        progressions=((0, 3), (0, 4), (0, 3, 4, 3), (0, 6)),
        chord_kinds=("triad",), bars_per_chord=(1, 2),
        layers=(
            Layer("chords", ("offbeat",), ("pluck", "organ", "epiano", "guitar"), level=(0.5, 0.8),
                  cutoff=(2500.0, 6000.0)),
            Layer("bass", ("riff",), ("sine", "pluck_bass", "sub808"), level=(0.8, 1.0), cutoff=(250.0, 700.0),
                  density=(0.25, 0.5)),
            Layer("lead", ("motif",), ("organ", "flute", "square"), probability=0.4, level=(0.2, 0.45),
                  density=(0.2, 0.4), cutoff=(2000.0, 5000.0)),
        ),
        kits=("acoustic",),
        drum_patterns={4: (
            _p(kick="........X.......", rim="........X.......", hat="x.x.x.x.x.x.x.x."),
            _p(kick="X...X...X...X...", snare="....x.......x...", hat="x.x.x.x.x.x.x.x."),
            _p(kick="........X.......", snare="........X.......", hat="x.xxx.xxx.xxx.xx"),
        )},
        drum_probability=0.95, drum_level=(0.5, 0.85),
        reverb_seconds=(0.8, 2.0), reverb_mix=(0.1, 0.3), brightness=(3500.0, 8000.0),
        dynamics=("flat",), compression=(0.5, 2.0), noise_db=(-72.0, -45.0), crackle=0.2,
    ),
    Style(
        name="rock",
        description="straight eighths, backbeat snare, eighth-note root bass, crunchy open and power chords",
        tempo=(95.0, 150.0), meters=(4,), steps_per_beat=4, swing=(0.0, 0.03),
        scales=(("major", "pentatonic_minor"), ("mixolydian", "pentatonic_major"), ("minor", "pentatonic_minor")),
        progressions=((0, 4, 5, 3), (0, 3, 4, 3), (0, 6, 3, 0), (5, 3, 0, 4)),
        chord_kinds=("triad", "power"), bars_per_chord=(1, 2),
        layers=(
            Layer("chords", ("strum", "root8", "sustain", "stabs"), ("guitar", "pluck", "organ"), level=(0.6, 1.0),
                  drive=(1.0, 5.0), cutoff=(3000.0, 7000.0), density=(0.3, 0.6)),
            Layer("bass", ("root8",), ("saw", "pluck_bass", "square"), level=(0.5, 0.9), cutoff=(400.0, 1200.0)),
            Layer("lead", ("motif",), ("guitar", "square", "organ"), probability=0.5, level=(0.25, 0.5),
                  drive=(1.0, 5.0), density=(0.3, 0.6), cutoff=(2500.0, 6000.0)),
        ),
        kits=("rock", "acoustic"),
        drum_patterns={4: (
            _p(kick="X.......X.x.....", snare="....X.......X...", hat="x.x.x.x.x.x.x.x.", crash="X..............."),
            _p(kick="X.....x.X.......", snare="....X.......X...", hat="x.x.x.x.x.x.x.x."),
            _p(kick="X.......X.......", snare="....X.......X...", ride="x.x.x.x.x.x.x.x.", crash="X..............."),
        )},
        drum_probability=0.97, drum_level=(0.6, 0.9),
        reverb_seconds=(0.5, 1.5), reverb_mix=(0.08, 0.25), brightness=(5000.0, 10000.0),
        dynamics=("flat", "swell"), compression=(0.8, 2.5), noise_db=(-72.0, -45.0),
    ),
)

#: All styles by name.
STYLES: dict[str, Style] = {s.name: s for s in _STYLE_LIST}

#: Style names in sorted order (the label vocabulary).
STYLE_NAMES: tuple[str, ...] = tuple(sorted(STYLES))
