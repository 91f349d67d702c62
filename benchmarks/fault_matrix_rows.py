"""The rows of benchmarks/fault_matrix.py: each builds one bad input next to good utterances.

A row's ``build(root)`` writes its input under ``root`` and returns a ``Case``: what to run (the
recipe's stages 2-3 in a recipe dir, a command, or a Python API call) and what the outcome must
show. Audio is tiny (0.3 s tones) so that the whole matrix runs in seconds, bar the rows that
start torch in a subprocess (``slow``).
"""
import atexit
import functools
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import soundfile as sf
import yaml

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "egs2" / "TEMPLATE" / "harmonifuse1"
SMOKE_CONFIG = ROOT / "egs2" / "mini_emo" / "harmonifuse1" / "conf" / "tuning" / "train_smoke.yaml"
GOOD = {"g1": "THE RED DOG", "g2": "A BLUE CAT SEES", "g3": "TWO BIRDS SING"}
GOOD_SER = {"g1": "neutral", "g2": "happy", "g3": "sad"}
SEC, F0 = 0.3, 440.0
# the tokenizer's text (with GOOD): every letter, so that a 60-piece vocabulary fits
PANGRAMS = {"p1": "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG", "p2": "PACK MY BOX WITH FIVE DOZEN LIQUOR JUGS",
            "p3": "SPHINX OF BLACK QUARTZ JUDGE MY VOW"}


@dataclass
class Case:
    """A built input: what to run, and what the outcome must show.

    ``cmd`` (run in ``cwd``) or ``call`` (a Python API call; an exception means it stopped).
    ``names``: strings the outcome must hold (for a stop: the first is the offending file, in
    the message's first line, as the user named it: data dirs relative to the recipe dir; for
    ok: the warnings must name each dropped utterance).
    ``good``: utterances that must be kept; ``out_dir``: the data dir that keeps them.
    ``check``: data checks of a row that works (a list of problems, empty when right)."""

    cmd: Optional[List[str]] = None
    cwd: Optional[Path] = None
    call: Optional[Callable[[], object]] = None
    names: Sequence[str] = ()
    good: Sequence[str] = ()
    out_dir: Optional[Path] = None
    check: Optional[Callable[[], List[str]]] = None


@dataclass
class Row:
    key: str  # short name for --rows and the test ids
    title: str  # the input, as the table shows it
    build: Callable[[Path], Case]
    expect: str  # "ok" (works; a bad utterance is dropped with a warning) or "stop"
    needs: Optional[str] = None  # an executable the row needs (skipped without it)
    slow: bool = False  # starts torch/espnet in a subprocess (tens of seconds)


# --------------------------------------------------------------------------- inputs
def tone(sec: float = SEC, fs: int = 16000, f0: float = F0, channels: int = 1) -> np.ndarray:
    t = np.arange(int(round(sec * fs))) / fs
    x = (0.3 * np.sin(2 * np.pi * f0 * t)).astype(np.float32)
    return np.stack([x, 0.1 * np.sin(2 * np.pi * 1.5 * f0 * t).astype(np.float32)], axis=1) if channels == 2 else x


def write_lines(path: Path, lines: Sequence[str], encoding: str = "utf-8") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes("".join(f"{ln}\n" for ln in lines).encode(encoding))


def recipe_dir(root: Path) -> Path:
    """A recipe dir as egs2/<corpus>/harmonifuse1 holds it (links to the TEMPLATE's scripts)."""
    d = root / "recipe"
    d.mkdir(parents=True, exist_ok=True)
    for name in ("harmonifuse.sh", "path.sh", "cmd.sh", "scripts"):
        if not (d / name).exists():
            (d / name).symlink_to(TEMPLATE / name)
    return d


def good_wavs(d: Path, task: str = "asr") -> Dict[str, Tuple[str, str]]:
    """id -> (wav.scp entry, text) of the good utterances: 0.3 s tones at 16 kHz, one pitch each."""
    texts = GOOD if task == "asr" else GOOD_SER
    out = {}
    for i, (utt, text) in enumerate(texts.items()):
        path = d / f"{utt}.wav"
        sf.write(path, tone(f0=300.0 + 100 * i), 16000, subtype="PCM_16")
        out[utt] = (str(path), text)
    return out


