"""SUPERB's corpus side: LibriSpeech + lexicon -> phones (PR), VoxCeleb1 identification split (SID), IEMOCAP
-> emotion + session and the ER folds, and the bundled corpus's SUPERB labels.

The trees are tiny copies of real recordings (the bundled synth audio, cut short). Where the installed s3prl
package holds the reference code (emotion preprocessing and expert, VoxCeleb1 dataset, the CTC text
encoder), the same tree goes through it and the results must agree; those tests skip without s3prl.
s3prl's LibriSpeech phone corpus module is not in the installed package, so PR targets are checked against a
hand-written lexicon.
"""

from __future__ import annotations

import json
import os
import sys
import types
from pathlib import Path

import pytest
import soundfile as sf

from audiorep.cli import main
from audiorep.data import get_corpus, read_manifest
from audiorep.data.iemocap import ER_CLASSES, read_iemocap
from audiorep.data.lexicon import ARPABET_PHONES, LEXICON_FILES, read_lexicon
from audiorep.data.manifest import Utterance
from audiorep.data.superb import SYNTH_STYLE_CLASSES, collapse_frame_phones, er_folds, synth_superb_labels
from audiorep.errors import ConfigError

SYNTH_AUDIO = sorted((Path(__file__).resolve().parents[2] / "audiorep" / "data" / "synth" / "audio").glob("*.ogg"))


def _copy_audio(k: int, dest: Path, seconds: float = 0.3) -> None:
    """Write the first ``seconds`` of the k-th bundled recording to ``dest`` (format from its suffix)."""
    wav, sr = sf.read(SYNTH_AUDIO[k % len(SYNTH_AUDIO)], frames=int(seconds * 16000), dtype="float32")
    dest.parent.mkdir(parents=True, exist_ok=True)
    sf.write(dest, wav, sr)


def _prepare(capsys, *args) -> tuple[int, str]:
    rc = main(["data", "prepare", *map(str, args)])
    return rc, capsys.readouterr().err


# ---------------------------------------------------------------- PR: LibriSpeech + lexicon

LEX1 = "HELLO\tHH AH0 L OW1\nWORLD\tW ER1 L D\nREAD\tR IY1 D\nREAD\tR EH1 D\n\nDON'T\tD OW1 N T\n"
LEX2 = "HELLO\tHH EH0 L OW1\nTHERE  DH EH1 R\n"  # HELLO again (the first file wins); spaces also separate


def _librispeech(root: Path) -> None:
    texts = {"train-clean-100": ["HELLO WORLD", "READ THERE"], "dev-clean": ["DON'T READ"],
             "test-clean": ["WORLD HELLO THERE"], "train-clean-360": ["ZYZZYVA"]}
    k = 0
    for subset, lines in texts.items():
        d = root / subset / "19" / "198"
        trans = []
        for i, text in enumerate(lines):
            uid = f"19-198-{i:04d}"
            _copy_audio(k, d / f"{uid}.flac")
            trans.append(f"{uid} {text}")
            k += 1
        (d / "19-198.trans.txt").write_text("\n".join(trans) + "\n")


def test_librispeech_pr_phones_end_to_end(tmp_path, capsys):
    _librispeech(tmp_path / "LS")
    (tmp_path / "lex1.txt").write_text(LEX1)
    (tmp_path / "lex2.txt").write_text(LEX2)
    out = tmp_path / "out"
    rc, err = _prepare(capsys, "librispeech", tmp_path / "LS", out, "--lexicon", tmp_path / "lex1.txt",
                       "--lexicon", tmp_path / "lex2.txt")
    assert rc == 0, err
    assert sorted(p.name for p in out.glob("*.jsonl")) == ["dev.jsonl", "test.jsonl", "train.jsonl"]  # no 360
    train, dev, test = (read_manifest(out / f"{s}.jsonl") for s in ("train", "dev", "test"))
    assert [u.labels["phones"] for u in train] == [["HH", "AH0", "L", "OW1", "W", "ER1", "L", "D"],
                                                  ["R", "IY1", "D", "DH", "EH1", "R"]]
    assert dev[0].labels["phones"] == ["D", "OW1", "N", "T", "R", "IY1", "D"]
    assert test[0].labels["phones"] == ["W", "ER1", "L", "D", "HH", "AH0", "L", "OW1", "DH", "EH1", "R"]
    assert train[0].text == "hello world"  # the transcript itself is kept as before
    # the files' order decides: lex2 first gives its HELLO
    lex = read_lexicon([tmp_path / "lex2.txt", tmp_path / "lex1.txt"])
    assert lex["HELLO"] == ["HH", "EH0", "L", "OW1"] and lex["READ"] == ["R", "IY1", "D"]


