# The two commands (README.md): both install what is missing, build, and then run or test.
.PHONY: run test build setup lint

run:
	@bash scripts/run.sh

test:
	@bash scripts/test.sh

# Pieces, for development.
setup:
	@bash scripts/setup.sh

build: setup
	@bash scripts/build.sh dev

lint: setup
	@bash scripts/lint.sh
