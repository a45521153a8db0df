# Two commands on a fresh machine: `make run` and `make test`. Both bootstrap .venv.
# the data recipe uses bash substrings
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
EXTRAS ?= sim,notebooks,test
TRACKML_EVENTS ?= ../shared/data/trackml/kaggle_train_1

.PHONY: run test venv venv-triton lint data clean-venv bench

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch first, pinned to the CPU build that lies on local disk
	$(PIP) install -q -c constraints.txt torch==2.13.0
	$(PIP) install -q -c constraints.txt -e ".[$(EXTRAS)]"
	touch $(STAMP)

venv: $(STAMP)

# The environment that runs exported Triton repositories (trackflow export triton): trackflow with
# its extra `triton`, whose nvidia-pytriton bundles a real tritonserver and pins numpy<2 (so never
# in .venv, which has numpy 2 and pyarrow 26). About 1 min; the tests of the export run in it.
TRITON_VENV := $(VENV)/triton
TRITON_STAMP := $(TRITON_VENV)/.installed
$(TRITON_STAMP): pyproject.toml constraints.txt $(STAMP)
	test -x $(TRITON_VENV)/bin/python || $(PYTHON) -m venv $(TRITON_VENV)
	$(TRITON_VENV)/bin/python -m pip install -q --upgrade pip
	$(TRITON_VENV)/bin/python -m pip install -q -c constraints.txt torch==2.13.0
	$(TRITON_VENV)/bin/python -m pip install -q -c constraints.txt -e ".[triton]"
	touch $(TRITON_STAMP)

venv-triton: $(TRITON_STAMP)

# The main job on a LocalCluster: simulate a few events with ACTS (truth included, so efficiency
# is reported) from the real TrackML particles when ../shared is there, else from a particle gun,
# reconstruct them with the shipped models, print the summary (with the paths of the pictures
# beside report.json: efficiency vs pT and eta, event display, stage times). The default batch
# size, auto, cuts even these few events into a multiple of the worker slots, so every worker
# gets some. It looks for events, not for a directory: a run that failed halfway must not stop
# the next one from simulating.
DEMO ?= runs/demo
DEMO_EVENTS ?= 4
run: $(STAMP)
	ls $(DEMO)/events/event*-hits.csv* >/dev/null 2>&1 || $(VENV)/bin/trackflow simulate --out $(DEMO)/events --events $(DEMO_EVENTS) \
		--seed 20261128 --no-progress \
		$(if $(wildcard $(TRACKML_EVENTS)),--particles-from $(TRACKML_EVENTS),--pileup 40)
	$(VENV)/bin/trackflow reconstruct $(DEMO)/events --out $(DEMO)/out --overwrite --no-progress

# ruff, then mypy (pyproject.toml's [tool.mypy]: default mode over trackflow/, strict over
# trackflow/events, trackflow/cluster and trackflow/estimation), then the suite; mypy's cache
# lives in the venv, so a test run leaves no new directory in the work tree
test: $(STAMP) $(TRITON_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy --cache-dir $(VENV)/.mypy_cache
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# The data the shipped models were trained and measured on (trackflow/pipeline/training/__init__.py):
# real TrackML kinematics (7 particle files for training, 2 held out for validation and test)
# propagated through ACTS Fatras under a mixture of beam conditions -- the files' own ~5 mm beam
# spot, sigma_z 30 and 60 mm, a low-density noisy cell (30 % of the vertices, 30 % noise) -- plus
# particle-gun events (sigma_z 55 mm); and data/train_flat, vertices uniform in z over +-150 mm at
# several densities and noise levels, on which the filter and GNN learn no preferred vertex z.
# Validation covers narrow and wide beam spots, so the cuts chosen on it hold on both. About 3 min
# on 2 cores.
SIM := $(VENV)/bin/trackflow simulate --no-progress --workers 2
data: $(STAMP)
	rm -rf data/train data/train_flat data/val data/test
	mkdir -p data/particles_train data/particles_holdout
	for e in 1001 1003 1005 1009 1010 1012 1013; do \
		ln -sf $(abspath $(TRACKML_EVENTS))/event00000$$e-particles.csv.gz data/particles_train/; done
	for e in 1018 1020; do \
		ln -sf $(abspath $(TRACKML_EVENTS))/event00000$$e-particles.csv.gz data/particles_holdout/; done
	$(SIM) --out data/train --events 6 --seed 1 --particles-from data/particles_train
	$(SIM) --out data/train --events 6 --first-event 6 --seed 4 --sigma-z 30 --particles-from data/particles_train
	$(SIM) --out data/train --events 6 --first-event 12 --seed 5 --sigma-z 60 --particles-from data/particles_train
	$(SIM) --out data/train --events 3 --first-event 18 --seed 6 --sigma-z 45 --vertex-fraction 0.3 \
		--noise-fraction 0.3 --particles-from data/particles_train
	$(SIM) --out data/train --events 3 --first-event 100 --seed 21 --pileup 100
	$(SIM) --out data/train_flat --events 12 --seed 7 --particles-from data/particles_train --flat-z 150
	$(SIM) --out data/train_flat --events 4 --first-event 12 --seed 8 --particles-from data/particles_train \
		--flat-z 150 --vertex-fraction 0.3 --noise-fraction 0.3
	$(SIM) --out data/train_flat --events 4 --first-event 16 --seed 9 --particles-from data/particles_train \
		--flat-z 150 --vertex-fraction 0.6
	$(SIM) --out data/train_flat --events 3 --first-event 100 --seed 21 --pileup 100
	$(SIM) --out data/val --events 1 --seed 2 --particles-from data/particles_holdout
	$(SIM) --out data/val --events 1 --first-event 1 --seed 2 --sigma-z 30 --particles-from data/particles_holdout
	$(SIM) --out data/val --events 2 --first-event 2 --seed 2 --sigma-z 55 --particles-from data/particles_holdout
	$(SIM) --out data/test --events 4 --seed 3 --particles-from data/particles_holdout

clean-venv:
	rm -rf $(VENV)