def test_pr_tokens_are_in_s3prl_phone_vocabulary():
    text = pytest.importorskip("s3prl.downstream.ctc.text")
    enc = text.WordTextEncoder(list(ARPABET_PHONES))
    ids = enc.encode(" ".join(["HH", "AH0", "L", "OW1", "SIL", "ZH"]))
    assert enc.unk_idx not in ids and ids[-1] == enc.eos_idx and len(ARPABET_PHONES) == 71
    assert enc.decode(ids) == "HH AH0 L OW1 SIL ZH"


def test_librispeech_pr_errors(tmp_path, capsys):
    _librispeech(tmp_path / "LS")
    (tmp_path / "lex1.txt").write_text(LEX1)
    rc, err = _prepare(capsys, "librispeech", tmp_path / "LS", tmp_path / "o1", "--phones")
    assert rc == 2 and err.count("\n") == 1
    assert all(name in err for name in LEXICON_FILES) and "github.com/s3prl/s3prl" in err
    # THERE is in lex2 only: missing word names the word, the utterance and the lexicon file
    rc, err = _prepare(capsys, "librispeech", tmp_path / "LS", tmp_path / "o2", "--lexicon", tmp_path / "lex1.txt")
    assert rc == 2 and err.count("\n") == 1
    assert "'THERE'" in err and "'19-198-0001'" in err and str(tmp_path / "lex1.txt") in err
    assert not (tmp_path / "o2").exists() or not list((tmp_path / "o2").glob("*.jsonl"))
    rc, err = _prepare(capsys, "librispeech", tmp_path / "LS", tmp_path / "o3", "--lexicon", tmp_path / "nope.txt")
    assert rc == 2 and "nope.txt: no such lexicon file" in err
    (tmp_path / "bad.txt").write_text("HELLO\tHH AH L OW1\n")  # a vowel without its stress digit
    with pytest.raises(ConfigError, match=r"bad\.txt:1: phone 'AH' of 'HELLO'"):
        read_lexicon([tmp_path / "bad.txt"])
    (tmp_path / "bad.txt").write_text("HELLO\n")
    with pytest.raises(ConfigError, match=r"bad\.txt:1: word 'HELLO' has no phones"):
        read_lexicon([tmp_path / "bad.txt"])


# ---------------------------------------------------------------- SID: VoxCeleb1

VOX_SPLIT = ["1 id10001/vidA/00001.wav", "2 id10001/vidA/00002.wav", "3 id10001/vidB/00001.wav",
             "1 id10270/vidC/00001.wav", "2 id10270/vidC/00002.wav", "3 id10270/vidC/00003.wav",
             "1 id11251/vidD/00001.wav"]


def _voxceleb1(root: Path) -> None:
    for i, line in enumerate(VOX_SPLIT):
        rel = line.split()[1]
        half = "test" if rel.startswith("id10270") else "dev"  # the release's test half holds id10270..id10309
        _copy_audio(i, root / half / "wav" / rel)
    (root / "iden_split.txt").write_text("\n".join(VOX_SPLIT) + "\n")


def test_voxceleb1_identification_split(tmp_path, capsys):
    _voxceleb1(tmp_path / "vox")
    rc, err = _prepare(capsys, "voxceleb1", tmp_path / "vox", tmp_path / "out")
    assert rc == 0, err
    got = {s: read_manifest(tmp_path / "out" / f"{s}.jsonl") for s in ("train", "dev", "test")}
    assert [u.id for u in got["train"]] == ["id10001-vidA-00001", "id10270-vidC-00001", "id11251-vidD-00001"]
    assert [u.labels["speaker_index"] for u in got["train"]] == [0, 269, 1250]
    assert [u.speaker for u in got["test"]] == ["id10001", "id10270"]
    assert "/test/wav/" in got["test"][1].path and "/dev/wav/" in got["test"][0].path
    (tmp_path / "vox" / "iden_split.txt").write_text("1 id00012/vidA/00001.wav\n")  # a VoxCeleb2 id
    _copy_audio(0, tmp_path / "vox" / "dev" / "wav" / "id00012" / "vidA" / "00001.wav")
    rc, err = _prepare(capsys, "voxceleb1", tmp_path / "vox", tmp_path / "out2")
    assert rc == 2 and "iden_split.txt:1: speaker folder 'id00012' is not a VoxCeleb1 speaker id" in err


