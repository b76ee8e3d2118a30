"""The log-mel front end as an upstream with no encoder: the floor every probe table is measured against."""

from __future__ import annotations

from ..features import FeatureConfig, FeatureExtractor
from .base import EncoderOutput, WaveformUpstream


class LogMelUpstream(WaveformUpstream):
    """The floor of every probe table: the log-mel front end with no encoder.

    It behaves like an upstream (``model(wavs, wav_lens) -> EncoderOutput``) whose only hidden state is the
    CMVN log-mel frames an encoder would have received, so a head on it measures what the features alone
    give. It has no parameters.
    """

    def __init__(self, feature_config: FeatureConfig | None = None):
        super().__init__()
        self.features = FeatureExtractor(feature_config or FeatureConfig())

    @property
    def hidden_size(self) -> int:
        return self.feature_config.dim

    @property
    def num_layers(self) -> int:
        return 0  # hidden_states holds only the features

    def forward(self, wavs, wav_lens=None, sample_rate: int | None = None) -> EncoderOutput:
        feats, lengths = self.extract_features(wavs, wav_lens, sample_rate)  # (B, T, D), (B,)
        return EncoderOutput(hidden_states=(feats,), last_hidden_state=feats, lengths=lengths)
