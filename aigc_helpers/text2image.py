"""Stable Diffusion in miniature: captions, a text encoder, a text-conditioned U-Net, a pipeline.

Stable Diffusion (Rombach et al., 2022) has three trained parts:

1. an autoencoder (``aigc_helpers.autoencoder``) between images and small latents;
2. a text encoder that turns the prompt into one vector per token (SD v1: the
   frozen text tower of CLIP; the latent diffusion paper trained a Transformer
   jointly with the U-Net, as we do here);
3. a U-Net that predicts the noise in a latent, reading the token vectors
   through cross-attention (``aigc_helpers.unet.CrossAttention``).

``TextToImagePipeline`` ties them together with the face of Hugging Face
``diffusers``: ``pipe(prompt, num_inference_steps=20, guidance_scale=3.0)``.

The captions come from Fashion-MNIST's labels and from a property measured
on each image, its *shade* (how bright the garment is), so a prompt can say
two things: what to draw and how dark to draw it, e.g. "a photo of a dark
sneaker". Synonyms ("sneaker", "trainer") and filler words ("a photo of")
vary at random, so the text encoder must learn which words matter.

Reading order: ``shade``, ``Captioner``, ``WordTokenizer``, ``TextEncoder``,
``TextConditionedUNet``, ``TextToImagePipeline``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .transformer import EncoderBlock, sinusoidal_encoding
from .unet import UNet

# Words for each Fashion-MNIST class, in class order; the first is the class's own name.
FASHION_NOUNS = [
    ["t-shirt", "top", "tee"],
    ["trousers", "pants"],
    ["pullover", "sweater", "jumper"],
    ["dress", "frock"],
    ["coat", "jacket"],
    ["sandal"],
    ["shirt", "blouse"],
    ["sneaker", "trainer"],
    ["bag", "handbag", "purse"],
    ["ankle boot", "boot"],
]
PLURAL_NOUNS = {"trousers", "pants"}      # no "a" in front of these
TEMPLATES = ["{}", "a photo of {}", "a picture of {}", "an image of {}"]
SHADES = ("dark", "light")


def shade(x: torch.Tensor, threshold: float = 0.1) -> torch.Tensor:
    """How bright each garment is: the mean of its pixels above ``threshold`` (the background is 0).

    ``x`` (N, 1, H, W) in [0, 1]; returns (N,). An empty image has shade 0.
    """
    on = (x > threshold).float()
    return (x * on).flatten(1).sum(1) / on.flatten(1).sum(1).clamp(min=1.0)


class Captioner:
    """Writes a caption for an image from its class and its shade.

    The shade word is "dark" below the median shade of the image's class in
    the data the captioner was fitted on and "light" above it; a caption names
    it with probability ``p_shade``. Synonyms and templates are drawn at random.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, p_shade: float = 0.7):
        if not 0 <= p_shade <= 1:
            raise ValueError(f"p_shade must be in [0, 1], got {p_shade}")
        s = shade(images)
        self.median = torch.stack([s[labels == k].median() if (labels == k).any() else torch.tensor(0.5)
                                   for k in range(len(FASHION_NOUNS))])      # (10,) per-class median shade
        self.p_shade = p_shade

    def shade_words(self, images: torch.Tensor, labels: torch.Tensor) -> list[str]:
        """ "dark" or "light" for each image, relative to its class's median."""
        dark = shade(images) < self.median[labels]
        return ["dark" if d else "light" for d in dark.tolist()]

    @staticmethod
    def phrase(label: int, shade_word: str | None = None, noun: str | None = None,
               template: str = "{}") -> str:
        """A caption such as "a photo of a dark sneaker" (``noun`` defaults to the class's own name)."""
        noun = noun or FASHION_NOUNS[label][0]
        words = f"{shade_word} {noun}" if shade_word else noun
        if noun not in PLURAL_NOUNS:
            words = ("an " if words[0] in "aeiou" else "a ") + words
        return template.format(words)

    def captions(self, images: torch.Tensor, labels: torch.Tensor, seed: int = 0) -> list[str]:
        """One random caption per image (fixed ``seed``)."""
        rng = random.Random(seed)
        shades = self.shade_words(images, labels)
        out = []
        for y, sw in zip(labels.tolist(), shades):
            out.append(self.phrase(y, sw if rng.random() < self.p_shade else None,
                                   rng.choice(FASHION_NOUNS[y]), rng.choice(TEMPLATES)))
        return out


def caption_vocabulary() -> list[str]:
    """Every word a caption can use, sorted."""
    words = set(SHADES) | {"a", "an"}
    for nouns in FASHION_NOUNS:
        for n in nouns:
            words |= set(n.split())
    for t in TEMPLATES:
        words |= set(t.replace("{}", "").split())
    return sorted(words)