def stage_case(root: Path, bad: Dict[str, Tuple[str, str]], task: str = "asr", names: Sequence[str] = (),
               also_good: Sequence[str] = (), check=None, order=sorted) -> Case:
    """Recipe stages 2-3 (format, filter) on data/train: the good utterances plus ``bad``."""
    rec = recipe_dir(root)
    src = rec / "data" / "train"
    entries = {**good_wavs(root, task), **bad}
    ids = order(entries)
    write_lines(src / "wav.scp", [f"{u} {entries[u][0]}" for u in ids if entries[u][0] is not None])
    write_lines(src / "text", [f"{u} {entries[u][1]}".rstrip() for u in ids if entries[u][1] is not None])
    write_lines(src / "utt2spk", [f"{u} spk1" for u in ids])
    write_lines(src / "spk2utt", ["spk1 " + " ".join(sorted(ids))])
    extra = ["--ser_labels", "neutral,happy,angry,sad"] if task == "ser" else []
    cmd = ["bash", "harmonifuse.sh", "--stage", "2", "--stop_stage", "3", "--nj", "1", "--python", sys.executable,
           f"--{task}_train_set", "train", f"--{task}_valid_set", "train", "--min_sec", "0.1", "--max_sec", "1.0",
           *extra]
    return Case(cmd=cmd, cwd=rec, names=names, good=[*GOOD, *also_good], out_dir=rec / "dump" / "raw" / "train",
                check=lambda: good_problems(root, task) + (check() if check else []))


def dumped(root: Path, name: str) -> Dict[str, str]:
    """A key-value file of the formatted data dir."""
    path = root / "recipe" / "dump" / "raw" / "train" / name
    return dict((ln.split(maxsplit=1) + [""])[:2] for ln in path.read_text(encoding="utf-8").splitlines())


def converted(root: Path, utt: str) -> Tuple[np.ndarray, object]:
    """The formatted audio of ``utt`` and its soundfile info."""
    path = root / "recipe" / dumped(root, "wav.scp")[utt]
    return sf.read(path, dtype="float32")[0], sf.info(path)


def good_problems(root: Path, task: str) -> List[str]:
    """Problems of the good utterances in the output: another text, or other audio than their input."""
    texts, problems = dumped(root, "text"), []
    for i, (utt, text) in enumerate((GOOD if task == "asr" else GOOD_SER).items()):
        if utt in texts and texts[utt] != text:
            problems.append(f"{utt}: text '{texts[utt]}', expected '{text}'")
        if utt in texts and np.abs(converted(root, utt)[0] - tone(f0=300.0 + 100 * i)).max() > 1e-3:
            problems.append(f"{utt}: its formatted audio differs from its input")
    return problems


def check_16k_mono(root: Path, utt: str, n_in: int, fs_in: int, reference: Optional[np.ndarray] = None) -> List[str]:
    """Problems of ``utt``'s output: not 16 kHz mono PCM_16, wrong length, pitch or samples."""
    x, info = converted(root, utt)
    problems = []
    if (info.samplerate, info.channels, info.subtype) != (16000, 1, "PCM_16"):
        problems.append(f"{utt}: {info.samplerate} Hz, {info.channels} channel(s), {info.subtype}")
    want = round(n_in * 16000 / fs_in)
    if abs(info.frames - want) > 1:
        problems.append(f"{utt}: {info.frames} samples, expected {want}")
    peak = np.argmax(np.abs(np.fft.rfft(x))) * 16000 / len(x)
    if abs(peak - F0) > 2 * 16000 / len(x):
        problems.append(f"{utt}: spectral peak at {peak:.0f} Hz, expected {F0:.0f} Hz")
    if reference is not None and np.abs(x - reference).max() > 1e-3:
        problems.append(f"{utt}: samples differ from the input by {np.abs(x - reference).max():.4f}")
    return problems


def bad_utt(root: Path, write: Callable[[Path], None], text: str = "A BAD ONE", name: str = "bad.wav"):
    """A stage case with one bad audio file written by ``write``; the warning must name it."""
    path = root / name
    write(path)
    return stage_case(root, {"bad": (str(path), text)}, names=["'bad'", str(path)])


def audio_ok(root: Path, subtype: str = "PCM_16", fmt: str = "WAV", fs: int = 16000, channels: int = 1,
             entry: Callable[[Path], str] = str) -> Case:
    """A stage case whose odd-format utterance ``conv`` must come out 16 kHz mono, the same audio
    (the channel mean for stereo)."""
    path = root / f"conv.{fmt.lower()}"
    data = tone(fs=fs, channels=channels)
    sf.write(path, data, fs, subtype=subtype, format=fmt)
    want = None if fs != 16000 else data.mean(axis=1) if channels == 2 else data
    return stage_case(root, {"conv": (entry(path), "CONVERTED ONE")}, also_good=["conv"],
                      check=lambda: check_16k_mono(root, "conv", len(data), fs, want))


