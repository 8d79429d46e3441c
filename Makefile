# Two commands on a fresh machine: `make serve` and `make test`. Each sets up what it needs.
PYTHON ?= python3
VENV ?= .venv
REF_VENV ?= .venv-ref
HOST ?= 127.0.0.1
PORT ?= 5000
export HOST PORT

BIN := $(VENV)/bin
SERVE_STAMP := $(VENV)/.installed-serve
STAMP := $(VENV)/.installed

.PHONY: serve serve-dev test lint format typecheck reference bench install clean docker vendor

# Serving needs the package and its plugins only (no test, lint or training tools).
$(SERVE_STAMP): pyproject.toml examples/magenta-api-markov/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e .
	# audio output: TinySoundFont's binding without PyAudio (device playback, unused; needs PortAudio to build)
	$(BIN)/python -m pip install -q --no-deps tinysoundfont==0.3.7
	# the example third-party plugin, installed as a user would install any plugin
	$(BIN)/python -m pip install -q --no-deps -e examples/magenta-api-markov
	touch $(SERVE_STAMP)

# Developing: the tests (with the training extra they exercise), lint and type checking.
$(STAMP): $(SERVE_STAMP)
	$(BIN)/python -m pip install -q -e '.[test,train,lint]'
	touch $(STAMP)

install: $(STAMP)

serve: $(SERVE_STAMP)  ## run the service (gunicorn) on $(HOST):$(PORT)
	$(BIN)/magenta-api serve --host $(HOST) --port $(PORT)

serve-dev: $(SERVE_STAMP)  ## Flask's development server, one process
	$(BIN)/magenta-api serve --dev --host $(HOST) --port $(PORT)

test: $(STAMP)  ## the whole test suite, with coverage (the floor is in pyproject.toml)
	$(BIN)/python -m pytest -q --cov --cov-report=term

lint: $(STAMP)  ## ruff: lint and formatting, as CI checks them
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)  ## ruff: format and apply the safe lint fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: $(STAMP)  ## mypy over core/ and plugins/
	$(BIN)/mypy

# The reference environment (TensorFlow + magenta 2.1.4) that regenerates the parity fixtures.
$(REF_VENV)/.installed:
	test -x $(REF_VENV)/bin/python || $(PYTHON) -m venv $(REF_VENV)
	$(REF_VENV)/bin/python -m pip install -q --upgrade pip
	$(REF_VENV)/bin/python -m pip install -q tensorflow==2.21.0 tf-keras==2.21.0 tensorflow-probability==0.25.0 \
		tf-slim==1.1.0 note-seq==0.0.5 tensorflow-datasets==4.9.10
	$(REF_VENV)/bin/python -m pip install -q --no-deps magenta==2.1.4
	touch $(REF_VENV)/.installed

reference: $(REF_VENV)/.installed  ## regenerate every committed reference fixture
	for script in reference/*_reference.py reference/make_checkpoint_fixtures.py; do \
		echo "== $$script"; TF_USE_LEGACY_KERAS=1 $(REF_VENV)/bin/python $$script || exit 1; \
	done

THREADS ?= 1
bench: $(STAMP) $(REF_VENV)/.installed  ## run benchmarks side by side with Magenta (THREADS=0: library defaults)
	$(BIN)/python bench/bench_store.py
	$(BIN)/python bench/bench_musicvae.py --threads $(THREADS)
	$(BIN)/python bench/bench_musicvae_general.py --threads $(THREADS)
	$(BIN)/python bench/bench_melody_rnn.py --threads $(THREADS)
	$(BIN)/python bench/bench_events_rnn.py --threads $(THREADS)
	PYTHONPATH=core $(BIN)/python bench/bench_serving.py

# The studio page's browser packages (tone, @magenta/music, html-midi-player), from the lock file.
STATIC := core/magenta_api/static
vendor:  ## re-copy the studio's vendored browser packages from $(STATIC)/package-lock.json
	cd $(STATIC) && npm ci --no-audit --no-fund --ignore-scripts
	cp $(STATIC)/node_modules/tone/build/Tone.js $(STATIC)/node_modules/@magenta/music/es6/core.js \
		$(STATIC)/node_modules/html-midi-player/dist/midi-player.min.js $(STATIC)/vendor/
	cp $(STATIC)/node_modules/tone/LICENSE.md $(STATIC)/vendor/LICENSE-tone.md
	cp $(STATIC)/node_modules/html-midi-player/LICENSE $(STATIC)/vendor/LICENSE-html-midi-player
	rm -rf $(STATIC)/node_modules

docker:
	docker build -t magenta-api .

clean:
	rm -rf $(VENV) build dist *.egg-info cache .coverage htmlcov
