import pytest
import torch
from torch import nn

from aigc_helpers import set_seed
from aigc_helpers.autoencoder import Autoencoder, AutoencoderConfig
from aigc_helpers.diffusion import DDPM, DDPMConfig, ddpm_loss_fn
from aigc_helpers.text2image import (FASHION_NOUNS, Captioner, TextConditionedUNet, TextEncoder, TextEncoderConfig,
                                     TextToImagePipeline, WordTokenizer, caption_vocabulary, shade)
from aigc_helpers.unet import UNet, UNetConfig

# --------------------------------------------------------------------------- shade and captions


def test_shade_of_hand_made_images():
    x = torch.zeros(4, 1, 6, 6)
    x[0, 0, :2, :2] = 0.5                                               # 4 pixels of 0.5, the rest background
    x[1, 0, 0, :3] = torch.tensor([0.2, 0.4, 0.9])                      # mean of the garment pixels: 0.5
    x[1, 0, 5, 5] = 0.05                                                # below the threshold: background
    x[3] = 1.0
    s = shade(x)
    assert s.shape == (4,)
    assert s[0].item() == pytest.approx(0.5)
    assert s[1].item() == pytest.approx(0.5)
    assert s[2].item() == 0.0                                           # an empty image
    assert s[3].item() == pytest.approx(1.0)
    assert shade(x, threshold=0.3)[1].item() == pytest.approx(0.65)    # 0.4 and 0.9 only


def class_images(shades_per_class: dict[int, list[float]]):
    """Images whose shade is exactly the given value (a 3x3 patch of that grey), with their labels."""
    xs, ys = [], []
    for k, values in shades_per_class.items():
        for v in values:
            img = torch.zeros(1, 6, 6)
            img[0, 1:4, 1:4] = v
            xs.append(img)
            ys.append(k)
    return torch.stack(xs), torch.tensor(ys)


def test_captioner_median_per_class_and_dark_light_split():
    x, y = class_images({0: [0.2, 0.3, 0.9], 7: [0.6, 0.7, 0.8, 0.85, 0.95]})
    cap = Captioner(x, y)
    assert cap.median.shape == (10,)
    assert cap.median[0].item() == pytest.approx(0.3) and cap.median[7].item() == pytest.approx(0.8)
    assert cap.median[3].item() == 0.5                                  # a class without images
    words = cap.shade_words(x, y)
    assert words == ["dark", "light", "light", "dark", "dark", "light", "light", "light"]
    # the same grey is dark for one class and light for another: the split is per class
    probe, _ = class_images({0: [0.5], 7: [0.5]})
    assert cap.shade_words(probe, torch.tensor([0, 7])) == ["light", "dark"]
    with pytest.raises(ValueError, match="p_shade"):
        Captioner(x, y, p_shade=1.5)


def test_phrase_grammar():
    assert Captioner.phrase(7, "dark") == "a dark sneaker"
    assert Captioner.phrase(9) == "an ankle boot"
    assert Captioner.phrase(9, "dark") == "a dark ankle boot"
    assert Captioner.phrase(1) == "trousers"                            # plural: no article
    assert Captioner.phrase(1, "light", "pants", "a picture of {}") == "a picture of light pants"
    assert Captioner.phrase(8, "light", template="a photo of {}") == "a photo of a light bag"
    assert Captioner.phrase(0) == "a t-shirt"
    assert Captioner.phrase(4, noun="jacket", template="an image of {}") == "an image of a jacket"
    assert Captioner.phrase(9, noun="boot", template="an image of {}") == "an image of a boot"


def test_captions_are_deterministic_and_use_the_vocabulary():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(10).repeat(6)                                      # 60 images, 6 per class
    x = torch.zeros(60, 1, 6, 6)
    x[:, 0, 1:4, 1:4] = (0.2 + 0.8 * torch.rand(60, generator=g))[:, None, None]
    cap = Captioner(x, y, p_shade=0.7)
    a, b = cap.captions(x, y, seed=3), cap.captions(x, y, seed=3)
    assert a == b and len(a) == 60
    assert a != cap.captions(x, y, seed=4)
    vocab = set(caption_vocabulary())
    shades = cap.shade_words(x, y)
    n_shaded = 0
    for caption, label, sw in zip(a, y.tolist(), shades):
        words = caption.split()
        assert set(words) <= vocab, caption
        assert any(noun in caption for noun in FASHION_NOUNS[label]), (caption, label)
        other = ({"dark", "light"} - {sw}).pop()
        assert other not in words, (caption, sw)                        # never the wrong shade
        n_shaded += sw in words
    assert 0.45 < n_shaded / 60 < 0.95                                  # p_shade = 0.7
    assert all(not ({"dark", "light"} & set(c.split())) for c in Captioner(x, y, p_shade=0).captions(x, y))
    assert all(sw in c.split() for c, sw in zip(Captioner(x, y, p_shade=1).captions(x, y), shades))


