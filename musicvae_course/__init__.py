"""musicvae-course: a Jupyter course kit for music generation with a convolutional VAE.

Everything a notebook needs is importable from here, e.g.::

    from musicvae_course import load_pretrained, midi_to_pianoroll, visualize_pianoroll, play

The core (model, piano rolls, checkpoints, data, metrics, latent analysis) and training are imported eagerly.
The notebook layer (plots, audio, widgets: matplotlib, IPython, ipywidgets) is imported on first use of one of
its names, so ``import musicvae_course`` stays light in a student kernel. Grading is a separate subpackage,
:mod:`musicvae_course.grading`, that imports none of this.
"""

from importlib import import_module

from .core.checkpoint import BUNDLED_CHECKPOINT, CheckpointError, load_checkpoint, load_pretrained, save_checkpoint
from .core.data import PianoRollDataset, build_dataset, list_midi_files, load_dataset, split_by_file
from .core.latent import attribute_vector, encode_means, encode_roll, latent_point, principal_directions
from .core.meter import bar_lines, meter, time_signatures
from .core.metrics import evaluate, frame_scores, onset_scores, sample_statistics
from .core.model import MusicVAE, count_parameters, interpolate_latents, vae_loss
from .core.pianoroll import (
    LOWEST_PITCH,
    N_PITCHES,
    SEGMENT_STEPS,
    midi_to_pianoroll,
    pianoroll_to_midi,
    pitch_name,
    segments,
)
from .core.seeding import DEFAULT_SEED, seed_everything
from .train import TrainConfig, beta_schedule, fit

__version__ = "0.1.0"

# The notebook layer, imported on first use: public name -> module under musicvae_course.ui
_UI_EXPORTS = {
    "visualize_pianoroll": "plots",
    "compare_pianorolls": "compare",
    "plot_pianoroll_grid": "plots",
    "PianoRollView": "rollview",
    "plot_history": "curves",
    "play": "audio",
    "synthesize": "audio",
    "interpolation_widget": "widgets",
    "latent_sliders_widget": "widgets",
    "temperature_widget": "widgets",
    "drawable_roll_widget": "rolldraw",
    "download_link": "rolldraw",
    "note_events_lost": "audio",
    "fit_live": "curves",
    "LiveCurves": "curves",
}

__all__ = [
    "BUNDLED_CHECKPOINT",
    "CheckpointError",
    "DEFAULT_SEED",
    "LOWEST_PITCH",
    "LiveCurves",
    "MusicVAE",
    "N_PITCHES",
    "PianoRollDataset",
    "PianoRollView",
    "SEGMENT_STEPS",
    "TrainConfig",
    "attribute_vector",
    "bar_lines",
    "beta_schedule",
    "build_dataset",
    "compare_pianorolls",
    "count_parameters",
    "download_link",
    "drawable_roll_widget",
    "encode_means",
    "encode_roll",
    "evaluate",
    "fit",
    "fit_live",
    "frame_scores",
    "interpolate_latents",
    "interpolation_widget",
    "latent_point",
    "latent_sliders_widget",
    "list_midi_files",
    "load_checkpoint",
    "load_dataset",
    "load_pretrained",
    "meter",
    "midi_to_pianoroll",
    "note_events_lost",
    "onset_scores",
    "pianoroll_to_midi",
    "pitch_name",
    "play",
    "plot_history",
    "plot_pianoroll_grid",
    "principal_directions",
    "sample_statistics",
    "save_checkpoint",
    "seed_everything",
    "segments",
    "split_by_file",
    "synthesize",
    "temperature_widget",
    "time_signatures",
    "vae_loss",
    "visualize_pianoroll",
]


def __getattr__(name: str):
    if name in _UI_EXPORTS:
        return getattr(import_module(f".ui.{_UI_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'musicvae_course' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
