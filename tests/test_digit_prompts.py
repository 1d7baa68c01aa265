import random

import pytest
import torch

from aigc_helpers import set_seed
from aigc_helpers.diffusion import DDPMConfig, ddpm_loss_fn
from aigc_helpers.digit_prompts import (DIGIT_NAMES, WEIGHT_SYNONYMS, BestCheckpoint, DigitCaptioner, PixelSpace,
                                        build_pipeline, digit_vocabulary, load_pipeline, model_card, save_pipeline,
                                        stroke_weight, within_prompt_diversity)
from aigc_helpers.text2image import TextEncoderConfig, WordTokenizer
from aigc_helpers.train import train
from aigc_helpers.unet import UNetConfig

BOLD, THIN = set(WEIGHT_SYNONYMS["bold"]), set(WEIGHT_SYNONYMS["thin"])

# --------------------------------------------------------------------------- stroke weight and captions


def test_stroke_weight_is_the_mean_pixel():
    x = torch.zeros(3, 1, 4, 4)
    x[0, 0, 0, :2] = 1.0                                   # 2 of 16 pixels: 0.125
    x[1, 0] = 0.5
    assert stroke_weight(x).tolist() == pytest.approx([0.125, 0.5, 0.0])
    with pytest.raises(ValueError, match="N, C, H, W"):
        stroke_weight(torch.zeros(4, 4))


def digits_with_ink(ink_per_digit: dict[int, list[float]]):
    """Images whose stroke weight is exactly the given value, with their labels."""
    xs, ys = [], []
    for k, values in ink_per_digit.items():
        for v in values:
            xs.append(torch.full((1, 4, 4), v))
            ys.append(k)
    return torch.stack(xs), torch.tensor(ys)


def test_bold_and_thin_are_relative_to_each_digits_median():
    inks = {k: [0.1 * k + 0.01, 0.1 * k + 0.02, 0.1 * k + 0.03] for k in range(10)}   # medians 0.1k + 0.02
    x, y = digits_with_ink(inks)
    cap = DigitCaptioner(x, y)
    assert cap.median.tolist() == pytest.approx([0.1 * k + 0.02 for k in range(10)])
    # one digit's bold can be another digit's thin: 0.25 is bold for a two (median 0.22), thin for a three
    probe = torch.full((2, 1, 4, 4), 0.25)
    assert cap.weights(probe, torch.tensor([2, 3])) == ["bold", "thin"]


def test_captions_name_the_digit_and_the_right_weight():
    x, y = digits_with_ink({k: [0.2, 0.3, 0.4, 0.5] for k in range(10)})
    cap = DigitCaptioner(x, y, p_weight=1.0)
    caps = cap.captions(x, y, seed=0)
    weights = cap.weights(x, y)
    for c, k, w in zip(caps, y.tolist(), weights):
        words = set(c.replace(",", " ").split())
        assert DIGIT_NAMES[k] in words or str(k) in words, c
        assert words & (BOLD if w == "bold" else THIN) and not words & (THIN if w == "bold" else BOLD), c
    assert caps == cap.captions(x, y, seed=0)              # a fixed seed gives the same captions
    assert caps != cap.captions(x, y, seed=1)


def test_p_weight_controls_how_often_the_weight_is_named():
    x, y = digits_with_ink({k: [0.2, 0.3, 0.4, 0.5] * 25 for k in range(10)})
    for p in (0.0, 0.3, 1.0):
        caps = DigitCaptioner(x, y, p_weight=p).captions(x, y, seed=0)
        share = sum(bool(set(c.split()) & (BOLD | THIN)) for c in caps) / len(caps)
        assert share == pytest.approx(p, abs=0.05)


def test_held_out_pairs_are_never_named_but_others_are():
    x, y = digits_with_ink({k: [0.2, 0.3, 0.4, 0.5] * 10 for k in range(10)})
    cap = DigitCaptioner(x, y, p_weight=1.0, held_out=((3, "bold"), (7, "thin")))
    caps, weights = cap.captions(x, y, seed=0), cap.weights(x, y)
    for c, k, w in zip(caps, y.tolist(), weights):
        named = bool(set(c.split()) & (BOLD | THIN))
        assert named == ((k, w) not in {(3, "bold"), (7, "thin")}), (c, k, w)
    with pytest.raises(ValueError, match="held_out"):
        DigitCaptioner(x, y, held_out=((3, "italic"),))


