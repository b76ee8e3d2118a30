"""TEASEL runs end to end on a tiny corpus the test writes: small LM, LAA pretraining, fine-tuning, config."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from pathlib import Path
import soundfile as sf
import torch

from audiorep.errors import ConfigError
from audiorep.multimodal import load_run_config, run_finetune, run_pretrain

WORDS = ["the", "movie", "was", "good", "bad", "really", "quite", "plot", "actors", "fine"]


def write_corpus(root, n_per_split=(12, 4, 4)):
    """Manifests with transcripts and a label that depends on the audio's pitch (as the bundled corpus does)."""
    rng = np.random.default_rng(0)
    (root / "wav").mkdir(parents=True)
    for split, n in zip(("train", "dev", "test"), n_per_split):
        rows = []
        for i in range(n):
            uid = f"{split}-{i}"
            sec = 0.25 + 0.1 * (i % 3)
            label = float(rng.uniform(-3, 3))
            t = np.arange(int(16000 * sec)) / 16000
            wav = 0.3 * np.sin(2 * np.pi * (150 + 20 * label) * t).astype(np.float32)
            sf.write(root / "wav" / f"{uid}.wav", wav, 16000)
            text = " ".join(rng.choice(WORDS, size=4 + i % 3))
            rows.append({"id": uid, "path": f"wav/{uid}.wav", "num_samples": len(wav), "sample_rate": 16000,
                         "speaker": "s1", "text": text, "labels": {"sentiment": round(label, 2)}})
        (root / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


TINY_W2V = {"front_end": "wav2vec2"}
TINY = [
    "small_lm.vocab_size=300", "small_lm.hidden_size=32", "small_lm.num_layers=1", "small_lm.num_heads=2",
    "small_lm.intermediate_size=64", "small_lm.epochs=2", "batch_size=4", "epochs=2", "lr=1e-3",
    "max_audio_seconds=1.0", "num_threads=1",
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("teasel_corpus"))


def tiny_w2v_folder(tmp_path):
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    wc = Wav2Vec2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                        conv_dim=(16, 16), conv_kernel=(10, 3), conv_stride=(5, 4), num_conv_pos_embeddings=4,
                        num_conv_pos_embedding_groups=2)
    Wav2Vec2Model(wc).save_pretrained(str(tmp_path / "w2v"))
    return tmp_path / "w2v"


def test_pretrain_then_finetune_end_to_end(corpus, tmp_path):
    w2v = tiny_w2v_folder(tmp_path)  # a local wav2vec2 folder, loaded offline
    common = TINY + [f"data={corpus}", f"wav2vec2={w2v}"]
    pre = run_pretrain(load_run_config(None, common + [f"out_dir={tmp_path}/pre", "save_every=3"]))
    assert pre["steps"] == 6  # 2 epochs x ceil(12 / 4)
    assert "pretrained" in pre["front_end"]
    assert pre["checkpoints"] == [f"{tmp_path}/pre/laa-step3.safetensors", f"{tmp_path}/pre/laa-step6.safetensors"]
    assert all(math.isfinite(x) for x in pre["train_loss_first10"])
    # the small LM was trained once and cached under AUDIOREP_HOME
    assert "teasel/lm-" in pre["lm"]
    # a step budget that ends inside the second pass: max_steps wins over epochs
    short = run_pretrain(load_run_config(None, common + [f"out_dir={tmp_path}/pre4", "save_every=3", "max_steps=4"]))
    assert short["steps"] == 4 and [c.rsplit("/", 1)[1] for c in short["checkpoints"]] == [
        "laa-step3.safetensors", "laa-step4.safetensors"]
    assert short["train_loss_first10"][0] == pre["train_loss_first10"][0]  # same first batch (the lrs then differ)
    fine = run_finetune(load_run_config(None, common + [f"out_dir={tmp_path}/ft",
                                                        f"laa_checkpoint={pre['laa_checkpoint']}"]))
    assert fine["lm"] == pre["lm"] and fine["laa_checkpoint_meta"]["step"] == 6
    assert len(fine["dev_history"]) == 2 and 1 <= fine["best_epoch"] <= 2
    for key in ("Has0_acc_2", "Has0_F1", "Non0_acc_2", "Non0_F1", "Mult_acc_7", "MAE", "Corr"):
        assert key in fine["test"]
    assert (tmp_path / "ft" / "best.safetensors").is_file()
    assert set(fine["test_audio_swapped"]) == set(fine["test"])  # the same test texts with other utterances' speech
    saved = json.loads((tmp_path / "ft" / "finetune_results.json").read_text())
    assert saved["test"] == fine["test"]


