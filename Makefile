# The two commands: `make demo` (a working index on 127.0.0.1) and `make test`.
# Both do their own set-up on a fresh Debian machine: the Python virtualenv,
# the collections, a running Docker engine and the locally built base images.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

VENV := .venv
STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg

IMAGE_DEBIAN12 := pypi-index/debian:12
IMAGE_DEBIAN13 := pypi-index/debian:13

.PHONY: demo demo-destroy test bench lint docs unit molecule mutation setup engine images

demo: setup images ## Provision the demo container and print how to use it
	ansible-playbook playbooks/demo.yml -i inventories/local

demo-destroy: setup engine ## Remove the demo container
	ansible-playbook playbooks/demo-destroy.yml -i inventories/local

test: setup lint unit images molecule ## Lint, the unit tests, then the Molecule suite

# The benchmark (docs/performance.md); BENCH_ARGS=--quick for a small set.
BENCH_STAMP := $(VENV)/.bench-installed
BENCH_ARGS ?=

bench: setup images $(BENCH_STAMP) ## Measure the index against static Apache; report in results/
	python bench/run.py $(BENCH_ARGS)

$(BENCH_STAMP): bench/requirements.txt $(STAMP)
	$(VENV)/bin/pip install --quiet -r bench/requirements.txt
	touch $@

# The example Vault in inventories/prod is encrypted with this documented demo
# password; checking the prod inventory proves the example still decrypts.
DEMO_VAULT_PASS := .cache/demo-vault-pass

lint: setup
	yamllint --strict .
	ansible-lint
	python scripts/role-docs.py --check
	python scripts/check-links.py
	mkdir -p .cache && printf '%s\n' demo-vault-password > $(DEMO_VAULT_PASS)
	ansible-inventory -i inventories/prod --vault-password-file $(DEMO_VAULT_PASS) --list > /dev/null
	ansible-playbook --syntax-check -i inventories/prod --vault-password-file $(DEMO_VAULT_PASS) \
	  playbooks/site.yml playbooks/rotate-upload-passwords.yml playbooks/backup.yml \
	  playbooks/yank.yml playbooks/remove-release.yml playbooks/release-name.yml playbooks/promote.yml playbooks/maintenance.yml \
	  playbooks/add-replica.yml playbooks/tokens.yml playbooks/project-status.yml playbooks/audit.yml

# The host tools' unit tests: seconds, no Docker. The replication tests run
# rsync (Debian's), as the primary does. Then the vhost, rendered for each
# test inventory on this machine, against tests/vhost/expected/, the
# pass-through's page filter, run by Debian's jq as Apache runs it, the
# alert rules, by Debian's promtool, and the mtail programs, by Debian's mtail.
PROMTOOL := $(CURDIR)/.cache/prometheus/usr/bin/promtool
MTAIL := $(CURDIR)/.cache/mtail/usr/bin/mtail

unit: setup /usr/bin/rsync /usr/bin/jq $(PROMTOOL) $(MTAIL)
	cd tools && python -m pytest -q
	PROMTOOL=$(PROMTOOL) MTAIL=$(MTAIL) python -m pytest -q -p no:cacheprovider --timeout=900 tests

/usr/bin/rsync /usr/bin/jq:
	apt-get update -qq && apt-get install -y -qq --no-install-recommends $(notdir $@)

# promtool and mtail from Debian's packages, unpacked, not installed: no
# server needs to run on this machine.
$(PROMTOOL) $(MTAIL):
	rm -rf .cache/$(PACKAGE)-deb && mkdir -p .cache/$(PACKAGE)-deb
	apt-get update -qq
	cd .cache/$(PACKAGE)-deb && apt-get download $(PACKAGE)
	dpkg-deb -x .cache/$(PACKAGE)-deb/$(PACKAGE)_*.deb .cache/$(PACKAGE)
	rm -rf .cache/$(PACKAGE)-deb
	test -x $@
$(PROMTOOL): PACKAGE := prometheus
$(MTAIL): PACKAGE := mtail

# The roles' variable tables, from their argument specs.
docs: setup
	python scripts/role-docs.py

# sslyze, for the default scenario's TLS profile test, and poetry, for the
# operations scenario's token uploads: each in a virtualenv of its own.
SSLYZE := .cache/sslyze/bin/sslyze
POETRY := .cache/poetry/bin/poetry

molecule: setup images $(SSLYZE) $(POETRY)
	molecule test --all

$(SSLYZE): requirements-sslyze.txt
	python3 -m venv .cache/sslyze
	.cache/sslyze/bin/pip install --quiet -r requirements-sslyze.txt
	touch $@

$(POETRY): requirements-poetry.txt
	python3 -m venv .cache/poetry
	.cache/poetry/bin/pip install --quiet -r requirements-poetry.txt
	touch $@

# The mutation check of the upload path (publish.py, tokens.py, names.py):
# mutmut mutates them and runs their unit tests against each mutant, in a
# copy of tools/ under .cache (mutmut writes its mutants beside the code).
# Minutes, not part of `make test`; the report is docs/mutation.md.
MUTMUT := .cache/mutmut/bin/mutmut

mutation: $(MUTMUT)
	rm -rf .cache/mutation && cp -r tools .cache/mutation
	cd .cache/mutation && ../mutmut/bin/mutmut run --max-children 2 > /dev/null && ../mutmut/bin/mutmut results --all true

$(MUTMUT): requirements-mutmut.txt
	python3 -m venv .cache/mutmut
	.cache/mutmut/bin/pip install --quiet -r requirements-mutmut.txt
	touch $@

# The controller tools only: what a real deployment needs (no Docker).
setup: $(STAMP)

$(STAMP): requirements.txt requirements.yml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements.txt
	ansible-galaxy collection install -r requirements.yml
	touch $@

engine:
	scripts/ensure-engine.sh

images: engine
	scripts/build-base-image.sh bookworm $(IMAGE_DEBIAN12)
	scripts/build-base-image.sh trixie $(IMAGE_DEBIAN13)
