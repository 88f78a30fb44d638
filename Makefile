# netevd: build, run, test, bench, install.
#   make                  release build of netevd and netevctl
#   make run              netevd in the foreground with the example config and hooks
#   make test             the whole suite (as root: tests make network namespaces)
#   make bench            the benchmark (as root), figures in bench/out/results.md
#   make bench-scale      routes and links at scale (as root), bench/out/scale.md
#   make install DESTDIR=... PREFIX=/usr
PREFIX  ?= /usr/local
SBINDIR ?= $(PREFIX)/sbin
BINDIR  ?= $(PREFIX)/bin
MANDIR  ?= $(PREFIX)/share/man
SHAREDIR ?= $(PREFIX)/share/netevd
SYSCONFDIR ?= /etc
UNITDIR ?= /lib/systemd/system
CARGO   ?= cargo
RUNDIR  := target/run
STATES  := off no-carrier dormant carrier degraded routable routes

all: build

build:
	$(CARGO) build --release --workspace

# A private hook tree under target/run with the example hook in every
# state directory, and a config that points at it and serves the control
# socket at target/run/netevd.sock (netevctl --socket target/run/netevd.sock).
run: build
	@mkdir -p $(RUNDIR)
	@for s in $(STATES); do mkdir -p $(RUNDIR)/hooks/$$s.d; \
	  cp contrib/hooks/print-event $(RUNDIR)/hooks/$$s.d/50-print-event; done
	@sed -e 's|^  script_dir: .*|  script_dir: $(CURDIR)/$(RUNDIR)/hooks|' \
	  -e 's|^  socket: .*|  socket: $(CURDIR)/$(RUNDIR)/netevd.sock|' contrib/netevd.yaml > $(RUNDIR)/netevd.yaml
	./target/release/netevd --foreground --config $(RUNDIR)/netevd.yaml

test:
	$(CARGO) test --workspace

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	@if command -v mandoc >/dev/null; then mandoc -T lint -W warning man/*.[0-9]; fi

bench: build
	python3 bench/bench.py

# Full routing tables, 10,000 links and overflow, side by side with ip
# monitor (as root; about 15 minutes): bench/out/scale.md.
bench-scale: build
	python3 bench/scale.py

install: build
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(BINDIR)
	install -m 755 target/release/netevd $(DESTDIR)$(SBINDIR)/netevd
	install -m 755 target/release/netevctl $(DESTDIR)$(BINDIR)/netevctl
	install -d $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man7 $(DESTDIR)$(MANDIR)/man8
	install -m 644 man/netevctl.1 $(DESTDIR)$(MANDIR)/man1/
	install -m 644 man/netevd.yaml.5 $(DESTDIR)$(MANDIR)/man5/
	install -m 644 man/netevd-hooks.7 $(DESTDIR)$(MANDIR)/man7/
	install -m 644 man/netevd.8 $(DESTDIR)$(MANDIR)/man8/
	install -d $(DESTDIR)$(SHAREDIR)/examples/hooks
	install -m 644 contrib/netevd.yaml $(DESTDIR)$(SHAREDIR)/examples/netevd.yaml
	install -m 755 contrib/hooks/print-event $(DESTDIR)$(SHAREDIR)/examples/hooks/print-event
	install -d $(DESTDIR)$(SYSCONFDIR)/iproute2/rt_protos.d
	install -m 644 contrib/rt_protos.d/netevd.conf $(DESTDIR)$(SYSCONFDIR)/iproute2/rt_protos.d/netevd.conf
	install -d $(DESTDIR)$(UNITDIR)
	sed 's|/usr/sbin/netevd|$(SBINDIR)/netevd|' contrib/netevd.service > $(DESTDIR)$(UNITDIR)/netevd.service
	chmod 644 $(DESTDIR)$(UNITDIR)/netevd.service
	install -d $(DESTDIR)$(SYSCONFDIR)/netevd
	for s in $(STATES); do install -d $(DESTDIR)$(SYSCONFDIR)/netevd/$$s.d; done
	@# never overwrite a configuration the administrator already has
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/netevd/netevd.yaml ]; then \
	  echo "keeping existing $(DESTDIR)$(SYSCONFDIR)/netevd/netevd.yaml"; \
	else \
	  install -m 644 contrib/netevd.yaml $(DESTDIR)$(SYSCONFDIR)/netevd/netevd.yaml; \
	fi

clean:
	$(CARGO) clean
	rm -rf bench/out

.PHONY: all build run test lint bench bench-scale install clean