def _stub_librosa(monkeypatch):
    """s3prl's readers import librosa only for find_files (a sorted recursive search for audio files)."""
    if "librosa" in sys.modules and hasattr(sys.modules["librosa"], "util"):
        return
    util = types.ModuleType("librosa.util")

    def find_files(directory, ext=None, recurse=True, case_sensitive=False, limit=None, offset=0):
        exts = ext or ["aac", "au", "flac", "m4a", "mp3", "ogg", "wav"]
        return sorted(str(p) for p in Path(directory).rglob("*") if p.suffix[1:].lower() in exts)

    util.find_files = find_files
    lib = types.ModuleType("librosa")
    lib.util = util
    monkeypatch.setitem(sys.modules, "librosa", lib)
    monkeypatch.setitem(sys.modules, "librosa.util", util)


def test_voxceleb1_matches_s3prl(tmp_path, monkeypatch):
    pytest.importorskip("s3prl")
    pytest.importorskip("torchaudio")
    _stub_librosa(monkeypatch)
    from s3prl.downstream.voxceleb1 import dataset as vox

    monkeypatch.setattr(vox, "CACHE_PATH", str(tmp_path / "cache"))  # s3prl caches file lists in its package
    _voxceleb1(tmp_path / "vox")
    from audiorep.data.readers import read_voxceleb1

    ours = read_voxceleb1(tmp_path / "vox")
    for split in ("train", "dev", "test"):
        ref = vox.SpeakerClassifiDataset(split, tmp_path / "vox", str(tmp_path / "vox" / "iden_split.txt"))
        assert [u.path for u in ours.splits[split]] == [str(Path(p).resolve()) for p in ref.dataset]
        assert [u.labels["speaker_index"] for u in ours.splits[split]] == ref.label


# ---------------------------------------------------------------- ER: IEMOCAP

# per session: (label file, [(turn suffix, emotion)]); the files are created in reverse name order so that
# creation order and name order differ
IEMO_FILES = {
    "Ses0{s}F_script01_1.txt": [("F000", "neu"), ("F001", "exc"), ("M000", "fru"), ("M001", "ang"), ("M002", "xxx")],
    "Ses0{s}M_impro02.txt": [("F000", "sad"), ("M000", "hap"), ("M001", "neu"), ("M002", "sad")],
}


def _iemocap(root: Path, sessions=(1, 2, 3, 4, 5), skip_wav: str = "Ses02M_impro02_M002") -> list[tuple]:
    """Write an IEMOCAP-layout tree; returns the expected (turn, emotion, session) rows in SUPERB order."""
    expect, k = [], 0
    for s in sessions:
        sdir = root / f"Session{s}"
        (sdir / "dialog" / "EmoEvaluation").mkdir(parents=True)
        for fname in sorted(IEMO_FILES, reverse=True):
            dialog = fname.format(s=s)[:-4]
            lines = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
            for suffix, emo in IEMO_FILES[fname]:
                turn = f"{dialog}_{suffix}"
                lines += [f"[6.2901 - 8.2357]\t{turn}\t{emo}\t[2.5000, 2.5000, 2.5000]",
                          f"C-E1:\t{emo.title()};\t()", ""]
                if turn != skip_wav:
                    _copy_audio(k, sdir / "sentences" / "wav" / dialog / f"{turn}.wav", seconds=0.1)
                    k += 1
            (sdir / "dialog" / "EmoEvaluation" / fname.format(s=s)).write_text("\n".join(lines) + "\n")
    for s in sessions:
        for fname in sorted(IEMO_FILES):
            dialog = fname.format(s=s)[:-4]
            for suffix, emo in IEMO_FILES[fname]:
                turn = f"{dialog}_{suffix}"
                if emo in ("neu", "hap", "ang", "sad", "exc") and turn != skip_wav:
                    expect.append((turn, "hap" if emo == "exc" else emo, s))
    return expect


