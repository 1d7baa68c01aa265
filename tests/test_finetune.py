import pytest
import torch

from aigc_helpers import set_seed
from aigc_helpers.data import CharTokenizer
from aigc_helpers.finetune import GPTClassifier, SnippetData, accuracy, snippet_dataset, speech_text, speeches
from aigc_helpers.gpt import GPT, GPTConfig

PLAY = """THE TRAGEDY OF TESTING

ACT I.

SCENE I. A room.

[Enter HAMLET and HORATIO.]

HAMLET.
To be, or not to be:  [Aside.]
   that is the question.

Hor.
No more.

SIR TOBY.
A line with a stage direction [Exit.] inside.

No more.
This block has no speaker tag.

[Exeunt.]
"""


def test_speeches_keeps_only_spoken_words():
    got = speeches(PLAY)
    assert got == [("HAMLET", "To be, or not to be:\nthat is the question."),
                   ("Hor", "No more."),
                   ("SIR TOBY", "A line with a stage direction inside.")]
    text = speech_text(PLAY)
    assert "HAMLET" not in text and "[" not in text and "ACT" not in text
    assert text.count("\n\n") == 2
    with pytest.raises(ValueError, match="no speeches"):
        speech_text("ACT I.\n\nSCENE I.\n")


def _texts():
    numbers = "".join(f"{i:03d}" for i in range(100))               # snippet i of length 3 reads i
    return {"a": numbers, "b": numbers[::-1]}


def test_snippet_dataset_splits_by_position_without_overlap():
    tok = CharTokenizer.from_text("0123456789")
    ds = snippet_dataset(_texts(), tok, length=3, n_train=50, n_test=10, test_frac=0.2, seed=0)
    assert isinstance(ds, SnippetData) and ds.classes == ["a", "b"]
    assert ds.train_x.shape == (100, 3) and ds.test_x.shape == (20, 3)
    assert ds.train_y.tolist() == [0] * 50 + [1] * 50 and ds.test_y.tolist() == [0] * 10 + [1] * 10
    position = lambda x: int(tok.decode(x))                          # which snippet of text "a" this is
    train_pos = [position(x) for x in ds.train_x[:50]]
    test_pos = [position(x) for x in ds.test_x[:10]]
    assert len(set(train_pos)) == 50 and len(set(test_pos)) == 10   # no snippet drawn twice
    assert max(train_pos) < 80 <= min(test_pos)                      # first 80 % train, the rest test
    assert ds.decode(tok, "test", 12)[1] == "b"
    assert ds.decode(tok, "train", 0)[0] == f"{train_pos[0]:03d}"
    again = snippet_dataset(_texts(), tok, length=3, n_train=50, n_test=10, test_frac=0.2, seed=0)
    assert torch.equal(again.train_x, ds.train_x)                    # seeded
    other = snippet_dataset(_texts(), tok, length=3, n_train=50, n_test=10, test_frac=0.2, seed=1)
    assert not torch.equal(other.train_x, ds.train_x)


@pytest.mark.parametrize("kw, msg", [(dict(n_train=100), "only"), (dict(test_frac=1.0), "test_frac"),
                                     (dict(length=0), "positive")])
def test_snippet_dataset_bad_input(kw, msg):
    tok = CharTokenizer.from_text("0123456789")
    args = dict(length=3, n_train=5, n_test=3) | kw
    with pytest.raises(ValueError, match=msg):
        snippet_dataset(_texts(), tok, **args)
    with pytest.raises(ValueError, match="two texts"):
        snippet_dataset({"a": _texts()["a"]}, tok, 3, 5, 3)


def _gpt(seed=0):
    set_seed(seed)
    return GPT(GPTConfig(vocab_size=11, block_size=16, n_layer=2, n_head=2, n_embd=16))


def test_classifier_features_are_the_gpt_hidden_states():
    gpt = _gpt().eval()
    idx = torch.randint(0, 11, (3, 16))
    # the GPT's own logits are its LM head applied to the same final hidden states
    clf_last = GPTClassifier(gpt, 4, pool="last").eval()
    lm_logits, _ = gpt(idx)                                          # (3, 16, 11)
    assert torch.allclose(gpt.lm_head(clf_last.features(idx)), lm_logits[:, -1], atol=1e-5)
    clf_mean = GPTClassifier(gpt, 4, pool="mean").eval()
    assert torch.allclose(gpt.lm_head(clf_mean.features(idx)), lm_logits.mean(1), atol=1e-5)  # linear head
    logits, loss = clf_mean(idx, torch.tensor([0, 1, 2]))
    assert logits.shape == (3, 4)
    assert torch.allclose(loss, torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2])))
    assert clf_mean(idx)[1] is None
    assert clf_mean.gpt is gpt                                       # wraps, does not copy, the body


def test_classifier_learns_a_separable_task_and_accuracy():
    torch.manual_seed(0)
    x = torch.randint(0, 5, (64, 8))
    x[32:] += 5                                                      # class 1 uses tokens 5..9
    y = torch.tensor([0] * 32 + [1] * 32)
    clf = GPTClassifier(_gpt(), 2, dropout=0.0)
    opt = torch.optim.AdamW(clf.parameters(), lr=3e-3)
    assert accuracy(clf, x, y) <= 0.75
    for _ in range(60):
        loss = clf(x, y)[1]
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert accuracy(clf, x, y, batch_size=10) == 1.0
    assert clf.training                                              # accuracy() restores the mode


def test_classifier_bad_input():
    gpt = _gpt()
    with pytest.raises(ValueError, match="two classes"):
        GPTClassifier(gpt, 1)
    with pytest.raises(ValueError, match="pool"):
        GPTClassifier(gpt, 2, pool="max")
    clf = GPTClassifier(gpt, 2)
    with pytest.raises(ValueError, match="block_size"):
        clf(torch.zeros(2, 17, dtype=torch.long))
    with pytest.raises(ValueError, match="shape"):
        clf(torch.zeros(17, dtype=torch.long))
    with pytest.raises(ValueError, match="equal length"):
        accuracy(clf, torch.zeros(3, 4, dtype=torch.long), torch.zeros(2, dtype=torch.long))
