"""The book's GPT and tokenizers in the Hugging Face ecosystem: an adapter.

The book's :class:`~aigc_helpers.gpt.GPT` has GPT-2's architecture, so its weights fit into
Hugging Face's ``GPT2LMHeadModel`` one tensor at a time. This module converts them both ways
and wraps the book's character tokenizer as a ``PreTrainedTokenizerFast``, so that
``generate``, ``pipeline`` and ``save_pretrained`` work on the book's own models, offline.

Reading order:

- :func:`to_hf_config` / :func:`from_hf_config`: the two configurations, field by field; what
  the book's GPT cannot represent raises ``ValueError``;
- :func:`hf_state_dict` / :func:`gpt_state_dict`: the tensor names, and the one real change:
  Hugging Face's GPT-2 keeps its linear layers in a ``Conv1D`` that stores ``W`` transposed;
- :func:`gpt_to_hf` and :func:`hf_to_gpt`: whole models, both ways;
- :func:`char_tokenizer_fast`: the book's character vocabulary as a Hugging Face tokenizer;
- :func:`train_bpe` and :func:`truncate_bpe`: a GPT-2-style byte-level BPE tokenizer trained
  on local text, and the same tokenizer with fewer merges.

Only this module imports ``transformers`` and ``tokenizers``, and only inside its functions,
so the rest of the library depends on torch alone.
"""

from __future__ import annotations

import torch

from .data import CharTokenizer
from .gpt import GPT, GPTConfig

# Book name (inside each block) -> Hugging Face name; "T" marks weights that Conv1D stores transposed.
_BLOCK_PARAMS = {
    "ln_1.weight": ("ln_1.weight", False), "ln_1.bias": ("ln_1.bias", False),
    "attn.c_attn.weight": ("attn.c_attn.weight", True), "attn.c_attn.bias": ("attn.c_attn.bias", False),
    "attn.c_proj.weight": ("attn.c_proj.weight", True), "attn.c_proj.bias": ("attn.c_proj.bias", False),
    "ln_2.weight": ("ln_2.weight", False), "ln_2.bias": ("ln_2.bias", False),
    "mlp.c_fc.weight": ("mlp.c_fc.weight", True), "mlp.c_fc.bias": ("mlp.c_fc.bias", False),
    "mlp.c_proj.weight": ("mlp.c_proj.weight", True), "mlp.c_proj.bias": ("mlp.c_proj.bias", False),
}
_LAYER_NORM_EPS = 1e-5   # nn.LayerNorm's default, and GPT-2's


def to_hf_config(config: GPTConfig):
    """The ``transformers.GPT2Config`` of a book :class:`GPTConfig` (every book config has one)."""
    from transformers import GPT2Config

    return GPT2Config(
        vocab_size=config.vocab_size, n_positions=config.block_size, n_embd=config.n_embd,
        n_layer=config.n_layer, n_head=config.n_head,
        n_inner=4 * config.n_embd,                  # the MLP's hidden width
        activation_function="gelu",                 # exact GELU, as the book (GPT-2 itself: "gelu_new", tanh)
        resid_pdrop=config.dropout, embd_pdrop=config.dropout, attn_pdrop=config.dropout,
        layer_norm_epsilon=_LAYER_NORM_EPS, tie_word_embeddings=True,
        bos_token_id=None, eos_token_id=None,      # a character model has no end-of-text token
    )


