"""aigc_helpers: the small, readable library behind *AIGC from Zero to Practice*.

Every chapter of the book imports its models, data loaders and training loop
from here. One module per idea:

    core        seeds, device choice and timing, the compute budget, the cache folder
    data        offline-first text, image and toy 2-D data; a character tokenizer
    train       one training loop for every chapter; keeping the best weights; checkpoints; load-or-train cache
    plot        labelled image grids, loss curves, heat maps, decision boundaries
    widgets     flipbook, flipbook_grid: controls over pages drawn in advance, which work on a static web page too;
                html_bars, html_heatmap, html_images, html_stacked_bar: bar charts, heat maps, small
                images and a bar split into parts in HTML, cheap enough for such pages;
                shade_word_grid: the text-to-image chapters' garment x shade x guidance pages
    metrics     perplexity, bits per character, the image judge and classifier-FID
    basics      logistic regression, an MLP and a Gaussian generative classifier
    ngram       unigram and bigram language models (counted and learned)
    embeddings  skip-gram with negative sampling
    vision      convolution by hand and a small CNN classifier
    attention   scaled dot-product and multi-head attention, masks
    transformer positional encoding, FFN, encoder/decoder blocks, a seq2seq Transformer
    tasks       toy sequence-to-sequence data: reverse, sort or copy a string
    gpt         a GPT (decoder-only Transformer) with generate()
    decoding    greedy, beam search, temperature, top-k, top-p
    rnn         the GRU character generator, the GPT's baseline
    optim       Muon: orthogonalised momentum updates for weight matrices, AdamW for the rest
    finetune    a GPT with a classification head, and labelled data from the corpus
    bert        BERT: masked LM, next-sentence prediction, a classifier head
    zoo         the book's shared trained models (load-or-train recipes)
    gan         GAN and WGAN-GP losses, MLP and DCGAN models, the alternating step, mode coverage
    stylegan    StyleGAN in miniature: mapping network, AdaIN, noise, style mixing
    vae         the VAE and beta-VAE: reparameterisation, Gaussian KL, the ELBO
    diffusion   DDPM: noise schedules, the forward jump, the Gaussian posterior, training and sampling
    unet        the denoisers: step embedding, an MLP for points, a small U-Net for images, cross-attention
    autoencoder the first stage of latent diffusion: a convolutional autoencoder with a KL-regularised latent
    text2image  Stable Diffusion in miniature: captions, a text encoder, a text-conditioned U-Net, a pipeline
    vq          discrete image tokens: a vector-quantised autoencoder with codebook restarts
    dalle       DALL-E in miniature: a GPT over prompt and image tokens, guidance on logits, a pipeline
    mathcheck   Part V's formulas (softmax, log-sum-exp, cross-entropy, their derivatives, the Gaussian KL)
                and finite differences
    divergences KL, JS, total variation and Wasserstein-1 on grids and samples; the optimal discriminator
    linear_gaussian a VAE with a linear decoder (probabilistic PCA): exact evidence, posterior and ELBO
    mixture     Gaussian mixtures with their exact diffusion; the perfect denoiser eps*
    poems       Tang poems: parsing, a split by poem, early stopping, verse-form and copying checks
    evaluate    evaluating generated text and images: copy rate, Inception Score, precision/recall, kappa
    digit_prompts a text-to-image project on 8x8 digits: measured captions, pixel-space pipeline, saving, a model card
    codegen     code completion: the Python standard library as a corpus, indentation tokens, line prompts, a syntax check
    hf          the book's GPT and tokenizers in Hugging Face Transformers: conversion both ways, BPE
    distributed data parallelism with torchrun: sharding, the gradient all-reduce, a DDP program, ZeRO memory
    responsible watermarking text, measuring memorisation (canaries), a word-association bias test
"""

from .core import BUDGET, budget, cache_dir, full_float32, get_device, is_full_budget, set_seed, synchronize

__version__ = "0.1.0"

__all__ = ["BUDGET", "budget", "cache_dir", "full_float32", "get_device", "is_full_budget", "set_seed", "synchronize",
           "__version__"]
