# One command each: `make quickstart` runs the main job, `make test` runs every test.
# Both create ./.venv and install the package into it when needed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: quickstart test venv bench clean browser

venv: $(STAMP)

# A venv made before TensorFlow became a dependency holds tensorflow-cpu, which ships the
# same files as the tensorflow now required: it is removed so that one package owns them.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	if $(BIN)/python -m pip show --quiet tensorflow-cpu 2>/dev/null; then \
	  $(BIN)/python -m pip uninstall --quiet --yes tensorflow-cpu; fi
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

# The quickstart notebook on the embedded local Spark, headless; writes quickstart.html.
quickstart: $(STAMP)
	$(BIN)/python -m sparkdl_magics.run_notebook notebooks/quickstart.ipynb --html quickstart.html

# The browser test (tests/test_browser.py: JupyterLab in headless Chromium) needs Chromium
# and its driver: installed with apt when missing and possible (root on Debian), like Java
# in .ci/run; where they cannot be installed that one test is skipped, saying why.
browser:
	@if ! command -v chromedriver >/dev/null 2>&1 || ! { command -v chromium >/dev/null 2>&1 || \
	    command -v chromium-browser >/dev/null 2>&1; }; then \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    { apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null; } || \
	      echo "could not install chromium chromium-driver: the browser test will be skipped"; \
	  else echo "no chromium/chromedriver (apt-get install chromium chromium-driver as root):" \
	    "the browser test will be skipped"; fi; \
	fi

# The whole suite: unit, local Spark, local-cluster, Spark Connect, the browser test, and
# notebooks (nbval). pytest's exit code 5 ("no tests collected") is not a pass.
test: $(STAMP) browser
	$(BIN)/python -m pytest -ra tests notebooks --nbval-lax --nbval-sanitize-with notebooks/sanitize.cfg -p no:cacheprovider --durations=30; \
	  rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 1; fi; exit $$rc

bench: $(STAMP)
	$(BIN)/python benchmarks/featurize.py

clean:
	rm -rf $(VENV) build *.egg-info quickstart.html