def _first_bytes(n_of: Callable[[int], int]):
    def write(p: Path) -> None:
        sf.write(p, tone(), 16000, subtype="PCM_16", format="WAV")
        raw = p.read_bytes()
        p.write_bytes(raw[: n_of(len(raw))])
    return write


# --------------------------------------------------------------------------- rows on data dirs
def long_case(root: Path) -> Case:
    sf.write(root / "bad.wav", tone(1.5), 16000)
    return stage_case(root, {"bad": (str(root / "bad.wav"), "A LONG ONE")}, names=["'bad'", "longer than --max_sec"])


def silence_case(root: Path) -> Case:
    sf.write(root / "quiet1.wav", np.zeros(int(SEC * 16000)), 16000)
    return stage_case(root, {"quiet1": (str(root / "quiet1.wav"), "NOTHING SAID")}, names=["quiet1"],
                      also_good=["quiet1"])


def unsorted_case(root: Path) -> Case:
    def check():
        out = root / "recipe" / "dump" / "raw" / "train"
        from espnet_harmonifuse.data.kaldi_dir import validate_data_dir
        return [f"output: {p}" for p in validate_data_dir(out)]
    return stage_case(root, {}, order=lambda ids: sorted(ids, reverse=True), check=check)


def duplicate_case(root: Path, same: bool) -> Case:
    case = stage_case(root, {})
    scp = case.cwd / "data" / "train" / "wav.scp"
    lines = scp.read_text().splitlines()
    dup = lines[1] if same else f"g2 {root / 'g1.wav'}"
    write_lines(scp, lines[:2] + [dup] + lines[2:])
    case.names = ["g2"] if same else ["data/train/wav.scp", "'g2'", "lines 2 and 3", "distinct ids"]
    return case


def label_case(root: Path) -> Case:
    case = stage_case(root, {"bad": (str(root / "g1.wav"), "excited")}, task="ser")
    case.names = ["data/train/text", "'bad'", "'excited'", "ser_labels"]
    return case


def latin1_case(root: Path) -> Case:
    case = stage_case(root, {})
    text = case.cwd / "data" / "train" / "text"
    write_lines(text, [*(f"{u} {t}" for u, t in GOOD.items()), "latin1 CAFÉ CRÈME"], encoding="latin-1")
    write_lines(case.cwd / "data" / "train" / "wav.scp",
                [f"{u} {root / (u + '.wav')}" for u in GOOD] + [f"latin1 {root / 'g1.wav'}"])
    case.names = ["data/train/text", "line 4", "UTF-8", "iconv"]
    return case


def mismatch_case(root: Path) -> Case:
    sf.write(root / "w.wav", tone(), 16000)
    case = stage_case(root, {"onlywav": (str(root / "w.wav"), None), "onlytext": (None, "NO AUDIO")})
    case.names = ["'onlywav'", "'onlytext'"]
    return case


def all_bad_case(root: Path) -> Case:
    case = stage_case(root, {})
    for utt in GOOD:
        (root / f"{utt}.wav").write_text("not audio\n")
    case.good = []
    case.names = ["data/train", "no utterance left", "data/train/wav.scp"]
    return case


def db_sh_case(root: Path) -> Case:
    """egs2/iemocap_librispeech/harmonifuse1 stage 1 with db.sh paths that do not exist."""
    rec = recipe_dir(root)
    (rec / "local").mkdir(exist_ok=True)
    src = ROOT / "egs2" / "iemocap_librispeech" / "harmonifuse1" / "local" / "data.sh"
    (rec / "local" / "data.sh").write_bytes(src.read_bytes())
    (rec / "local" / "data.sh").chmod(0o755)
    write_lines(rec / "db.sh", [f"IEMOCAP={root}/no_such/IEMOCAP_full_release",
                                f"LIBRISPEECH={root}/no_such/LibriSpeech"])
    return Case(cmd=["bash", "harmonifuse.sh", "--stage", "1", "--stop_stage", "1", "--python", sys.executable],
                cwd=rec, names=[f"{rec}/db.sh", "IEMOCAP", "set IEMOCAP="])