def test_caption_vocabulary():
    v = caption_vocabulary()
    assert v == sorted(set(v))
    for w in ("a", "an", "dark", "light", "photo", "picture", "image", "of", "ankle", "boot", "t-shirt", "purse"):
        assert w in v
    assert "ankle boot" not in v and "{}" not in v


# --------------------------------------------------------------------------- tokenizer


@pytest.fixture
def tok():
    return WordTokenizer(caption_vocabulary(), max_len=10)


def test_tokenizer_round_trip_and_padding(tok):
    assert tok.vocab_size == len(caption_vocabulary()) + 2
    assert tok.itos[:2] == ["<pad>", "<start>"]
    prompts = ["a photo of a dark sneaker", "trousers", "", "an image of a light ankle boot"]
    ids = tok.encode(prompts)
    assert ids.shape == (4, 10) and ids.dtype == torch.long
    assert (ids[:, 0] == 1).all()                                       # <start> first, even for ""
    lengths = [6, 1, 0, 7]
    for row, p, n in zip(ids, prompts, lengths):
        assert tok.decode(row) == p
        assert (row[1:1 + n] > 1).all() and (row[1 + n:] == 0).all()   # words, then padding 0
    assert torch.equal(tok.encode("trousers"), ids[1:2])
    assert torch.equal(tok.encode("A Photo of a DARK sneaker."), ids[:1])   # lower case, punctuation dropped
    assert torch.equal(tok.encode("dark,sneaker"), tok.encode("dark sneaker"))


def test_tokenizer_errors(tok):
    with pytest.raises(ValueError, match=r"unknown word\(s\) \['cat'\].*sneaker"):
        tok.encode("a dark cat")
    with pytest.raises(ValueError, match="at most 9 fit"):
        tok.encode("a photo of a dark dark dark dark dark sneaker")     # 10 words + <start>
    tok.encode("a photo of a dark dark dark dark sneaker")              # 9 words + <start> = 10 fit
    with pytest.raises(ValueError, match="must be a string"):
        tok.encode([5])
    with pytest.raises(ValueError, match="must be a string"):
        tok.tokens(None)
    with pytest.raises(ValueError, match="must be a string"):
        tok.encode(["a bag", None])


# --------------------------------------------------------------------------- text encoder


def small_encoder(vocab_size):
    set_seed(0)
    return TextEncoder(TextEncoderConfig(vocab_size=vocab_size, max_len=10, d_model=16, n_layer=2, n_head=2)).eval()


def test_text_encoder_shape_and_padding_is_masked(tok):
    enc = small_encoder(tok.vocab_size)
    ids = tok.encode(["a dark sneaker", "trousers", "a photo of a light bag"])
    h, keep = enc(ids)
    assert h.shape == (3, 10, 16)
    assert torch.equal(keep, ids != 0)
    for i, n in enumerate([4, 2, 7]):                                    # real tokens, <start> included
        alone, keep_alone = enc(ids[i:i + 1, :n])                        # no padding at all
        assert keep_alone.all()
        assert torch.allclose(h[i, :n], alone[0], atol=1e-5)             # padding changes no real position
    # words matter, and so does their order
    a, _ = enc(tok.encode("a dark sneaker"))
    b, _ = enc(tok.encode("a light sneaker"))
    c, _ = enc(tok.encode("sneaker a dark"))
    assert not torch.allclose(a[0, 3], b[0, 3], atol=1e-3)              # "sneaker" reads its neighbours
    assert not torch.allclose(a[0, 1:4].sort(0).values, c[0, 1:4].sort(0).values, atol=1e-3)


