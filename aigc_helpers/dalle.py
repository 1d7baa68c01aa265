"""DALL-E in miniature: a GPT that writes an image as tokens, after the prompt's tokens.

DALL-E (Ramesh et al., 2021) turns text-to-image generation into language
modelling. An image becomes a grid of codes from a discrete autoencoder
(:mod:`aigc_helpers.vq`), read in raster order, left to right and top to
bottom. The prompt's tokens and the image's tokens form one sequence, and a
decoder-only Transformer learns to predict each token from all those before:

    p(image | text) = prod_i p(code_i | text, code_1, ..., code_{i-1})

To draw an image, the model is given the prompt and samples the codes one at
a time; the decoder of the autoencoder turns the grid into pixels.

This miniature uses the book's ``GPT`` unchanged, over a joint vocabulary:
ids below ``text_vocab`` are words, ids from ``text_vocab`` on are image
codes. Only the image tokens are trained on (DALL-E also modelled the text,
with a small weight), and sampling only ever picks codes. Two later ideas
are included: caption dropout, so that the same model also learns
p(image) for the empty prompt, and classifier-free guidance on the logits,

    logits = logits(empty prompt) + s * (logits(prompt) - logits(empty prompt)),

the same mix as in diffusion, used by Make-A-Scene (Gafni et al., 2022) and
Parti (Yu et al., 2022). DALL-E instead drew 512 images per prompt and kept
those CLIP ranked best.

Reading order: ``DalleConfig``, ``MiniDalle`` (``sequence``, ``forward``,
``generate``), ``dalle_loss_fn``, ``DallePipeline``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .decoding import sample_next
from .gpt import GPT, GPTConfig
from .text2image import WordTokenizer
from .vq import VQAutoencoder


@dataclass
class DalleConfig:
    text_vocab: int               # word ids 0..text_vocab-1 (from the WordTokenizer)
    text_len: int                 # prompt tokens, <start> first, padded (DALL-E: 256 BPE tokens)
    n_codes: int = 128            # image vocabulary, the codebook size (DALL-E: 8192)
    image_tokens: int = 49        # codes per image, 7x7 (DALL-E: 32x32 = 1024)
    n_layer: int = 4              # DALL-E: 64
    n_head: int = 4               # DALL-E: 62
    n_embd: int = 128             # DALL-E: 3968
    dropout: float = 0.0
    p_uncond: float = 0.1         # caption dropout: train on the empty prompt this often


class MiniDalle(nn.Module):
    """``model(text_ids, codes) -> (logits (B, N, n_codes), loss)``: a GPT over [prompt | image codes]."""

    def __init__(self, config: DalleConfig):
        super().__init__()
        c = config
        if c.text_len < 1 or c.image_tokens < 1:
            raise ValueError("text_len and image_tokens must be positive")
        self.config = c
        self.gpt = GPT(GPTConfig(vocab_size=c.text_vocab + c.n_codes, block_size=c.text_len + c.image_tokens - 1,
                                 n_layer=c.n_layer, n_head=c.n_head, n_embd=c.n_embd, dropout=c.dropout))
        # the empty prompt: <start>, then padding
        null = torch.zeros(c.text_len, dtype=torch.long)
        null[0] = 1
        self.register_buffer("null_text", null)

    def _check(self, text_ids: torch.Tensor, codes: torch.Tensor | None = None) -> None:
        c = self.config
        if text_ids.dim() != 2 or text_ids.shape[1] != c.text_len or text_ids.dtype != torch.long:
            raise ValueError(f"expected token ids (B, {c.text_len}) from WordTokenizer.encode, "
                             f"got {tuple(text_ids.shape)} of {text_ids.dtype}")
        if text_ids.numel() and (text_ids.min() < 0 or text_ids.max() >= c.text_vocab):
            raise ValueError(f"token ids must be in 0..{c.text_vocab - 1}")
        if codes is not None:
            if codes.dim() != 2 or codes.shape != (len(text_ids), c.image_tokens):
                raise ValueError(f"expected codes ({len(text_ids)}, {c.image_tokens}), got {tuple(codes.shape)}")
            if codes.min() < 0 or codes.max() >= c.n_codes:
                raise ValueError(f"codes must be in 0..{c.n_codes - 1}")

    def sequence(self, text_ids: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """One row of ids per example: the prompt, then the codes shifted past the words."""
        return torch.cat([text_ids, codes + self.config.text_vocab], dim=1)

    def forward(self, text_ids: torch.Tensor, codes: torch.Tensor):
        """Logits for every image token given the prompt and the codes before it, and their cross-entropy.

        ``codes`` is (B, image_tokens) in raster order. In training mode each prompt is replaced by
        the empty prompt with probability ``p_uncond``.
        """
        self._check(text_ids, codes)
        c = self.config
        if self.training and c.p_uncond > 0:
            drop = torch.rand(len(text_ids), device=text_ids.device) < c.p_uncond
            text_ids = torch.where(drop[:, None], self.null_text, text_ids)
        idx = self.sequence(text_ids, codes)[:, :-1]                          # the last code predicts nothing
        hidden_logits, _ = self.gpt(idx)                                     # (B, T, text_vocab + n_codes)
        logits = hidden_logits[:, c.text_len - 1:, c.text_vocab:]            # positions that predict codes; codes only
        loss = F.cross_entropy(logits.reshape(-1, c.n_codes), codes.reshape(-1))
        return logits, loss

    @torch.no_grad()
    def generate(self, text_ids: torch.Tensor, guidance_scale: float = 1.0, temperature: float = 1.0,
                 top_k: int | None = None, prefix: torch.Tensor | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Sample the codes of one image per prompt, token by token: (B, text_len) -> (B, image_tokens).

        ``guidance_scale`` s mixes the logits of the prompt and of the empty prompt (s = 1: the
        prompt alone). ``prefix`` (B, n) fixes the first n codes and samples the rest: image
        completion. Keys and values are cached, so each step runs one new token per row.
        """
        self._check(text_ids)
        c = self.config
        if guidance_scale < 0:
            raise ValueError(f"guidance_scale must be >= 0, got {guidance_scale}")
        B = len(text_ids)
        codes = torch.zeros(B, 0, dtype=torch.long, device=text_ids.device) if prefix is None else prefix.long()
        if codes.dim() != 2 or len(codes) != B or codes.shape[1] >= c.image_tokens:
            raise ValueError(f"prefix must have shape ({B}, n) with n < {c.image_tokens}, got {tuple(codes.shape)}")
        if codes.numel() and (codes.min() < 0 or codes.max() >= c.n_codes):
            raise ValueError(f"prefix codes must be in 0..{c.n_codes - 1}")
        codes = codes.to(text_ids.device)
        guided = guidance_scale != 1.0
        rows = torch.cat([text_ids, self.null_text.expand(B, -1)]) if guided else text_ids
        idx = torch.cat([rows, (codes + c.text_vocab).repeat(2 if guided else 1, 1)], dim=1)
        was_training = self.training
        self.eval()
        cache = self.gpt.new_cache()
        step_input = idx                                                      # first the prompt (and prefix)
        while codes.shape[1] < c.image_tokens:
            logits, _ = self.gpt(step_input, cache=cache)
            logits = logits[:, -1, c.text_vocab:]                             # (rows, n_codes): codes only
            if guided:
                cond, uncond = logits.chunk(2)
                logits = uncond + guidance_scale * (cond - uncond)
            nxt = sample_next(logits, temperature, top_k, generator=generator)   # (B,)
            codes = torch.cat([codes, nxt[:, None]], dim=1)
            step_input = (nxt + c.text_vocab)[:, None].repeat(2 if guided else 1, 1)
        self.train(was_training)
        return codes


