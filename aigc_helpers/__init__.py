"""aigc_helpers: the small, readable library behind *AIGC from Zero to Practice*.

Every chapter of the book imports its models, data loaders and training loop
from here. One module per idea:

    core        seeds, device choice, the compute budget, the cache folder
    data        offline-first text, image and toy 2-D data; a character tokenizer
    train       one training loop for every chapter; checkpoints; load-or-train cache
    plot        labelled image grids, loss curves, heat maps, decision boundaries
    metrics     perplexity, bits per character, the image judge and classifier-FID
    basics      logistic regression, an MLP and a Gaussian generative classifier
    ngram       unigram and bigram language models (counted and learned)
    embeddings  skip-gram with negative sampling
    vision      convolution by hand and a small CNN classifier
"""

from .core import BUDGET, budget, cache_dir, get_device, is_full_budget, set_seed

__version__ = "0.1.0"

__all__ = ["BUDGET", "budget", "cache_dir", "get_device", "is_full_budget", "set_seed", "__version__"]
