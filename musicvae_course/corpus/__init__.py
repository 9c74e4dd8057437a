"""The training corpus: music21's bundled works as MIDI and rolls, with every encoding's terms.

Needs the ``corpus`` extra (music21). Modules: :mod:`.build` (works, held-out list, export), :mod:`.terms`
(the encodings' licences), :mod:`.samples` (the redistributable ``data_samples/``), :mod:`.cli`
(``python -m musicvae_course.corpus``).
"""
