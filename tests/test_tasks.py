import pytest
import torch

from aigc_helpers.tasks import BOS, EOS, PAD, SequenceTask


def test_solve_each_kind():
    assert SequenceTask("reverse").solve("hello") == "olleh"
    assert SequenceTask("copy").solve("hello") == "hello"
    assert SequenceTask("sort").solve("hello") == "ehllo"
    # sorting follows the order of the symbols, not the alphabet
    assert SequenceTask("sort", symbols="zyx", min_len=1).solve("xzy") == "zyx"


def test_encode_decode_round_trip_and_specials():
    task = SequenceTask(symbols="abc", min_len=1, max_len=5)
    assert task.vocab_size == 6
    assert task.encode("cab") == [5, 3, 4]
    assert task.decode([BOS, 5, 3, 4, EOS, 3, 3]) == "cab"       # stops at <eos>
    assert task.decode(torch.tensor([5, PAD, 4])) == "cb"        # skips <pad>
    with pytest.raises(ValueError, match="unknown symbols"):
        task.encode("abz")
    with pytest.raises(ValueError, match="length"):
        task.encode("abcabc")
    with pytest.raises(ValueError, match="outside the vocabulary"):
        task.decode([3, 6])


def test_batch_is_teacher_forcing_layout():
    task = SequenceTask("reverse", symbols="abc", min_len=1, max_len=4)
    src, tgt_in, tgt_out = task.batch(["ab", "abc"])
    a, b, c = 3, 4, 5
    assert src.tolist() == [[a, b, PAD], [a, b, c]]
    assert tgt_in.tolist() == [[BOS, b, a, PAD], [BOS, c, b, a]]
    assert tgt_out.tolist() == [[b, a, EOS, PAD], [c, b, a, EOS]]
    # tgt_out is tgt_in shifted left by one wherever tgt_in is not padding
    assert torch.equal(tgt_out[:, :-1][tgt_in[:, 1:] != PAD], tgt_in[:, 1:][tgt_in[:, 1:] != PAD])
    with pytest.raises(ValueError, match="empty"):
        task.batch([])


def test_sample_lengths_and_split_is_disjoint_and_reproducible():
    task = SequenceTask(symbols="abcd", min_len=2, max_len=5)
    assert task.n_strings == 4**2 + 4**3 + 4**4 + 4**5
    texts = task.sample(500, torch.Generator().manual_seed(0))
    assert {len(t) for t in texts} == {2, 3, 4, 5}
    assert set("".join(texts)) == set("abcd")
    train, test = task.split(300, 100, seed=1)
    assert len(set(train)) == 300 and len(set(test)) == 100
    assert not set(train) & set(test)
    assert (train, test) == task.split(300, 100, seed=1)
    assert train != task.split(300, 100, seed=2)[0]
    with pytest.raises(ValueError, match="distinct strings"):
        task.split(task.n_strings, 1)


def test_bad_configuration():
    with pytest.raises(ValueError, match="kind"):
        SequenceTask("shuffle")
    with pytest.raises(ValueError, match="repeats"):
        SequenceTask(symbols="aab")
    with pytest.raises(ValueError, match="min_len"):
        SequenceTask(min_len=5, max_len=3)