def test_phrase_grammar_and_errors():
    assert DigitCaptioner.phrase(7) == "a seven"
    assert DigitCaptioner.phrase(7, "bold") == "a bold seven"
    assert DigitCaptioner.phrase(8) == "an eight"
    rng = random.Random(0)
    assert all(" a eight" not in " " + DigitCaptioner.phrase(8, None, rng) for _ in range(50))
    with pytest.raises(ValueError, match="digit"):
        DigitCaptioner.phrase(10)
    with pytest.raises(ValueError, match="weight"):
        DigitCaptioner.phrase(1, "italic")


def test_every_caption_word_is_in_the_vocabulary():
    x, y = digits_with_ink({k: [0.2, 0.3, 0.4, 0.5] * 20 for k in range(10)})
    tok = WordTokenizer(digit_vocabulary(), max_len=8)
    caps = DigitCaptioner(x, y).captions(x, y, seed=3)
    ids = tok.encode(caps)                                 # raises on an unknown word or a too-long caption
    assert ids.shape == (len(caps), 8)
    vocab = set(digit_vocabulary())
    assert {"bold", "thin", "seven", "7", "the"} <= vocab and "{d}" not in vocab and "strokes," not in vocab
    with pytest.raises(ValueError, match="unknown word"):
        tok.encode("a purple seven")


def test_captioner_rejects_a_missing_digit():
    x, y = digits_with_ink({k: [0.3] for k in range(9)})   # no nines
    with pytest.raises(ValueError, match="digit"):
        DigitCaptioner(x, y)


# --------------------------------------------------------------------------- diversity


def test_within_prompt_diversity_by_hand():
    a, b = torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2)     # distance 2 between them
    images = torch.cat([a, b, a, a])                          # prompt 1: a, b; prompt 2: a, a
    assert within_prompt_diversity(images, 2) == pytest.approx(1.0)   # (2 + 0) / 2
    three = torch.cat([a, b, 2 * b])                          # distances 2, 4, 2
    assert within_prompt_diversity(three, 3) == pytest.approx(8 / 3)
    with pytest.raises(ValueError):
        within_prompt_diversity(images, 3)


# --------------------------------------------------------------------------- the pipeline, best checkpoint, hand-over


def tiny_pipeline(seed=0):
    tok = WordTokenizer(digit_vocabulary(), max_len=8)
    set_seed(seed)
    return build_pipeline(TextEncoderConfig(vocab_size=tok.vocab_size, max_len=8, d_model=16, n_layer=1, n_head=2),
                          UNetConfig(in_channels=1, image_size=8, base=8, mults=(1, 2), context_dim=16,
                                     attn_levels=(1,), n_head=2),
                          DDPMConfig(T=20, p_uncond=0.1), tok)


def test_pixel_space_is_the_identity_and_the_pipeline_draws_images():
    x = torch.rand(2, 1, 8, 8)
    assert torch.equal(PixelSpace((1, 8, 8)).decode(x), x)
    pipe = tiny_pipeline()
    out = pipe(["a bold seven", "3"], num_inference_steps=3, num_images_per_prompt=2,
               generator=torch.Generator().manual_seed(0))
    assert out.shape == (4, 1, 8, 8) and out.min() >= 0 and out.max() <= 1
    with pytest.raises(ValueError, match="unknown word"):
        pipe("a red seven", num_inference_steps=2)


def test_build_pipeline_checks_its_parts():
    tok = WordTokenizer(digit_vocabulary(), max_len=8)
    unet = UNetConfig(in_channels=1, image_size=8, base=8, mults=(1, 2), context_dim=16, n_head=2)
    with pytest.raises(ValueError, match="tokenizer"):
        build_pipeline(TextEncoderConfig(vocab_size=5, max_len=8, d_model=16, n_head=2), unet, DDPMConfig(), tok)
    with pytest.raises(ValueError, match="images=True"):
        build_pipeline(TextEncoderConfig(vocab_size=tok.vocab_size, max_len=8, d_model=16, n_head=2), unet,
                       DDPMConfig(images=False), tok)


