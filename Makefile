# Two commands a newcomer needs: `make demo` and `make test`.
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
DEMO_OUT ?= out/demo

.PHONY: install demo test lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[service,mosaic,train,test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/khet analyze tests/fixtures/micasense_crop --panel tests/fixtures/micasense_panel_crop \
		-o $(DEMO_OUT)
	@echo "Open $(DEMO_OUT)/preview.png, or load $(DEMO_OUT)/classes.tif in QGIS."

test: $(STAMP)
	bash .ci/services
	$(BIN)/python -m pytest -q

# What CI checks before the tests: lint, formatting, types (mypy, on the package, tests, benches).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	PYTHON=$(BIN)/python bash .ci/typecheck

bench: $(STAMP)
	$(BIN)/python bench/pipeline_speed.py
	$(BIN)/python bench/pipeline_memory.py
	$(BIN)/python bench/rows_potato.py
	$(BIN)/python bench/seg_output_grid.py

clean:
	rm -rf $(VENV) out .pytest_cache