def from_hf_config(hf_config) -> GPTConfig:
    """The book's :class:`GPTConfig` for a ``GPT2Config``; ``ValueError`` if the book's GPT
    computes something else (another activation, MLP width, LayerNorm epsilon, attention
    scaling, untied head, or cross-attention)."""
    c = hf_config
    if getattr(c, "model_type", None) != "gpt2":
        raise ValueError(f"expected a GPT-2 config (model_type 'gpt2'), got {getattr(c, 'model_type', None)!r}")
    problems = []
    if c.activation_function != "gelu":
        problems.append(f"activation_function={c.activation_function!r} (the book's MLP uses exact GELU, 'gelu')")
    if c.n_inner not in (None, 4 * c.n_embd):
        problems.append(f"n_inner={c.n_inner} (the book's MLP is 4 * n_embd = {4 * c.n_embd} wide)")
    if c.layer_norm_epsilon != _LAYER_NORM_EPS:
        problems.append(f"layer_norm_epsilon={c.layer_norm_epsilon} (the book's LayerNorm uses {_LAYER_NORM_EPS})")
    if not c.scale_attn_weights or c.scale_attn_by_inverse_layer_idx:
        problems.append("attention scores not scaled by exactly 1/sqrt(head size)")
    if not c.tie_word_embeddings:
        problems.append("tie_word_embeddings=False (the book's output head is the token embedding)")
    if c.add_cross_attention:
        problems.append("add_cross_attention=True (the book's GPT has no encoder to attend to)")
    if len({c.resid_pdrop, c.embd_pdrop, c.attn_pdrop}) != 1:
        problems.append(f"different dropout rates {c.resid_pdrop, c.embd_pdrop, c.attn_pdrop} (the book has one)")
    if c.n_embd % c.n_head:
        problems.append(f"n_embd={c.n_embd} not divisible by n_head={c.n_head}")
    if problems:
        raise ValueError("the book's GPT cannot represent this GPT-2 config: " + "; ".join(problems))
    return GPTConfig(vocab_size=c.vocab_size, block_size=c.n_positions, n_layer=c.n_layer, n_head=c.n_head,
                     n_embd=c.n_embd, dropout=c.resid_pdrop, bias=True)


def hf_state_dict(model: GPT) -> dict[str, torch.Tensor]:
    """The book's weights under Hugging Face GPT-2 names, ``Conv1D`` weights transposed.

    A book model without biases (``bias=False``) gets zero biases: adding zero changes nothing.
    """
    sd, out = model.state_dict(), {}
    out["transformer.wte.weight"] = sd["wte.weight"]                      # (V, C)
    out["transformer.wpe.weight"] = sd["wpe.weight"]                      # (block_size, C)
    for i, block in enumerate(model.blocks):
        for name, (hf_name, transposed) in _BLOCK_PARAMS.items():
            key = f"blocks.{i}.{name}"
            if key in sd:
                w = sd[key]
                out[f"transformer.h.{i}.{hf_name}"] = w.t() if transposed else w   # nn.Linear (out, in) -> Conv1D (in, out)
            else:                                                          # bias=False: the matching zero bias
                weight = sd[key.replace(".bias", ".weight")]
                out[f"transformer.h.{i}.{hf_name}"] = weight.new_zeros(weight.shape[0])
    out["transformer.ln_f.weight"] = sd["ln_f.weight"]
    out["transformer.ln_f.bias"] = sd.get("ln_f.bias", torch.zeros_like(sd["ln_f.weight"]))
    out["lm_head.weight"] = sd["wte.weight"]                              # tied, as in the book
    return out


def gpt_state_dict(hf_sd: dict[str, torch.Tensor], n_layer: int, bias: bool = True) -> dict[str, torch.Tensor]:
    """The inverse of :func:`hf_state_dict`: Hugging Face GPT-2 tensors under the book's names.

    With ``bias=False`` every bias must be zero (the book's model then has none); otherwise
    ``ValueError``, since dropping a non-zero bias would change what the model computes.
    """
    out = {"wte.weight": hf_sd["transformer.wte.weight"], "wpe.weight": hf_sd["transformer.wpe.weight"]}
    if not torch.equal(hf_sd.get("lm_head.weight", out["wte.weight"]), out["wte.weight"]):
        raise ValueError("lm_head.weight differs from the token embedding; the book's GPT ties the two")
    pairs = [(f"blocks.{i}.{name}", f"transformer.h.{i}.{hf_name}", t)
             for i in range(n_layer) for name, (hf_name, t) in _BLOCK_PARAMS.items()]
    pairs += [("ln_f.weight", "transformer.ln_f.weight", False), ("ln_f.bias", "transformer.ln_f.bias", False)]
    for key, hf_key, transposed in pairs:
        w = hf_sd[hf_key]
        if key.endswith(".bias") and not bias:
            if w.count_nonzero():
                raise ValueError(f"{hf_key} is not zero, so a GPT with bias=False cannot represent it; "
                                 "convert with bias=True")
            continue
        out[key] = w.t() if transposed else w                             # Conv1D (in, out) -> nn.Linear (out, in)
    out["lm_head.weight"] = out["wte.weight"]
    return out


