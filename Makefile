# The two commands of the README's quick start are `make demo` and `make test`; both
# install what they need first. The rest are for development.

CARGO ?= cargo

.PHONY: demo test deps lint vectors bench bench-import bench-mesh measure-node install install-files

deps:
	@./scripts/install-deps.sh

## The main job: the best demo that exists today.
demo: deps
	$(CARGO) run --locked --release -p porchlight-node -- demo

## The whole test suite, exactly as CI runs it.
test: deps lint
	$(CARGO) test --workspace --doc --locked
	$(CARGO) nextest run --workspace --locked --no-fail-fast

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

## Regenerate spec/vectors/*.json from their generator, then check them.
vectors:
	UPDATE_VECTORS=1 $(CARGO) test -p porchlight-protocol --test vectors vectors_match_the_generator
	$(CARGO) test -p porchlight-protocol --test vectors

## Clip seal/open over 64 MiB against raw ChaCha20-Poly1305, with ratios.
bench:
	$(CARGO) bench --locked -p porchlight-protocol --bench clip

## Store import of 1 GiB against raw ChaCha20-Poly1305 and cp + sync, with ratios.
bench-import:
	$(CARGO) bench --locked -p porchlight-node --bench import

## Request-to-token latency (1,000 pre-authorized requests) and a 1 GiB fetch against scp,
## between release-build daemons on loopback. Installs openssh-server if sshd is missing.
bench-mesh:
	./scripts/bench-mesh.sh

## CPU and peak memory of a recording node and an idle node (5 minutes each).
measure-node:
	./scripts/measure-node.sh

## Install the release binary with its manual page and bash, zsh and fish completions
## (PREFIX=/usr/local; DESTDIR for packaging). `install-files` installs a binary built
## already (BIN=...), without building.
PREFIX ?= /usr/local
BIN ?= target/release/porchlight

install:
	$(CARGO) build --locked --release -p porchlight-node
	$(MAKE) install-files BIN=target/release/porchlight

install-files:
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/porchlight
	install -d $(DESTDIR)$(PREFIX)/share/man/man1 \
		$(DESTDIR)$(PREFIX)/share/bash-completion/completions \
		$(DESTDIR)$(PREFIX)/share/zsh/site-functions \
		$(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d
	$(BIN) man > $(DESTDIR)$(PREFIX)/share/man/man1/porchlight.1
	$(BIN) completions bash > $(DESTDIR)$(PREFIX)/share/bash-completion/completions/porchlight
	$(BIN) completions zsh > $(DESTDIR)$(PREFIX)/share/zsh/site-functions/_porchlight
	$(BIN) completions fish > $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/porchlight.fish
