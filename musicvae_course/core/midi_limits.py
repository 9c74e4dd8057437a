"""Named limits on the work one input may cause, checked *before* anything is allocated.

A file of a few bytes can declare an absurd size: a MIDI file at 1 tick per quarter whose last note ends at tick
10,000,000 asks for 40 million steps (3.5 GB as an 88-row roll); a checkpoint whose config says
``latent_dim=200000`` asks for 6 GB of weights. Every reader checks its input against these limits from the header,
the note table or the tensor metadata, and refuses with an error that names the limit (and the argument that
raises it). The defaults are far above any real piece or checkpoint the kit meets.
"""

from __future__ import annotations

MAX_MIDI_BYTES = 32 * 1024 * 1024  #: larger MIDI files are refused (LMD's largest is about 3 MB)
MAX_NOTES = 1_000_000  #: notes per MIDI file
MAX_EVENTS = 2_000_000  #: events per MIDI file (the reference's mido keeps each as a ~300-byte object: 600 MB)
#: bytes of one meta or sysex event: mido (so the reference) refuses longer ones, as a 1.5 MB lyric or sample dump
MAX_EVENT_BYTES = 1_000_000
MAX_STEPS = 100_000  #: sixteenth steps per file (25,000 quarter notes, 3.5 hours at 120 BPM; an 88 x T roll of 8.8 MB)
MAX_SEGMENTS_PER_FILE = 1 + MAX_STEPS // 16  #: 2-bar windows one file may give (follows from MAX_STEPS)
READ_TIMEOUT_S = 60.0  #: seconds one file may take to read and roll (a FIFO or a pathological file)
MAX_CHECKPOINT_BYTES = 512 * 1024 * 1024  #: declared (uncompressed) size of all tensors in a checkpoint
MAX_COMPRESSION_RATIO = 50.0  #: a compressed checkpoint entry may inflate at most this much
#: a dataset .npz's array may inflate past MAX_COMPRESSION_RATIO up to this size (packed rows deflate about 16x)
DATASET_BYTES_AT_ANY_RATIO = 256 * 1024 * 1024
#: the pickled structure of a checkpoint (its data.pkl, tensors aside): the bundled model's is 6 KB, a run's last.pt
#: with optimiser state and history tens of KB. 4 MB of pickle still builds up to ~300 MB of objects in ~4 s.
MAX_CHECKPOINT_PICKLE_BYTES = 4 * 1024 * 1024
MAX_CHECKPOINT_TENSORS = 10_000  #: tensors in a checkpoint's state dict (MusicVAE has about 60)
MAX_CHECKPOINT_NESTING = 100  #: containers within containers in a checkpoint (the kit's own are 5 deep)
#: entries of all containers in a checkpoint, one reached twice (the pickle may share it) counted twice: 60 lists of
#: two references to the next reach 2**60 entries, and its repr never ends
MAX_CHECKPOINT_ENTRIES = 1_000_000
#: a build cache's index.json (about 330 bytes a file: LMD's 178,000 files make 60 MB)
MAX_CACHE_INDEX_BYTES = 256 * 1024 * 1024
MAX_DATASET_BYTES = 4 * 1024**3  #: declared size of a dataset .npz (300k segments are about 100 MB unpacked)
MAX_LATENT_DIM = 8192  #: largest latent size a checkpoint may ask for (about 170 MB of weights)


class LimitError(ValueError):
    """An input that would take more memory or time than the named limit allows."""


def roll_too_long(n_steps: int, max_steps: int) -> LimitError:
    """The error for a roll of ``n_steps`` sixteenth steps over ``max_steps``: one wording for both readers,
    whichever check meets it first (the reference's, before pretty_midi reads the file, or the roll's own)."""
    return LimitError(
        f"the roll would be {n_steps:,} steps long ({n_steps // 4:,} quarter notes), more than "  # 4 steps a quarter
        f"the limit of {max_steps:,} (MAX_STEPS; raise max_steps to allow it)"
    )
