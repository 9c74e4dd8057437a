"""The ML core: piano rolls and MIDI, the model, checkpoints, data, metrics and latent-space analysis.

Imports nothing from ``train``, ``ui`` or ``grading`` (import-linter checks it). Lowest first: ``fileio``,
``seeding``, ``devices`` -> ``pianoroll`` -> ``model`` -> ``midi_fast``, ``checkpoint`` -> ``segment_cache`` ->
``data``, ``metrics`` -> ``latent``.
"""
