"""musicvae-course: a Jupyter course kit for music generation with a convolutional VAE.

Everything a notebook needs is importable from here, e.g.::

    from musicvae_course import load_pretrained, midi_to_pianoroll, visualize_pianoroll, play

Names are imported lazily, on first use, so ``import musicvae_course`` stays
quick and a module's optional dependencies are only needed when it is used.
"""
from importlib import import_module

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "MusicVAE": "model", "vae_loss": "model", "interpolate_latents": "model",
    "count_parameters": "model",
    "save_checkpoint": "checkpoint", "load_checkpoint": "checkpoint",
    "load_pretrained": "checkpoint", "CheckpointError": "checkpoint",
    "midi_to_pianoroll": "pianoroll", "pianoroll_to_midi": "pianoroll", "segments": "pianoroll",
    "visualize_pianoroll": "plots", "compare_pianorolls": "plots",
    "plot_pianoroll_grid": "plots", "PianoRollView": "plots",
    "interpolation_widget": "widgets", "latent_sliders_widget": "widgets",
    "temperature_widget": "widgets", "principal_directions": "widgets",
    "attribute_vector": "widgets",
    "play": "audio", "synthesize": "audio",
    "build_dataset": "data", "load_dataset": "data", "split_by_file": "data",
    "PianoRollDataset": "data",
    "fit": "train", "plot_history": "train",
    "evaluate": "metrics",
    "check": "grading", "Checker": "grading",
    "seed_everything": "seeding", "DEFAULT_SEED": "seeding",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        # Not cached in globals(): the autograder compares this module's
        # namespace before and after student code, and a cache looks like a change.
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'musicvae_course' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