def test_text_encoder_errors(tok):
    enc = small_encoder(tok.vocab_size)
    with pytest.raises(ValueError, match="token ids"):
        enc(torch.ones(2, 11, dtype=torch.long))                         # longer than max_len
    with pytest.raises(ValueError, match="token ids"):
        enc(torch.full((1, 3), tok.vocab_size))
    with pytest.raises(ValueError, match="token ids"):
        enc(torch.ones(3, dtype=torch.long))


# --------------------------------------------------------------------------- the text-conditioned U-Net


def small_text_unet(vocab_size, image_size=4, channels=2, mults=(1, 2), attn_levels=None):
    enc = small_encoder(vocab_size)
    set_seed(1)
    unet = UNet(UNetConfig(in_channels=channels, image_size=image_size, base=8, mults=mults, t_dim=8, groups=4,
                           context_dim=16, n_head=2, attn_levels=attn_levels))
    net = TextConditionedUNet(enc, unet).eval()
    torch.manual_seed(2)                                                 # an untrained net that is not silent
    nn.init.normal_(unet.out.weight, std=0.3)
    for layer in unet.attn:
        nn.init.normal_(layer.attn.out_proj.weight, std=0.5)
    return net


def test_text_unet_reads_the_prompt(tok):
    net = small_text_unet(tok.vocab_size)
    x, t = torch.randn(2, 2, 4, 4, generator=torch.Generator().manual_seed(0)), torch.tensor([3, 9])
    with torch.no_grad():
        a = net(x, t, tok.encode(["a dark sneaker", "a bag"]))
        b = net(x, t, tok.encode(["a light sneaker", "a bag"]))
    assert a.shape == x.shape
    assert not torch.allclose(a[0], b[0], atol=1e-4)
    assert torch.allclose(a[1], b[1], atol=1e-6)                         # each example reads its own prompt
    with pytest.raises(ValueError, match="context_dim"):
        TextConditionedUNet(small_encoder(tok.vocab_size), UNet(UNetConfig(base=8, t_dim=8, groups=4, context_dim=8)))


def test_null_condition_and_check_condition(tok):
    net = small_text_unet(tok.vocab_size)
    ids = tok.encode(["a dark sneaker", "trousers", "an ankle boot"])
    empty = net.null_condition(ids)
    assert empty.shape == ids.shape and empty.dtype == ids.dtype
    assert torch.equal(empty, tok.encode(["", "", ""]))                  # the empty prompt: <start> then padding
    assert torch.equal(net.check_condition(ids, 3), ids)
    assert net.check_condition(ids.int(), 3).dtype == torch.long
    with pytest.raises(ValueError, match=r"2 prompts.*got shape \(3, 10\)"):
        net.check_condition(ids, 2)
    with pytest.raises(ValueError, match="<start>"):
        net.check_condition(ids[:, 1:], 3)
    with pytest.raises(ValueError, match="3 prompts"):
        net.check_condition(ids[:, 0], 3)
    with pytest.raises(ValueError, match="3 prompts"):
        net.check_condition(torch.cat([ids, ids[:, :2]], 1), 3)          # longer than max_len
    bad = ids.clone()
    bad[0, 2] = tok.vocab_size
    with pytest.raises(ValueError, match="token ids must be in"):
        net.check_condition(bad, 3)


def test_label_dropout_with_prompts(tok):
    net = small_text_unet(tok.vocab_size)
    seen = []
    inner = net.forward

    def spy(x, t, labels):
        seen.append(labels)
        return inner(x, t, labels)

    net.forward = spy
    model = DDPM(net, (2, 4, 4), DDPMConfig(T=10, images=False, p_uncond=0.3))
    ids = tok.encode(["a dark sneaker", "trousers", "an image of a bag", "a coat"] * 100)
    loss = ddpm_loss_fn(model, (torch.randn(400, 2, 4, 4), ids))
    assert torch.isfinite(loss)
    got = seen[0]
    dropped = (got == net.null_condition(ids)).all(1)
    assert ((got == ids).all(1) | dropped).all()                         # whole rows, never a part
    assert dropped.float().mean().item() == pytest.approx(0.3, abs=0.08)


