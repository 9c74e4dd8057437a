"""The training corpus: music21's bundled works as MIDI and rolls, MMA styles, with every source's terms.

Needs the ``corpus`` extra (music21). Modules: :mod:`.build` (works, held-out list, MIDI export), :mod:`.rolls`
(notes straight from parsed scores: the whole corpus in minutes, cached and resumable), :mod:`.mma` (chord charts
rendered by Debian's ``mma`` in pop, jazz, latin, waltz and country grooves), :mod:`.mix` (style groups,
transposition, balance, the mix report), :mod:`.terms` (the encodings' licences), :mod:`.samples` (the
redistributable ``data_samples/``), :mod:`.cli` (``python -m musicvae_course.corpus``).
"""
