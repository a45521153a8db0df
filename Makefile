# Two commands on a fresh machine: `make run` and `make test`. Both bootstrap .venv.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
EXTRAS ?= sim,notebooks,test
TRACKML_EVENTS ?= ../shared/data/trackml/kaggle_train_1

.PHONY: run test venv lint data clean-venv bench

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch first, pinned to the CPU build that lies on local disk
	$(PIP) install -q -c constraints.txt torch==2.13.0
	$(PIP) install -q -c constraints.txt -e ".[$(EXTRAS)]"
	touch $(STAMP)

venv: $(STAMP)

# The main job on a LocalCluster: simulate a few events with ACTS (truth included, so efficiency
# is reported) from the real TrackML particles when ../shared is there, else from a particle gun,
# reconstruct them with the shipped models, print the summary.
DEMO ?= runs/demo
DEMO_EVENTS ?= 4
run: $(STAMP)
	test -d $(DEMO)/events || $(VENV)/bin/trackflow simulate --out $(DEMO)/events --events $(DEMO_EVENTS) \
		--seed 20261128 --no-progress \
		$(if $(wildcard $(TRACKML_EVENTS)),--particles-from $(TRACKML_EVENTS),--pileup 40)
	$(VENV)/bin/trackflow reconstruct $(DEMO)/events --out $(DEMO)/out --overwrite --no-progress --batch-size 1

test: $(STAMP)
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# Training and validation sets with real TrackML kinematics propagated through ACTS Fatras, noise at
# the real level (event 1001: 18.6 %). Training uses 8 events' particles (each repeat rotated in
# phi), validation the held-out event 1020. A few minutes on 2 cores.
data: $(STAMP)
	$(VENV)/bin/trackflow simulate --out data/train --events 40 --seed 1 --workers 2 --noise-fraction 0.18 \
		--particles-from '$(TRACKML_EVENTS)/event0000010[01]?-particles.csv.gz'
	$(VENV)/bin/trackflow simulate --out data/val --events 5 --seed 2 --workers 2 --noise-fraction 0.18 \
		--particles-from $(TRACKML_EVENTS)/event000001020-particles.csv.gz

clean-venv:
	rm -rf $(VENV)