def test_guidance_and_negative_prompts_with_text(tok):
    net = small_text_unet(tok.vocab_size)
    model = DDPM(net, (2, 4, 4), DDPMConfig(T=20, images=False))
    xt, t = torch.randn(2, 2, 4, 4, generator=torch.Generator().manual_seed(0)), torch.tensor([5, 15])
    ids, neg = tok.encode(["a dark sneaker", "a bag"]), tok.encode(["a light sneaker", "a dress"])
    with torch.no_grad():
        cond, uncond, negative = net(xt, t, ids), net(xt, t, tok.encode(["", ""])), net(xt, t, neg)
        assert not torch.allclose(cond, uncond, atol=1e-4)
        guided = model.predict_eps(xt, t, ids, guidance_scale=3.0)
        assert torch.allclose(guided, uncond + 3 * (cond - uncond), atol=1e-4)
        steered = model.predict_eps(xt, t, ids, guidance_scale=3.0, uncond_labels=neg)
        assert torch.allclose(steered, negative + 3 * (cond - negative), atol=1e-4)
        assert not torch.allclose(steered, guided, atol=1e-4)


def test_cross_attention_maps(tok):
    net = small_text_unet(tok.vocab_size, image_size=8, channels=1)
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([3, 9])
    ids = tok.encode(["a dark sneaker", "a bag"])
    maps = net.cross_attention_maps(x, t, ids)
    assert maps.shape == (2, 10, 8, 8)                                   # (B, L, H, W) at full resolution
    assert (maps >= 0).all()
    assert torch.allclose(maps.sum(1), torch.ones(2, 8, 8), atol=1e-5)
    assert all(not layer.keep_weights and layer.attn.last_weights is None for layer in net.unet.attn)
    # the maps are the mean of the two full-resolution layers' weights, over heads
    for layer in (net.unet.attn[0], net.unet.attn[-1]):
        layer.keep_weights = True
    with torch.no_grad():
        net(x, t, ids)
    w = (net.unet.attn[0].attn.last_weights + net.unet.attn[-1].attn.last_weights).mean(1) / 2   # (B, 64, L)
    assert torch.allclose(maps, w.transpose(1, 2).reshape(2, 10, 8, 8), atol=1e-6)
    assert not torch.allclose(maps[0], maps[1], atol=1e-4)              # different prompts, different maps


def test_cross_attention_maps_at_the_finest_level_with_attention(tok):
    net = small_text_unet(tok.vocab_size, image_size=8, channels=1, attn_levels=(1,))   # no 8x8 cross-attention
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([3, 9])
    ids = tok.encode(["a dark sneaker", "a bag"])
    maps = net.cross_attention_maps(x, t, ids)
    assert maps.shape == (2, 10, 4, 4)
    for layer in net.unet.attn:                                          # down, middle and up, all at 4x4
        layer.keep_weights = True
    with torch.no_grad():
        net(x, t, ids)
    w = torch.stack([layer.attn.last_weights for layer in net.unet.attn]).mean(dim=(0, 2))   # (B, 16, L)
    assert torch.allclose(maps, w.transpose(1, 2).reshape(2, 10, 4, 4), atol=1e-6)


# --------------------------------------------------------------------------- the pipeline


def tiny_pipeline(tok, crop=6):
    set_seed(3)
    ae = Autoencoder(AutoencoderConfig(image_size=8, channels=(8, 8), latent_channels=2, groups=4)).eval()
    net = small_text_unet(tok.vocab_size, image_size=2, channels=2, mults=(1,))   # latents (2, 2, 2)
    ddpm = DDPM(net, ae.latent_shape, DDPMConfig(T=20, schedule="scaled_linear", images=False))
    return TextToImagePipeline(ae, ddpm, tok, scale=0.5, crop=crop)