def gpt_to_hf(model: GPT):
    """A ``transformers.GPT2LMHeadModel`` that computes what the book's ``model`` computes.

    The copy lives on the same device, in the same dtype and train/eval mode; its weights are
    copies, so training one does not change the other.
    """
    from transformers import GPT2LMHeadModel

    if not isinstance(model, GPT):
        raise ValueError(f"expected the book's GPT (aigc_helpers.gpt.GPT), got {type(model).__name__}")
    param = next(model.parameters())
    hf_model = GPT2LMHeadModel(to_hf_config(model.config)).to(device=param.device, dtype=param.dtype)
    hf_model.load_state_dict(hf_state_dict(model), strict=True)
    return hf_model.train(model.training)


def hf_to_gpt(hf_model, bias: bool = True) -> GPT:
    """The book's :class:`GPT` with the weights of a ``GPT2LMHeadModel``.

    ``bias=False`` builds a GPT without biases; it requires every bias of ``hf_model`` to be
    zero, as :func:`gpt_to_hf` writes them for such a model. ``ValueError`` for a model whose
    config the book's GPT cannot represent (see :func:`from_hf_config`).
    """
    from transformers import GPT2LMHeadModel

    if not isinstance(hf_model, GPT2LMHeadModel):
        raise ValueError(f"expected a transformers.GPT2LMHeadModel, got {type(hf_model).__name__}")
    config = from_hf_config(hf_model.config)
    config.bias = bias
    sd = gpt_state_dict(hf_model.state_dict(), config.n_layer, bias=bias)   # checks before building
    param = next(hf_model.parameters())
    model = GPT(config).to(device=param.device, dtype=param.dtype)
    model.load_state_dict(sd, strict=True)
    return model.train(hf_model.training)


def char_tokenizer_fast(tokenizer: CharTokenizer, model_max_length: int | None = None):
    """The book's :class:`~aigc_helpers.data.CharTokenizer` as a ``PreTrainedTokenizerFast``.

    Built with the ``tokenizers`` library, offline: a pre-tokenizer that splits the text into
    single characters, a word-level model whose vocabulary is the book's (same ids), and a
    decoder that joins the characters back without spaces. Like the book's tokenizer it
    refuses characters outside its vocabulary (there is no unknown token).
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    if not isinstance(tokenizer, CharTokenizer):
        raise ValueError(f"expected the book's CharTokenizer, got {type(tokenizer).__name__}")
    backend = Tokenizer(models.WordLevel(dict(tokenizer.stoi)))          # character -> the book's id
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")  # every character, newlines too
    backend.decoder = decoders.Fuse()                                     # join tokens with no separator
    return PreTrainedTokenizerFast(tokenizer_object=backend, clean_up_tokenization_spaces=False,
                                   model_max_length=model_max_length or int(1e30))


def train_bpe(texts, vocab_size: int, min_frequency: int = 2):
    """A byte-level BPE tokenizer trained on ``texts`` (a list of strings), as GPT-2's was.

    Bytes first (256 base tokens, so nothing is ever unknown), GPT-2's pre-tokenizer (words,
    with the space in front, and punctuation apart), then merges of the most frequent adjacent
    pairs until the vocabulary has ``vocab_size`` tokens. Returns a ``PreTrainedTokenizerFast``.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if not isinstance(vocab_size, int) or vocab_size <= 256:
        raise ValueError(f"vocab_size must be an int above the 256 byte tokens, got {vocab_size!r}")
    if isinstance(texts, str):
        texts = [texts]
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=backend, clean_up_tokenization_spaces=False)


def truncate_bpe(tokenizer, vocab_size: int):
    """The BPE tokenizer of :func:`train_bpe` with only its first ``vocab_size - 256`` merges.

    BPE's merges form a priority list: training learns them one at a time, most frequent pair
    first, so the first ``k`` merges of a big vocabulary are what a smaller training would have
    learned. One training thus gives every smaller vocabulary too.
    """
    import json

    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    model = spec["model"]
    if model.get("type") != "BPE" or spec["added_tokens"]:
        raise ValueError("expected a byte-level BPE tokenizer from train_bpe (no added special tokens)")
    if not 256 < vocab_size <= len(model["vocab"]):
        raise ValueError(f"vocab_size must be in (256, {len(model['vocab'])}], got {vocab_size}")
    model["vocab"] = {t: i for t, i in model["vocab"].items() if i < vocab_size}   # 256 bytes, then merged tokens
    model["merges"] = model["merges"][:vocab_size - 256]
    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(json.dumps(spec)),
                                   clean_up_tokenization_spaces=False)