def dalle_loss_fn(model: MiniDalle, batch) -> torch.Tensor:
    """``batch = (codes (B, grid, grid), text_ids (B, L))``: the face of the book's ``train`` loop."""
    codes, text_ids = batch
    return model(text_ids, codes.flatten(1))[1]


class DallePipeline:
    """Prompt in, images out: tokenizer -> MiniDalle samples codes -> VQ decoder."""

    def __init__(self, vq: VQAutoencoder, model: MiniDalle, tokenizer: WordTokenizer):
        if model.config.image_tokens != vq.grid ** 2 or model.config.n_codes != vq.config.n_codes:
            raise ValueError("the model's image tokens and codes must match the autoencoder's grid and codebook")
        if model.config.text_len != tokenizer.max_len or model.config.text_vocab != tokenizer.vocab_size:
            raise ValueError("the model's prompt length and vocabulary must match the tokenizer's")
        self.vq, self.model, self.tokenizer = vq, model, tokenizer

    @torch.no_grad()
    def __call__(self, prompt: str | list[str], guidance_scale: float = 3.0, temperature: float = 1.0,
                 top_k: int | None = None, num_images_per_prompt: int = 1,
                 generator: torch.Generator | None = None, return_codes: bool = False):
        """Images (N, C, H, W) in [0, 1], prompts in order, ``num_images_per_prompt`` each."""
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        if num_images_per_prompt < 1:
            raise ValueError(f"num_images_per_prompt must be >= 1, got {num_images_per_prompt}")
        device = next(self.model.parameters()).device
        ids = self.tokenizer.encode(prompts).to(device).repeat_interleave(num_images_per_prompt, dim=0)
        codes = self.model.generate(ids, guidance_scale, temperature, top_k, generator=generator)
        g = self.vq.grid
        images = self.vq.decode(codes.view(-1, g, g))
        return (images, codes.view(-1, g, g)) if return_codes else images