def test_pipeline_end_to_end(tok):
    pipe = tiny_pipeline(tok)
    out = pipe(["a dark sneaker", "trousers"], num_inference_steps=3, guidance_scale=2.0, num_images_per_prompt=3,
               generator=torch.Generator().manual_seed(0))
    assert out.shape == (6, 1, 6, 6)                                     # 2 prompts x 3 images, cropped 8 -> 6
    assert out.min() >= 0 and out.max() <= 1
    again = pipe(["a dark sneaker", "trousers"], num_inference_steps=3, guidance_scale=2.0, num_images_per_prompt=3,
                 generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    other = pipe(["a dark sneaker", "trousers"], num_inference_steps=3, guidance_scale=2.0, num_images_per_prompt=3,
                 generator=torch.Generator().manual_seed(1))
    assert not torch.allclose(out, other, atol=1e-4)
    one = pipe("a bag", num_inference_steps=2, generator=torch.Generator().manual_seed(0))
    assert one.shape == (1, 1, 6, 6)
    full = tiny_pipeline(tok, crop=None)("a bag", num_inference_steps=2, generator=torch.Generator().manual_seed(0))
    assert full.shape == (1, 1, 8, 8) and torch.allclose(full[..., 1:7, 1:7], one, atol=1e-6)   # centre crop


def test_pipeline_latents_prompts_and_negative_prompts(tok):
    pipe = tiny_pipeline(tok)
    z_T = torch.randn(2, 2, 2, 2, generator=torch.Generator().manual_seed(0))
    kw = dict(num_inference_steps=3, guidance_scale=3.0, latents=z_T)
    images, z = pipe(["a dark sneaker", "a bag"], return_latents=True, **kw)
    assert z.shape == (2, 2, 2, 2)
    assert torch.allclose(images, pipe.decode(z))
    assert torch.allclose(pipe.decode(z), pipe.autoencoder.decode(z / 0.5)[..., 1:7, 1:7])   # the scale is undone
    assert torch.allclose(images, pipe(["a dark sneaker", "a bag"], negative_prompt="", **kw), atol=1e-6)
    negative = pipe(["a dark sneaker", "a bag"], negative_prompt="a light sneaker", **kw)
    assert not torch.allclose(images, negative, atol=1e-4)
    per_prompt = pipe(["a dark sneaker", "a bag"], negative_prompt=["a light sneaker", ""], **kw)
    assert torch.allclose(per_prompt[0], negative[0], atol=1e-6) and torch.allclose(per_prompt[1], images[1], atol=1e-6)
    # a prompt's images in a batch are the images it gets alone
    alone = pipe("a bag", num_inference_steps=3, guidance_scale=3.0, latents=z_T[1:])
    assert torch.allclose(alone, images[1:], atol=1e-5)
    # several images per prompt: one negative prompt per prompt still lines up
    z4 = torch.randn(4, 2, 2, 2, generator=torch.Generator().manual_seed(1))
    four = pipe(["a dark sneaker", "a bag"], num_inference_steps=3, guidance_scale=3.0, latents=z4,
                num_images_per_prompt=2, negative_prompt=["a light sneaker", ""])
    plain = pipe(["a dark sneaker", "a bag"], num_inference_steps=3, guidance_scale=3.0, latents=z4,
                 num_images_per_prompt=2)
    assert torch.allclose(four[2:], plain[2:], atol=1e-6) and not torch.allclose(four[:2], plain[:2], atol=1e-4)


def test_pipeline_errors(tok):
    pipe = tiny_pipeline(tok)
    with pytest.raises(ValueError, match="at least one prompt"):
        pipe([], num_inference_steps=2)
    with pytest.raises(ValueError, match="one negative prompt, or one per prompt"):
        pipe(["a bag", "a coat", "a dress"], num_inference_steps=2, negative_prompt=["a shirt", "a top"])
    with pytest.raises(ValueError, match="num_images_per_prompt"):
        pipe("a bag", num_inference_steps=2, num_images_per_prompt=0)
    with pytest.raises(ValueError, match="unknown word"):
        pipe("a purple bag", num_inference_steps=2)
    with pytest.raises(ValueError, match="x_T must have shape"):
        pipe("a bag", num_inference_steps=2, latents=torch.randn(2, 2, 2, 2))


def test_a_text_conditioned_ddpm_samples_without_a_prompt_as_with_the_empty_one():
    tok = WordTokenizer(caption_vocabulary())
    set_seed(0)
    net = TextConditionedUNet(TextEncoder(TextEncoderConfig(vocab_size=tok.vocab_size, d_model=16, n_head=2, n_layer=1)),
                              UNet(UNetConfig(base=8, t_dim=8, groups=4, context_dim=16, n_head=2)))
    m = DDPM(net, (1, 8, 8), DDPMConfig(T=10))
    none = m.sample(2, generator=torch.Generator().manual_seed(0))
    empty = m.sample(2, labels=tok.encode(["", ""]), generator=torch.Generator().manual_seed(0))
    assert torch.allclose(none, empty)