class WordTokenizer:
    """Prompt -> token ids: lower-case, split on spaces, ``<start>`` first, ``<pad>`` to ``max_len``.

    Every prompt, even the empty one, starts with ``<start>``, so there is
    always one token to attend to; the empty prompt "" is the "no condition"
    of classifier-free guidance, as in Stable Diffusion.
    """

    PAD, START = "<pad>", "<start>"

    def __init__(self, words: list[str], max_len: int = 10):
        self.itos = [self.PAD, self.START] + [w for w in words if w not in (self.PAD, self.START)]
        self.stoi = {w: i for i, w in enumerate(self.itos)}
        self.max_len = max_len

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def tokens(self, prompt: str) -> list[str]:
        if not isinstance(prompt, str):
            raise ValueError(f"a prompt must be a string, got {type(prompt).__name__}")
        words = prompt.lower().replace(",", " ").replace(".", " ").split()
        unknown = [w for w in words if w not in self.stoi]
        if unknown:
            raise ValueError(f"unknown word(s) {unknown}; this model knows only: {' '.join(self.itos[2:])}")
        if len(words) + 1 > self.max_len:
            raise ValueError(f"prompt has {len(words)} words; at most {self.max_len - 1} fit")
        return [self.START] + words

    def encode(self, prompts: str | list[str]) -> torch.Tensor:
        """Token ids (B, max_len), padded with 0."""
        if not isinstance(prompts, (str, list, tuple)):
            raise ValueError(f"expected a prompt (str) or a list of prompts, got {type(prompts).__name__}")
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        ids = torch.zeros(len(prompts), self.max_len, dtype=torch.long)
        for i, p in enumerate(prompts):
            toks = [self.stoi[w] for w in self.tokens(p)]
            ids[i, :len(toks)] = torch.tensor(toks)
        return ids

    def decode(self, ids: torch.Tensor) -> str:
        return " ".join(self.itos[i] for i in ids.tolist() if i > 1)


@dataclass
class TextEncoderConfig:
    vocab_size: int = 40
    max_len: int = 10             # tokens per prompt, <start> included (SD v1: 77)
    d_model: int = 64             # SD v1 (CLIP ViT-L/14 text tower): 768
    n_layer: int = 2              # SD v1: 12
    n_head: int = 4               # SD v1: 12


class TextEncoder(nn.Module):
    """Token ids (B, L) -> one vector per token (B, L, d_model), and the mask of real tokens (B, L).

    Embeddings plus sinusoidal positions, then pre-LN Transformer encoder
    blocks (Part II) in which padding is masked out, and a final LayerNorm.
    """

    def __init__(self, config: TextEncoderConfig = TextEncoderConfig()):
        super().__init__()
        c = config
        self.config = c
        self.embed = nn.Embedding(c.vocab_size, c.d_model)
        self.register_buffer("pos", sinusoidal_encoding(c.max_len, c.d_model), persistent=False)
        self.blocks = nn.ModuleList(EncoderBlock(c.d_model, c.n_head, 4 * c.d_model) for _ in range(c.n_layer))
        self.norm = nn.LayerNorm(c.d_model)

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.config
        if ids.dim() != 2 or ids.shape[1] > c.max_len or (ids < 0).any() or (ids >= c.vocab_size).any():
            raise ValueError(f"expected token ids (B, L <= {c.max_len}) in 0..{c.vocab_size - 1}, "
                             f"got shape {tuple(ids.shape)}")
        keep = ids != 0                                                    # (B, L): real tokens
        h = self.embed(ids) * c.d_model ** 0.5 + self.pos[:ids.shape[1]]   # (B, L, d)
        mask = keep[:, None, None, :]                                      # (B, 1, 1, L): keys to attend to
        for block in self.blocks:
            h = block(h, mask)
        return self.norm(h), keep