def test_iemocap_end_to_end(tmp_path, capsys):
    expect = _iemocap(tmp_path / "IEMOCAP")
    rc, err = _prepare(capsys, "iemocap", tmp_path / "IEMOCAP", tmp_path / "out")
    assert rc == 0, err
    assert "no wav for labelled turn Ses02M_impro02_M002" in err  # dropped as SUPERB drops it, and said so
    utts = read_manifest(tmp_path / "out" / "all.jsonl")
    assert [(u.id, u.labels["emotion"], u.labels["session"]) for u in utts] == expect
    assert len(utts) == 5 * 7 - 1 and utts[0].speaker == "Ses01F" and utts[0].num_samples == 1600
    folds = er_folds(utts)
    assert len(folds) == 5
    for s, fold in enumerate(folds, 1):
        assert {u.labels["session"] for u in fold["test"]} == {s}
        rest = [u.id for u in utts if u.labels["session"] != s]
        assert sorted(u.id for u in fold["train"] + fold["dev"]) == sorted(rest)
        assert len(fold["train"]) == int(0.8 * len(rest))
    # the dev draw depends on the list order, as SUPERB's does
    assert [u.id for u in er_folds(utts[::-1])[0]["dev"]] != [u.id for u in folds[0]["dev"]]


def test_iemocap_folds_match_s3prl(tmp_path, monkeypatch):
    """The same tree through s3prl's own preprocessing and expert: same test lists, same train/dev draws."""
    pytest.importorskip("s3prl")
    torchaudio = pytest.importorskip("torchaudio")
    import torch

    _stub_librosa(monkeypatch)
    from s3prl.downstream.emotion import IEMOCAP_preprocess as prep
    from s3prl.downstream.emotion import expert as ex

    root = tmp_path / "IEMOCAP"
    _iemocap(root)
    # s3prl lists label files in os.listdir order (file-system dependent); audiorep lists them sorted
    real_listdir = os.listdir
    monkeypatch.setattr(prep.os, "listdir", lambda p: sorted(real_listdir(p)))
    prep.main(str(root))
    ours = read_manifest(_write_all(tmp_path, read_iemocap(root).splits["all"]))
    folds = er_folds(ours)

    def load(path, *a, **k):  # torchaudio 2.x needs torchcodec to read files; the samples do not matter here
        wav, sr = sf.read(path, dtype="float32")
        return torch.from_numpy(wav)[None], sr

    monkeypatch.setattr(torchaudio, "load", load)
    rel = {u.id: Path(u.path).relative_to(root).as_posix() for u in ours}
    for s, fold in enumerate(folds, 1):
        test_meta = json.loads((root / "meta_data" / f"Session{s}" / "test_meta_data.json").read_text())
        assert [m["path"] for m in test_meta["meta_data"]] == [rel[u.id] for u in fold["test"]]
        assert [m["label"] for m in test_meta["meta_data"]] == [u.labels["emotion"] for u in fold["test"]]
        cfg = {"datarc": {"root": str(root), "meta_data": str(root / "meta_data"), "test_fold": f"fold{s}",
                          "pre_load": False, "train_batch_size": 2, "eval_batch_size": 2, "num_workers": 0,
                          "valid_ratio": 0.2},
               "modelrc": {"projector_dim": 4, "select": "UtteranceLevel",
                           "UtteranceLevel": {"pooling": "MeanPooling"}}}
        e = ex.DownstreamExpert(upstream_dim=8, downstream_expert=cfg, expdir=str(tmp_path / "exp"))
        meta = e.train_dataset.dataset.meta_data
        assert [meta[i]["path"] for i in e.train_dataset.indices] == [rel[u.id] for u in fold["train"]]
        assert [meta[i]["path"] for i in e.dev_dataset.indices] == [rel[u.id] for u in fold["dev"]]
        assert e.train_dataset.dataset.class_dict == {c: i for i, c in enumerate(ER_CLASSES)}
    # s3prl's meta-data lists, read back with --meta-data, give the same manifest
    assert [(u.id, u.labels) for u in read_iemocap(root, meta_data=root / "meta_data").splits["all"]] == \
        [(u.id, u.labels) for u in ours]


def _write_all(tmp_path, utts):
    from audiorep.data import write_manifest

    return write_manifest(utts, tmp_path / "m" / "all.jsonl")


