"""The training corpus: music21's bundled works as MIDI and rolls, MMA styles, with every source's terms.

Needs the ``corpus`` extra (music21). Modules:

* :mod:`.works`: the works, their ids and output names, the fixed held-out list, the build order.
* :mod:`.export`: one work to a standard MIDI file; :mod:`.build`: the MIDI corpus (pool, manifest, failures).
* :mod:`.rolls`: notes straight from parsed scores: the whole corpus in minutes, cached and resumable.
* :mod:`.mma`: chord charts rendered by Debian's ``mma`` in pop, jazz, latin, waltz and country grooves.
* :mod:`.mix`: style groups, transposition, balance, the mix report.
* :mod:`.terms`: the encodings' licences; :mod:`.samples`: the redistributable ``data_samples/``.
* :mod:`.cli`: ``python -m musicvae_course.corpus``.
"""