class TextConditionedUNet(nn.Module):
    """eps_theta(z_t, t, prompt): a text encoder and a U-Net with cross-attention, trained together.

    Its condition is the prompt's token ids (B, L), passed where a class-
    conditional U-Net takes labels, so ``diffusion.DDPM`` trains and samples it
    unchanged: ``null_condition`` is the empty prompt, used for label dropout
    and classifier-free guidance.
    """

    def __init__(self, text_encoder: TextEncoder, unet: UNet):
        super().__init__()
        if unet.config.context_dim != text_encoder.config.d_model:
            raise ValueError(f"the U-Net's context_dim ({unet.config.context_dim}) must equal the text "
                             f"encoder's d_model ({text_encoder.config.d_model})")
        self.text_encoder = text_encoder
        self.unet = unet

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if labels is None:                                                 # no prompt: the empty one, full length
            labels = self.null_condition(torch.zeros(len(x), self.text_encoder.config.max_len,
                                                     dtype=torch.long, device=x.device))
        context, _ = self.text_encoder(labels)                             # (B, L, d)
        # Like Stable Diffusion's, the U-Net reads every position, padding included: the
        # padding's vectors are the encoder's outputs there, and skipping the mask is faster.
        return self.unet(x, t, context=context)

    def null_condition(self, ids: torch.Tensor) -> torch.Tensor:
        """The empty prompt's ids, shaped like ``ids``: <start> then padding."""
        empty = torch.zeros_like(ids)
        empty[:, 0] = 1
        return empty

    def check_condition(self, ids: torch.Tensor, n: int) -> torch.Tensor:
        c = self.text_encoder.config
        if ids.is_floating_point() or ids.dim() != 2 or len(ids) != n or not 1 <= ids.shape[1] <= c.max_len \
                or (ids[:, 0] != 1).any():
            raise ValueError(f"expected the token ids of {n} prompts, shape ({n}, L <= {c.max_len}), each "
                             f"starting with <start>; got shape {tuple(ids.shape)} (use WordTokenizer.encode)")
        if (ids < 0).any() or (ids >= c.vocab_size).any():
            raise ValueError(f"token ids must be in 0..{c.vocab_size - 1}")
        return ids.long()

    @torch.no_grad()
    def cross_attention_maps(self, x: torch.Tensor, t: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """Where each token is read: attention weights (B, L, h, w) at the finest level that has them.

        Averaged over the heads and over every cross-attention layer at that
        level. With all levels on, those are the two at full resolution: after
        the first down block and after the last up block.
        """
        finest = min(self.unet.attn_level)
        layers = [layer for layer, level in zip(self.unet.attn, self.unet.attn_level) if level == finest]
        for layer in layers:
            layer.keep_weights = True
        try:
            self(x, t, ids)
            w = torch.stack([layer.attn.last_weights for layer in layers]).mean(dim=(0, 2))   # (B, H*W, L)
        finally:
            for layer in layers:
                layer.keep_weights = False
                layer.attn.last_weights = None
        B, HW, L = w.shape
        side = int(round(HW ** 0.5))
        return w.transpose(1, 2).reshape(B, L, side, side)


class TextToImagePipeline:
    """Prompt in, images out: tokenizer -> text encoder -> DDIM in latent space -> decoder.

    ``pipe(prompt, num_inference_steps=20, guidance_scale=3.0)`` returns images
    (N, C, H, W) in [0, 1], as ``diffusers``' StableDiffusionPipeline does
    (which returns PIL images). ``ddpm`` is a ``diffusion.DDPM`` over latents
    (``images=False``) whose net is a ``TextConditionedUNet``; ``scale`` is the
    latent scale factor; ``crop`` cuts the decoded images back to the size the
    data had before padding.
    """

    def __init__(self, autoencoder, ddpm, tokenizer: WordTokenizer, scale: float, crop: int | None = None):
        self.autoencoder, self.ddpm, self.tokenizer = autoencoder, ddpm, tokenizer
        self.scale, self.crop = scale, crop

    def _prompts(self, prompt, n_per: int) -> list[str]:
        if not isinstance(prompt, (str, list, tuple)):
            raise ValueError(f"expected a prompt (str) or a list of prompts, got {type(prompt).__name__}")
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        if not prompts:
            raise ValueError("give at least one prompt")
        if n_per < 1:
            raise ValueError(f"num_images_per_prompt must be at least 1, got {n_per}")
        return [p for p in prompts for _ in range(n_per)]

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Diffusion latents -> images: undo the scale, decode, crop."""
        with torch.no_grad():
            images = self.autoencoder.decode(latents / self.scale)
        if self.crop is not None:
            pad = (images.shape[-1] - self.crop) // 2
            images = images[..., pad:pad + self.crop, pad:pad + self.crop]
        return images

    def __call__(self, prompt: str | list[str], num_inference_steps: int = 20, guidance_scale: float = 3.0,
                 negative_prompt: str | list[str] | None = None, num_images_per_prompt: int = 1,
                 generator: torch.Generator | None = None, eta: float = 0.0,
                 latents: torch.Tensor | None = None, return_latents: bool = False):
        """Generate ``num_images_per_prompt`` images for each prompt.

        ``guidance_scale`` s mixes eps(prompt) and eps(negative prompt, default
        "") as eps_neg + s (eps_prompt - eps_neg); ``latents`` gives the
        starting noise (N, *latent_shape); ``eta`` is DDIM's noise level.
        """
        prompts = self._prompts(prompt, num_images_per_prompt)
        dev = self.ddpm.device
        ids = self.tokenizer.encode(prompts).to(dev)
        neg = None
        if negative_prompt is not None:
            neg = self._prompts(negative_prompt, num_images_per_prompt)
            if len(neg) == num_images_per_prompt:
                neg = neg * (len(prompts) // num_images_per_prompt)
            if len(neg) != len(prompts):
                raise ValueError("give one negative prompt, or one per prompt")
            neg = self.tokenizer.encode(neg).to(dev)
        z = self.ddpm.sample_ddim(len(prompts), steps=num_inference_steps, eta=eta, labels=ids,
                                  generator=generator, guidance_scale=guidance_scale, x_T=latents,
                                  uncond_labels=neg)
        images = self.decode(z)
        return (images, z) if return_latents else images