def test_iemocap_meta_data_order(tmp_path, capsys):
    """--meta-data takes SUPERB's lists and their order, which is not the sorted order."""
    root = tmp_path / "IEMOCAP"
    expect = _iemocap(root)
    by_session = {s: [(t, e) for t, e, ss in expect if ss == s][::-1] for s in range(1, 6)}
    md = tmp_path / "meta_data"
    for s in range(1, 6):
        rows = [{"path": f"Session{s}/sentences/wav/{t.rsplit('_', 1)[0]}/{t}.wav", "label": e, "speaker": t[:6]}
                for t, e in by_session[s]]
        (md / f"Session{s}").mkdir(parents=True)
        (md / f"Session{s}" / "test_meta_data.json").write_text(json.dumps({"labels": {}, "meta_data": rows}))
    rc, err = _prepare(capsys, "iemocap", root, tmp_path / "out", "--meta-data", md)
    assert rc == 0, err
    got = [(u.id, u.labels["emotion"]) for u in read_manifest(tmp_path / "out" / "all.jsonl")]
    assert got == [r for s in range(1, 6) for r in by_session[s]]
    # a train list that disagrees with the other sessions' tests cannot be one manifest
    (md / "Session1" / "train_meta_data.json").write_text(json.dumps({"meta_data": []}))
    with pytest.raises(ConfigError, match=r"Session1/train_meta_data\.json: does not list the other sessions"):
        read_iemocap(root, meta_data=md)
    os.remove(md / "Session1" / "train_meta_data.json")
    rows = json.loads((md / "Session3" / "test_meta_data.json").read_text())
    rows["meta_data"][0]["label"] = "fru"
    (md / "Session3" / "test_meta_data.json").write_text(json.dumps(rows))
    with pytest.raises(ConfigError, match=r"Session3/test_meta_data\.json: meta_data\[0\]: label 'fru'"):
        read_iemocap(root, meta_data=md)


def test_iemocap_bad_inputs(tmp_path, capsys):
    root = tmp_path / "IEMOCAP"
    _iemocap(root, sessions=(1, 2))
    label_file = root / "Session2" / "dialog" / "EmoEvaluation" / "Ses02M_impro02.txt"
    good = label_file.read_text()
    label_file.write_text(good.replace("\tsad\t", "\tsadness\t", 1))
    rc, err = _prepare(capsys, "iemocap", root, tmp_path / "o1")
    assert rc == 2 and err.count("\n") == 1 and "Ses02M_impro02.txt:3: emotion 'sadness'" in err
    label_file.write_bytes(good.encode() + b"\xff\xfe")
    rc, err = _prepare(capsys, "iemocap", root, tmp_path / "o2")
    assert rc == 2 and err.count("\n") == 1 and "Ses02M_impro02.txt: unreadable EmoEvaluation file" in err
    label_file.write_text("[1.0 - 2.0]\tSes02M_impro02_F000\n")
    with pytest.raises(ConfigError, match=r"Ses02M_impro02\.txt:1: expected"):
        read_iemocap(root)
    label_file.write_text(good)
    for f in (root / "Session2" / "dialog" / "EmoEvaluation").iterdir():  # session 2 keeps nothing
        f.write_text(f.read_text().replace("\tneu\t", "\tfru\t").replace("\tsad\t", "\tfru\t")
                     .replace("\thap\t", "\tfru\t").replace("\tang\t", "\tfru\t").replace("\texc\t", "\tfru\t"))
    with pytest.raises(ConfigError, match=r"Session2/dialog/EmoEvaluation: session 2 has no utterance"):
        read_iemocap(root)
    _librispeech(tmp_path / "LS")  # a LibriSpeech tree handed over as IEMOCAP
    rc, err = _prepare(capsys, "iemocap", tmp_path / "LS", tmp_path / "o3")
    assert rc == 2 and err.count("\n") == 1 and "not an IEMOCAP release tree" in err and "LS" in err


def test_er_folds_bad_inputs():
    def u(i, emo="neu", session=1):
        return Utterance(f"u{i}", f"/x/u{i}.wav", 1600, 16000, "s", "", {"emotion": emo, "session": session})

    utts = [u(i, session=1 + i % 4) for i in range(12)]  # nothing in session 5
    with pytest.raises(ConfigError, match="session 5 has no utterances"):
        er_folds(utts)
    with pytest.raises(ConfigError, match=r"u3.*labels\['emotion'\] = 'exc'"):
        er_folds(utts[:3] + [u(3, "exc")])
    with pytest.raises(ConfigError, match=r"u0.*labels\['session'\] = 6"):
        er_folds([u(0, session=6)])
    with pytest.raises(ConfigError, match="valid_ratio"):
        er_folds(utts, valid_ratio=float("nan"))


