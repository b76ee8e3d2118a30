"""Speech data: manifests, lazy datasets, batching, frame labels, corpus readers and the bundled corpus.

Every corpus becomes JSON-lines manifests of :class:`Utterance` rows; :class:`AudioDataset` reads them
lazily; :func:`collate_waveforms` pads; :class:`LengthBucketBatchSampler` batches by length (DDP-aware).
``get_corpus("synth")`` gives the corpus shipped with the package.
"""

from .corpus import Corpus, get_corpus, list_corpora
from .dataset import (
    AudioDataset,
    LengthBucketBatchSampler,
    SkipTracker,
    collate_waveforms,
    track_skips,
)
from .labels import (
    IGNORE_INDEX,
    num_frames,
    read_frame_labels,
    read_label_names,
    write_frame_labels,
    write_label_names,
)
from .manifest import Utterance, read_manifest, write_manifest

__all__ = [
    "AudioDataset",
    "Corpus",
    "IGNORE_INDEX",
    "LengthBucketBatchSampler",
    "SkipTracker",
    "Utterance",
    "collate_waveforms",
    "get_corpus",
    "list_corpora",
    "num_frames",
    "read_frame_labels",
    "read_label_names",
    "read_manifest",
    "track_skips",
    "write_frame_labels",
    "write_label_names",
    "write_manifest",
]
