"""The config loader: every number checked where it is parsed, and a YAML reader that a small file cannot abuse."""

from __future__ import annotations

import resource
import time

import pytest

from audiorep.config import load, read_yaml
from audiorep.errors import ConfigError
from audiorep.multimodal.fusion_run import FusionConfig
from audiorep.multimodal.teasel_config import TeaselRunConfig
from audiorep.pretrain.config import PretrainConfig
from audiorep.probe.run import DownstreamConfig

# (config class, override, words the one-line message must hold: the key, the value, the range)
BAD_NUMBERS = [
    (DownstreamConfig, "lr=inf", ["lr", "inf", "(0, 10]"]),
    (DownstreamConfig, "lr=nan", ["lr", "nan", "finite"]),
    (DownstreamConfig, "grad_clip=nan", ["grad_clip", "nan", "clipping off"]),
    (DownstreamConfig, "dropout=2", ["dropout", "2", "[0, 1)"]),
    (DownstreamConfig, "mlp_size=0", ["mlp_size", "0", "hidden units"]),
    (DownstreamConfig, "cache_batch_seconds=nan", ["cache_batch_seconds", "nan", "seconds"]),
    (DownstreamConfig, "seed=1.0e+20", ["seed", "100000000000000000000", "64-bit"]),
    (DownstreamConfig, "weight_decay=-1", ["weight_decay", "-1", "[0, 10]"]),
    (PretrainConfig, "optim.lr=nan", ["optim.lr", "nan", "learning rate"]),
    (PretrainConfig, "optim.beta1=2", ["optim.beta1", "2", "[0, 1)"]),
    (PretrainConfig, "optim.eps=-1", ["optim.eps", "-1", "(0, 1]"]),
    (PretrainConfig, "optim.weight_decay=nan", ["optim.weight_decay", "nan"]),
    (PretrainConfig, "optim.grad_clip=nan", ["optim.grad_clip", "nan"]),
    (PretrainConfig, "train.seed=100000000000000000000", ["train.seed", "100000000000000000000"]),
    (PretrainConfig, "train.seed=-1", ["train.seed", "-1"]),
    (PretrainConfig, "masking.noise_std=nan", ["masking.noise_std", "nan", "feature units"]),
    (PretrainConfig, "masking.noise_std=inf", ["masking.noise_std", "inf"]),
    (PretrainConfig, "data.max_seconds=0", ["data.max_seconds", "0", "null = no crop"]),
    (PretrainConfig, "data.eval_max_utts=-3", ["data.eval_max_utts", "-3", "utterances"]),
    (PretrainConfig, "data.num_workers=100000", ["data.num_workers", "100000", "worker processes"]),
    (PretrainConfig, "train.plateau_factor=nan", ["train.plateau_factor", "nan"]),
    (FusionConfig, "batch_size=0", ["batch_size", "0", "utterances"]),
    (FusionConfig, "seeds=[]", ["seeds", "empty"]),
    (FusionConfig, "seeds=[1, -2]", ["seeds[1]", "-2"]),
    (FusionConfig, "head_args.nonsense=1", ["head_args", "nonsense"]),
    (FusionConfig, "lr=nan", ["lr", "nan"]),
    (TeaselRunConfig, "grad_clip=inf", ["grad_clip", "inf"]),
    (TeaselRunConfig, "max_steps=0", ["max_steps", "0", "steps"]),
    (TeaselRunConfig, "small_lm.lr=nan", ["small_lm.lr", "nan"]),
]


@pytest.mark.parametrize("cls,override,words", BAD_NUMBERS, ids=[b[1] for b in BAD_NUMBERS])
def test_bad_numbers_fail_in_one_line_naming_key_value_and_range(cls, override, words):
    with pytest.raises(ConfigError) as err:
        load(cls, None, [override])
    msg = str(err.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, (w, msg)


def test_null_means_no_crop_and_whole_split():
    cfg = load(PretrainConfig, None, ["data.max_seconds=null", "data.eval_max_utts=null"])
    assert cfg.data.max_seconds is None and cfg.data.eval_max_utts is None


def test_defaults_pass_their_own_checks():
    for cls in (DownstreamConfig, PretrainConfig, FusionConfig, TeaselRunConfig):
        load(cls)


def test_huge_name_refused_quickly_and_in_bounded_memory():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    with pytest.raises(ConfigError, match=r"override name: a value of 10000000 characters \(at most 65536\)"):
        load(PretrainConfig, None, ["name=" + "x" * 10_000_000])
    with pytest.raises(ConfigError, match=r"name must be a non-empty string of at most 200 characters, got a "
                                          r"string of 300 characters"):
        load(PretrainConfig, None, ["name=" + "x" * 300])
    assert time.perf_counter() - t < 10
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 500_000  # KiB


def test_integer_of_hundreds_of_digits_is_a_config_error(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("lr: 1" + "0" * 400 + "\n")
    with pytest.raises(ConfigError, match="lr: an integer of about 400 digits is too large for a float"):
        load(DownstreamConfig, p)
    p.write_text("seed: 1" + "0" * 5000 + "\n")  # past Python's int-parsing digit limit
    with pytest.raises(ConfigError, match="c.yaml"):
        load(DownstreamConfig, p)


# ---------------------------------------------------------------- the YAML reader


def test_duplicate_section_is_an_error_naming_key_and_lines(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text("optim:\n  lr: 0.001\ntrain:\n  max_steps: 2\noptim:\n  weight_decay: 0.1\n")
    with pytest.raises(ConfigError, match=r"p.yaml: line 5: key 'optim' given twice in one mapping "
                                          r"\(first on line 1\)"):
        read_yaml(p)


def test_billion_laughs_refused_at_once(tmp_path):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, "
              f"*a{i - 1}, *a{i - 1}, *a{i - 1}]" for i in range(1, 9)]
    p = tmp_path / "laughs.yaml"
    p.write_text("\n".join(lines) + "\n")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    with pytest.raises(ConfigError, match=r"laughs.yaml: line 2: YAML aliases \(\*name\) are not accepted"):
        read_yaml(p)
    assert time.perf_counter() - t < 2
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000  # KiB


@pytest.mark.parametrize("text", ["a: " + "[" * 5000 + "]" * 5000, "a:\n" + "".join(
    "  " * i + f"k{i}:\n" for i in range(1, 400)) + "  " * 400 + "v: 1\n"])
def test_deep_nesting_is_a_config_error(tmp_path, text):
    p = tmp_path / "deep.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=r"deep.yaml: line \d+: nested deeper than 100 levels"):
        read_yaml(p)


def test_non_utf8_config_names_file_and_offset(tmp_path):
    p = tmp_path / "latin1.yaml"
    p.write_bytes("name: caf\u00e9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1.yaml: not UTF-8 text \(byte 0xe9 at offset 9\)"):
        read_yaml(p)


def test_override_values_use_the_same_limits():
    with pytest.raises(ConfigError, match="nested deeper than 100"):
        load(FusionConfig, None, ["seeds=" + "[" * 3000 + "]" * 3000])


def test_config_file_past_a_mebibyte_is_refused_before_parsing(tmp_path):
    p = tmp_path / "big.yaml"
    p.write_text("name: " + "x" * 10_000_000 + "\n")
    t = time.perf_counter()
    with pytest.raises(ConfigError, match=r"big.yaml: 10000007 bytes is not a config file \(at most 1 MiB\)"):
        read_yaml(p)
    assert time.perf_counter() - t < 2