# ---------------------------------------------------------------- the bundled corpus

def test_collapse_frame_phones():
    names = ["sil", "t", "aa"]
    assert collapse_frame_phones([0, 0, 1, 1, 2, 0, 1, 1, 0], names) == ["t", "aa", "t"]
    assert collapse_frame_phones([1, 1, 0, 1], names) == ["t", "t"]  # silence between keeps both


def test_synth_manifests_carry_superb_labels():
    corpus = get_corpus("synth")
    derived = synth_superb_labels()
    utts = corpus.utterances()
    assert len(utts) == len(derived) == 660
    for split in corpus.splits:  # shipped rows = what recipes/synth_superb_labels.py derives
        for x in corpus.manifest(split):
            assert x.labels["phones"] == derived[x.id]["phones"] and x.labels["session"] == derived[x.id]["session"]
    for x in utts:
        assert x.labels["session"] == (int(x.speaker[3:]) - 1) % 5 + 1  # spkNN: 6 voices x 5 variants in order
        assert x.labels["phones"] and "sil" not in x.labels["phones"]
    first = next(x for x in utts if x.id == "spk01-001")  # "in my view, the game felt so lovely"
    assert first.labels["phones"][:9] == ["ih", "n", "m", "ay", "v", "y", "uw", "dh", "ax"]
    folds = er_folds(utts, label_key="style", classes=SYNTH_STYLE_CLASSES)
    for s, fold in enumerate(folds, 1):
        assert len(fold["test"]) == 132 and {x.labels["session"] for x in fold["test"]} == {s}
        assert len({x.speaker for x in fold["test"]}) == 6  # one variant of every base voice
        assert len(fold["train"]) == int(0.8 * 528) and len(fold["dev"]) == 528 - int(0.8 * 528)


# ---------------------------------------------------------------- the three trees through `audiorep superb`


def test_prepared_trees_run_superb_quick(tmp_path, capsys):
    """Each tiny real-corpus tree goes through `data prepare` and then one `superb --quick` plan: PR on the
    LibriSpeech tree, SID on the VoxCeleb1 tree, ER's five folds on the IEMOCAP tree."""
    _librispeech(tmp_path / "LS")
    (tmp_path / "lex1.txt").write_text(LEX1)
    (tmp_path / "lex2.txt").write_text(LEX2)
    _voxceleb1(tmp_path / "VOX")
    _iemocap(tmp_path / "IEMOCAP")
    for args in (("librispeech", tmp_path / "LS", tmp_path / "ls", "--lexicon", tmp_path / "lex1.txt",
                  "--lexicon", tmp_path / "lex2.txt"),
                 ("voxceleb1", tmp_path / "VOX", tmp_path / "vox"),
                 ("iemocap", tmp_path / "IEMOCAP", tmp_path / "iemo")):
        rc, err = _prepare(capsys, *args)
        assert rc == 0, err
    out = tmp_path / "superb"
    rc = main(["superb", "--upstream", "logmel", "--librispeech", str(tmp_path / "ls"), "--voxceleb1",
               str(tmp_path / "vox"), "--iemocap", str(tmp_path / "iemo"), "--quick", "--steps", "2",
               "--lrs", "1e-2", "--device", "cpu", "--no-progress", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    report = json.loads((out / "superb.json").read_text())
    assert report["data"] == {"librispeech": str(tmp_path / "ls"), "voxceleb1": str(tmp_path / "vox"),
                              "iemocap": str(tmp_path / "iemo")}
    pr, sid, er = (report["tasks"][t] for t in ("pr", "sid", "er"))
    assert pr["utterances"] == {"train": 2, "dev": 1, "test": 1} and pr["metric"] == "PER %"
    assert sid["utterances"] == {"train": 3, "dev": 2, "test": 2} and 0 <= sid["value"] <= 100
    assert er["folds"] == 5 and er["utterances"] == 34 and len(er["runs"]) == 5
    assert all(r["steps"] == 2 and r["patience"] is None for r in (pr, sid, er))  # real corpora: no early stop