def test_best_checkpoint_keeps_the_lowest_loss_and_is_deterministic():
    pipe = tiny_pipeline()
    x = torch.rand(16, 1, 8, 8)
    ids = pipe.tokenizer.encode(["a seven"] * 16)
    keeper = BestCheckpoint(x, ids, repeats=1)
    assert keeper.loss(pipe.ddpm) == keeper.loss(pipe.ddpm)          # same noise at every call
    losses = [keeper(pipe.ddpm)["val_loss"]]
    first = {k: v.clone() for k, v in pipe.ddpm.state_dict().items()}
    with torch.no_grad():
        for p in pipe.ddpm.parameters():
            p.add_(torch.randn_like(p))                               # much worse weights
    losses.append(keeper(pipe.ddpm)["val_loss"])
    assert losses[1] > losses[0] and keeper.best_call == 0 and keeper.best_loss == losses[0]
    keeper.restore(pipe.ddpm)
    assert all(torch.equal(v, first[k]) for k, v in pipe.ddpm.state_dict().items())
    with pytest.raises(ValueError, match="no evaluation"):
        BestCheckpoint(x, ids).restore(pipe.ddpm)


def test_training_lowers_the_held_out_loss():
    pipe = tiny_pipeline()
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(64, 1, 8, 8)
    x[:, :, 2:6, 3:5] = 1.0                                           # one bar, always
    ids = pipe.tokenizer.encode(["a one"] * 64)
    keeper = BestCheckpoint(x[:32], ids[:32])
    before = keeper.loss(pipe.ddpm)
    train(pipe.ddpm, lambda: (x[torch.randint(0, 64, (16,), generator=g)], ids[:16]), 60, lr=3e-3,
          loss_fn=ddpm_loss_fn, eval_fn=keeper, eval_every=20, device="cpu", progress=False)
    assert keeper.best_loss < 0.8 * before


def randomised(pipe, seed):
    """The pipeline with noise added to every weight (a fresh U-Net's zero output layer draws nothing)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in pipe.ddpm.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    return pipe


def test_save_and_load_give_the_same_images(tmp_path):
    pipe = randomised(tiny_pipeline(seed=1), 1)
    folder = save_pipeline(pipe, tmp_path / "model", extra={"note": "test"})
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.pt", "vocab.json"]
    other = load_pipeline(folder)
    assert other.ddpm is not pipe.ddpm and other.tokenizer.itos == pipe.tokenizer.itos
    assert other.ddpm.net.unet.config == pipe.ddpm.net.unet.config              # tuples survive JSON
    a = pipe("the number 4, thin strokes", num_inference_steps=4, num_images_per_prompt=3,
             generator=torch.Generator().manual_seed(5))
    b = other("the number 4, thin strokes", num_inference_steps=4, num_images_per_prompt=3,
              generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    fresh = randomised(tiny_pipeline(seed=2), 2)                                 # other weights: other images
    c = fresh("the number 4, thin strokes", num_inference_steps=4, num_images_per_prompt=3,
              generator=torch.Generator().manual_seed(5))
    assert not torch.equal(a, c)


def test_load_pipeline_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_pipeline(tmp_path)


# --------------------------------------------------------------------------- model card


def test_model_card_quotes_the_numbers():
    facts = {"name": "m", "n_params": 1234, "n_train": 1348, "n_test": 449, "steps": 500, "seconds": 16.3,
             "vocab": ["a", "seven"], "judge_acc": 0.987, "acc": 0.91, "acc_empty": 0.12, "per_prompt": 17,
             "bold_rate": 1.0,
             "heldout_rate": 0.95, "fid": 19.8, "fid_real": 6.9, "fid_baseline": 45.5, "guidance": 3.0,
             "held_out": [(3, "bold")]}
    card = model_card(facts)
    for text in ("1,234 parameters", "1,348 digits", "98.7%", "91%", "12%", "100%", "95%", "19.8", "6.9", "45.5",
                 "17 images", "bold three", "a seven"):
        assert text in card, text