# --------------------------------------------------------------------------- rows on models and configs
@functools.lru_cache(maxsize=None)
def tiny_assets() -> Dict[str, Path]:
    """Once per process: a sentencepiece model, an ASR-only tiny config (A), a config of other
    sizes (B) with a checkpoint of its model, and an exp dir of A as training writes it."""
    import torch

    from espnet_harmonifuse.bin import tokenizer_train
    from espnet_harmonifuse.bin.common import load_train_args
    from espnet_harmonifuse.tasks import HarmoniFuseTask

    d = Path(tempfile.mkdtemp(prefix="fault_matrix_assets_"))
    atexit.register(shutil.rmtree, d, True)
    conf = yaml.safe_load(SMOKE_CONFIG.read_text())
    conf.update(tasks=conf["tasks"][:1], model_conf={}, max_epoch=1, batch_size=2)
    write_lines(d / "text", [f"{u} {t}" for u, t in {**GOOD, **PANGRAMS}.items()])
    (d / "A.yaml").write_text(yaml.safe_dump(conf))
    tokenizer_train.main(["--config", str(d / "A.yaml"), "--text", str(d / "text"), "--out_dir", str(d / "bpe"),
                          "--vocab_size", "60"])
    conf["bpemodel"] = str(d / "bpe" / "bpe.model")
    (d / "A.yaml").write_text(yaml.safe_dump(conf))
    conf["decoder_conf"]["config"]["hidden_size"] = 48
    (d / "B.yaml").write_text(yaml.safe_dump(conf))
    torch.save(HarmoniFuseTask.build_model(load_train_args(str(d / "B.yaml"))).state_dict(), d / "B.pth")
    args = load_train_args(str(d / "A.yaml"))
    (d / "exp_A").mkdir()
    (d / "exp_A" / "config.yaml").write_text(yaml.safe_dump(vars(args)))
    torch.save(HarmoniFuseTask.build_model(args).state_dict(), d / "exp_A" / "valid.loss.best.pth")
    return {"dir": d, "A": d / "A.yaml", "B_pth": d / "B.pth", "exp_A": d / "exp_A", "text": d / "text"}


def python_m(module: str, *args: str) -> List[str]:
    return [sys.executable, "-m", module, *map(str, args)]


def config_key_case(root: Path) -> Case:
    conf = yaml.safe_load(SMOKE_CONFIG.read_text())
    conf["max_epochs"] = 3  # max_epoch misspelt
    (root / "train.yaml").write_text(yaml.safe_dump(conf))
    return Case(cmd=python_m("espnet2.bin.harmonifuse_train", "--config", root / "train.yaml", "--output_dir",
                             root / "exp"), names=[str(root / "train.yaml"), "max_epochs"])


def init_param_case(root: Path) -> Case:
    a = tiny_assets()
    shape = root / "speech_shape"
    write_lines(shape, [f"{u} {int(SEC * 16000)}" for u in GOOD])
    entries = good_wavs(root)
    write_lines(root / "wav.scp", [f"{u} {p}" for u, (p, _) in entries.items()])
    data = []
    for mode in ("train", "valid"):
        data += [f"--{mode}_task_data", f"asr:{root / 'wav.scp'},speech,sound", f"--{mode}_task_data",
                 f"asr:{a['text']},text,text", f"--{mode}_task_shape_file", f"asr:{shape}"]
    return Case(cmd=python_m("espnet2.bin.harmonifuse_train", "--config", a["A"], "--output_dir", root / "exp",
                             "--init_param", a["B_pth"], *data), names=[str(a["B_pth"])])


def from_pretrained_case(root: Path) -> Case:
    a = tiny_assets()
    exp = root / "exp"
    exp.mkdir()
    (exp / "config.yaml").write_bytes((a["exp_A"] / "config.yaml").read_bytes())
    (exp / "valid.loss.best.pth").write_bytes(a["B_pth"].read_bytes())

    def call():
        from espnet_harmonifuse import HarmoniFuse
        HarmoniFuse.from_pretrained(exp)
    return Case(call=call, names=[str(exp / "valid.loss.best.pth"), "Fix"])


def decode_8k_case(root: Path) -> Case:
    a = tiny_assets()
    sf.write(root / "8k.wav", tone(fs=8000), 8000)

    def call():
        from espnet_harmonifuse import HarmoniFuse
        HarmoniFuse.from_pretrained(a["exp_A"]).decode([str(root / "8k.wav")], task="asr")
    return Case(call=call, names=[str(root / "8k.wav"), "16 kHz"])


