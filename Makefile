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

# The data the shipped models were trained and measured on (trackflow/pipeline/training/__init__.py):
# real TrackML kinematics (7 particle files for training, 2 held out for validation and test)
# propagated through ACTS Fatras, plus particle-gun events with the LHC vertex spread (sigma_z
# 55 mm) so the models also hold on gun events. About 5 min on 2 cores.

data: $(STAMP)
	mkdir -p data/particles_train data/particles_holdout data/train_mix
	for e in 1001 1003 1005 1009 1010 1012 1013; do \
		ln -sf $(abspath $(TRACKML_EVENTS))/event00000$$e-particles.csv.gz data/particles_train/; done
	for e in 1018 1020; do \
		ln -sf $(abspath $(TRACKML_EVENTS))/event00000$$e-particles.csv.gz data/particles_holdout/; done
	$(VENV)/bin/trackflow simulate --out data/train --events 14 --seed 1 --particles-from data/particles_train
	$(VENV)/bin/trackflow simulate --out data/val --events 2 --seed 2 --particles-from data/particles_holdout
	$(VENV)/bin/trackflow simulate --out data/test --events 4 --seed 3 --particles-from data/particles_holdout
	$(VENV)/bin/trackflow simulate --out data/gun_train --events 6 --seed 21 --pileup 100
	cd data/train_mix && for f in ../train/event*; do ln -sf $$f .; done && \
		for f in ../gun_train/event*; do b=$$(basename $$f); \
		ln -sf $$f event$$(printf %09d $$((10#$${b:5:9} + 100)))$${b:14}; done

clean-venv:
	rm -rf $(VENV)