def test_text_only_baseline_and_upstream_front_end(corpus, tmp_path, tiny_model):
    import audiorep

    up = tiny_model(num_layers=1)
    up.save_pretrained(tmp_path / "up")
    assert audiorep.load(tmp_path / "up").hidden_size == 32
    common = TINY + [f"data={corpus}", "epochs=1"]
    text = run_finetune(load_run_config(None, common + ["use_audio=false", f"out_dir={tmp_path}/t"]))
    assert text["laa_parameters"] == 0 and text["front_end"].startswith("none") and text["test_audio_swapped"] is None
    up_args = common + ["front_end=upstream", f"upstream={tmp_path}/up", f"out_dir={tmp_path}/u",
                        f"feature_cache={tmp_path}/fc"]
    speech = run_finetune(load_run_config(None, up_args))
    assert "audiorep upstream" in speech["front_end"] and speech["laa_parameters"] > 0
    cached = sorted(p.name.split("-")[0] for p in (tmp_path / "fc").glob("*.safetensors"))  # <split>-<key>
    assert cached == ["dev", "test", "train"]
    again = run_finetune(load_run_config(None, up_args))  # same seed, features read back from the cache
    assert again["test"] == speech["test"]
    # another run seed keeps the same (random-weight) front end: its cached features are reused, not recomputed
    run_finetune(load_run_config(None, up_args + ["seed=5", f"out_dir={tmp_path}/u5"]))
    assert len(list((tmp_path / "fc").iterdir())) == 3


def test_config_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown key 'nonsense'.*valid: .*out_dir"):
        load_run_config(None, ["nonsense=1"])
    with pytest.raises(ConfigError, match="front_end"):
        load_run_config(None, ["front_end=hubert"])
    with pytest.raises(ConfigError, match="key=value"):
        load_run_config(None, ["lr"])
    # a typo here used to surface as a KeyError after the first fine-tuning epoch
    with pytest.raises(ConfigError, match="select_metric must be one of"):
        load_run_config(None, ["select_metric=corr"])
    assert load_run_config(None, ["select_metric=Corr"]).select_metric == "Corr"
    bad = tmp_path / "bad.yaml"
    bad.write_text("lr: [1, 2\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_run_config(str(bad))


def test_missing_transcript_is_named(tmp_path):
    root = write_corpus(tmp_path / "c", (3, 1, 1))
    rows = [json.loads(x) for x in (root / "train.jsonl").read_text().splitlines()]
    rows[1]["text"] = ""
    (root / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    from transformers import RobertaTokenizerFast  # noqa: F401  (tokenizer class used by the loader)

    from audiorep.multimodal.teasel_run import load_examples

    class Tok:
        def __call__(self, text, **kw):
            return {"input_ids": [0, 5, 2]}

    cfg = load_run_config(None, [f"data={root}"])
    with pytest.raises(ConfigError, match="train-1"):
        load_examples(cfg, "train", Tok())
    assert torch.is_tensor(torch.zeros(1))



def test_finetune_refuses_max_steps_it_would_not_honour(tmp_path, capsys):
    from audiorep.cli import main

    config = Path(__file__).resolve().parents[2] / "recipes" / "configs" / "teasel" / "finetune_text.yaml"
    code = main(["teasel", "finetune", "--config", str(config),
                 f"out_dir={tmp_path / 'ft'}", "max_steps=3"])
    assert code == 2
    err = capsys.readouterr().err
    assert "max_steps=3: fine-tuning runs epochs=" in err and err.count("\n") == 1
    assert not (tmp_path / "ft").exists()  # refused before anything was built or written