def vocab_case(root: Path, size: int) -> Case:
    a = tiny_assets()
    return Case(cmd=python_m("espnet_harmonifuse.bin.tokenizer_train", "--config", a["A"], "--text", a["text"],
                             "--out_dir", root / "bpe", "--vocab_size", size), names=[str(a["text"]), "Fix"])


def _rate_row(fs: int) -> Row:
    return Row(f"{fs // 1000}khz", f"{fs / 1000:g} kHz wav", lambda r: audio_ok(r, fs=fs), "ok")


ROWS: List[Row] = [
    Row("empty", "empty wav (0 samples)", lambda r: bad_utt(r, lambda p: sf.write(p, np.zeros(0), 16000)), "ok"),
    Row("corrupt", "corrupt wav (RIFF + garbage)",
        lambda r: bad_utt(r, lambda p: p.write_bytes(b"RIFF\x24\x00\x00\x00WAVEgarbage" * 20)), "ok"),
    Row("header_cut", "truncated wav (cut in its header)", lambda r: bad_utt(r, _first_bytes(lambda n: 30)), "ok"),
    Row("data_cut", "truncated wav (cut in its data)", lambda r: bad_utt(r, _first_bytes(lambda n: n // 2)), "ok"),
    Row("text_wav", "a text file named .wav", lambda r: bad_utt(r, lambda p: p.write_text("HELLO WORLD\n")), "ok"),
    Row("missing", "wav.scp path that does not exist", lambda r: bad_utt(r, lambda p: None, name="gone.wav"), "ok"),
    *(_rate_row(fs) for fs in (8000, 22050, 44100, 48000)),
    Row("stereo", "stereo 16 kHz wav", lambda r: audio_ok(r, channels=2), "ok"),
    Row("pcm24", "24-bit PCM wav", lambda r: audio_ok(r, "PCM_24"), "ok"),
    Row("float32", "32-bit float wav", lambda r: audio_ok(r, "FLOAT"), "ok"),
    Row("flac", "FLAC file", lambda r: audio_ok(r, fmt="FLAC"), "ok"),
    Row("pipe_cat", "pipe in wav.scp: cat x.wav |", lambda r: audio_ok(r, entry=lambda p: f"cat {p} |"), "ok"),
    Row("pipe_sox", "pipe in wav.scp: sox x.flac -t wav - |",
        lambda r: audio_ok(r, fmt="FLAC", entry=lambda p: f"sox {p} -t wav - |"), "ok", needs="sox"),
    Row("pipe_fails", "pipe in wav.scp whose command fails",
        lambda r: stage_case(r, {"bad": ("no_such_tool_xyz in.wav |", "A BAD ONE")},
                             names=["'bad'", "no_such_tool_xyz"]), "ok"),
    Row("long", "audio longer than --max_sec (1.5 s > 1 s)", long_case, "ok"),
    Row("silence", "all-silence audio", silence_case, "ok"),
    Row("id_mismatch", "wav.scp/text id mismatch", mismatch_case, "ok"),
    Row("dup_same", "duplicate id (same line twice)", lambda r: duplicate_case(r, True), "ok"),
    Row("dup_diff", "duplicate id (two different files)", lambda r: duplicate_case(r, False), "stop"),
    Row("unsorted", "unsorted wav.scp/text/utt2spk", unsorted_case, "ok"),
    Row("label", "unknown emotion label (SER)", label_case, "stop"),
    Row("empty_text", "empty transcript (ASR)",
        lambda r: stage_case(r, {"bad": (str(r / "g1.wav"), "")}, names=["'bad'", "empty transcript"]), "ok"),
    Row("latin1", "non-UTF-8 text (latin-1)", latin1_case, "stop"),
    Row("all_bad", "every utterance unreadable", all_bad_case, "stop"),
    Row("db_sh", "db.sh path that does not exist", db_sh_case, "stop"),
    Row("decode_8k", "8 kHz wav to HarmoniFuse.decode", decode_8k_case, "stop"),
    Row("from_pretrained", "checkpoint of another config to from_pretrained", from_pretrained_case, "stop"),
    Row("config_key", "YAML config with an unknown key", config_key_case, "stop", slow=True),
    Row("init_param", "checkpoint of another config to --init_param", init_param_case, "stop", slow=True),
    Row("vocab_small", "tokenizer vocabulary too small (5)", lambda r: vocab_case(r, 5), "stop", slow=True),
    Row("vocab_large", "tokenizer vocabulary too large (5000)", lambda r: vocab_case(r, 5000), "stop", slow=True),
]
