# netevd: build, run, test, bench, install, package.
#   make                  release build of netevd and netevctl (as your user)
#   make run              netevd in the foreground with the example config and hooks
#   make deps             as root on Debian: apt-get install what the tests need
#   make test             deps, then the whole suite (as root: tests make namespaces)
#   make bench            the benchmark (as root), figures in bench/out/results.md
#   make bench-scale      routes and links at scale (as root), bench/out/scale.md
#   make install DESTDIR=... PREFIX=/usr   installs what `make` built; builds nothing
#   make deb              target/debian/netevd_<version>_<arch>.deb (dpkg-deb; DEB_OUT=dir)
#   make rpm              target/rpm/RPMS/<arch>/netevd-<version>-1.<arch>.rpm (rpmbuild; RPM_OUT=dir)
PREFIX  ?= /usr/local
SBINDIR ?= $(PREFIX)/sbin
BINDIR  ?= $(PREFIX)/bin
MANDIR  ?= $(PREFIX)/share/man
DATADIR ?= $(PREFIX)/share
SHAREDIR ?= $(DATADIR)/netevd
SYSCONFDIR ?= /etc
UNITDIR ?= /lib/systemd/system
BASHCOMPDIR ?= $(DATADIR)/bash-completion/completions
ZSHCOMPDIR ?= $(DATADIR)/zsh/vendor-completions
FISHCOMPDIR ?= $(DATADIR)/fish/vendor_completions.d
CARGO   ?= cargo
RUNDIR  := target/run
STATES  := off no-carrier dormant carrier degraded routable routes
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
RELEASE ?= target/release

# What the tests need beyond a Rust toolchain, as `tool:Debian package`.
# gcc is the linker rustc calls (cc) and builds the benchmark's hook;
# iproute2 drives the kernel in namespaces; iputils-ping sends the policy
# routing tests' traffic; mandoc lints the man pages; procps has kill(1);
# python3 runs a control client as another user; util-linux has setpriv
# and prlimit; coreutils has mkfifo.
TEST_TOOLS := cc:gcc ip:iproute2 ping:iputils-ping mandoc:mandoc kill:procps \
	python3:python3 setpriv:util-linux mkfifo:coreutils readelf:binutils
# Tests that skip, naming the package, when these are missing: the units'
# security score and socket activation (systemd), the init scripts
# (shellcheck), the completions (zsh, fish), the packages (dpkg-dev,
# lintian, rpm), the metrics' exposition format (promtool), the dhclient
# backend against a real DHCP server and client (dnsmasq-base,
# isc-dhcp-client), the HTTP shim's dashboard in a browser (chromium) and
# its TLS certificates (openssl), the DBus backends against a private
# system bus (dbus-daemon, dbus-bin; systemd brings systemd-networkd and
# hostnamed; tests/peers/unpack.sh unpacks resolved and NetworkManager).
EXTRA_TOOLS := systemd-analyze:systemd shellcheck:shellcheck zsh:zsh fish:fish \
	dpkg-shlibdeps:dpkg-dev lintian:lintian rpmbuild:rpm promtool:prometheus \
	dnsmasq:dnsmasq-base dhclient:isc-dhcp-client chromium:chromium openssl:openssl \
	dbus-daemon:dbus-daemon dbus-send:dbus-bin

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

# Installs the missing tools' packages as root on Debian; elsewhere names
# them and fails, so that a missing tool is never mistaken for a failing
# test. `make deps EXTRA=1` also covers the tests that would skip.
deps:
	@tools="$(TEST_TOOLS)"; [ -z "$(EXTRA)" ] || tools="$$tools $(EXTRA_TOOLS)"; \
	missing=; for t in $$tools; do \
	  command -v $${t%%:*} >/dev/null 2>&1 || missing="$$missing $${t#*:}"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "make deps: apt-get install$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y --no-install-recommends $$missing; \
	else \
	  echo "make deps: missing tools; install these Debian packages (or your system's equivalents):$$missing" >&2; \
	  [ "$$(id -u)" = 0 ] || echo "make deps: or run make deps as root on Debian" >&2; \
	  exit 1; \
	fi
	@# EXTRA: the peers the DBus tests unpack rather than install.
	@if [ -n "$(EXTRA)" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  sh tests/peers/unpack.sh; fi

# --no-fail-fast: one suite failing (or a tool missing) does not hide the
# others' results.
# Then the HTTP shim's tests once more with TLS (cargo feature tls, not in
# the default build).
test: deps
	@s=0; $(CARGO) test --workspace --no-fail-fast || s=1; \
	$(CARGO) test --features tls --test http || s=1; exit $$s

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	@if command -v mandoc >/dev/null; then mandoc -T lint -W warning man/*.[0-9]; fi
	@if command -v shellcheck >/dev/null; then \
	  shellcheck contrib/hooks/print-event contrib/openrc/netevd contrib/openwrt/netevd \
	    contrib/debian/postinst contrib/debian/postrm contrib/completions/*.bash; fi

bench: build
	python3 bench/bench.py

# Full routing tables, 10,000 links and overflow, side by side with ip
# monitor (as root; about 15 minutes): bench/out/scale.md.
bench-scale: build
	python3 bench/scale.py

# Installs the binaries `make` built: it builds nothing, so that `sudo make
# install` needs no toolchain in root's PATH and leaves no root-owned files
# in target/.
install:
	@for b in netevd netevctl; do if [ ! -x $(RELEASE)/$$b ]; then \
	  echo "make install: $(RELEASE)/$$b is missing: run make first (as your user, not root)" >&2; \
	  exit 1; fi; done
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(BINDIR)
	install -m 755 $(RELEASE)/netevd $(DESTDIR)$(SBINDIR)/netevd
	install -m 755 $(RELEASE)/netevctl $(DESTDIR)$(BINDIR)/netevctl
	install -d $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man7 $(DESTDIR)$(MANDIR)/man8
	install -m 644 man/netevctl.1 $(DESTDIR)$(MANDIR)/man1/
	install -m 644 man/netevd.yaml.5 $(DESTDIR)$(MANDIR)/man5/
	install -m 644 man/netevd-hooks.7 $(DESTDIR)$(MANDIR)/man7/
	install -m 644 man/netevd.8 $(DESTDIR)$(MANDIR)/man8/
	install -d $(DESTDIR)$(SHAREDIR)/examples/hooks $(DESTDIR)$(SHAREDIR)/examples/init
	install -m 644 contrib/netevd.yaml $(DESTDIR)$(SHAREDIR)/examples/netevd.yaml
	install -m 755 contrib/hooks/print-event $(DESTDIR)$(SHAREDIR)/examples/hooks/print-event
	install -m 755 contrib/openrc/netevd $(DESTDIR)$(SHAREDIR)/examples/init/netevd.openrc
	install -m 755 contrib/openwrt/netevd $(DESTDIR)$(SHAREDIR)/examples/init/netevd.openwrt
	install -d $(DESTDIR)$(BASHCOMPDIR) $(DESTDIR)$(ZSHCOMPDIR) $(DESTDIR)$(FISHCOMPDIR)
	install -m 644 contrib/completions/netevd.bash $(DESTDIR)$(BASHCOMPDIR)/netevd
	install -m 644 contrib/completions/netevctl.bash $(DESTDIR)$(BASHCOMPDIR)/netevctl
	install -m 644 contrib/completions/_netevd $(DESTDIR)$(ZSHCOMPDIR)/_netevd
	install -m 644 contrib/completions/_netevctl $(DESTDIR)$(ZSHCOMPDIR)/_netevctl
	install -m 644 contrib/completions/netevd.fish $(DESTDIR)$(FISHCOMPDIR)/netevd.fish
	install -m 644 contrib/completions/netevctl.fish $(DESTDIR)$(FISHCOMPDIR)/netevctl.fish
	install -d $(DESTDIR)$(UNITDIR)
	sed 's|/usr/sbin/netevd|$(SBINDIR)/netevd|' contrib/systemd/netevd.service > $(DESTDIR)$(UNITDIR)/netevd.service
	install -m 644 contrib/systemd/netevd.socket $(DESTDIR)$(UNITDIR)/netevd.socket
	chmod 644 $(DESTDIR)$(UNITDIR)/netevd.service
	install -d $(DESTDIR)$(SYSCONFDIR)/netevd $(DESTDIR)$(SYSCONFDIR)/netevd/conf.d
	for s in $(STATES); do install -d $(DESTDIR)$(SYSCONFDIR)/netevd/$$s.d; done
	@# never overwrite what the administrator already has
	@$(MAKE) -s keep SRC=contrib/netevd.yaml DST=$(DESTDIR)$(SYSCONFDIR)/netevd/netevd.yaml
	@install -d $(DESTDIR)$(SYSCONFDIR)/iproute2/rt_protos.d
	@$(MAKE) -s keep SRC=contrib/rt_protos.d/netevd.conf DST=$(DESTDIR)$(SYSCONFDIR)/iproute2/rt_protos.d/netevd.conf

# A package's config: the loop runs as the netevd user its scripts create
# (system.user); hooks still run as root through the spawner.
package-config:
	sed -i 's/^  user: "" .*drop to this user.*/  user: netevd               # the loop drops to this user at start; hooks still run as root/' $(CONF)
	grep -q '^  user: netevd ' $(CONF)

# Installs SRC as DST unless DST exists: an edited one is kept, and the new
# one put next to it as DST.new when they differ.
keep:
	@if [ ! -e "$(DST)" ]; then install -m 644 "$(SRC)" "$(DST)"; \
	elif cmp -s "$(SRC)" "$(DST)"; then :; \
	else install -m 644 "$(SRC)" "$(DST).new"; \
	  echo "keeping the edited $(DST); the new one is $(DST).new"; fi

# The Debian package, from the tree: `make install` into a staging root,
# then dpkg-deb. Builds offline (no debhelper, no crates beyond `cargo
# fetch`). The package's own files are in contrib/debian/.
DEB_ARCH = $(shell dpkg --print-architecture)
DEB_OUT ?= $(CURDIR)/target/debian
DEB_ROOT = $(DEB_OUT)/root
deb: build
	rm -rf $(DEB_ROOT)
	$(MAKE) install DESTDIR=$(DEB_ROOT) PREFIX=/usr UNITDIR=/usr/lib/systemd/system
	@# the packaged config drops to the user postinst makes
	$(MAKE) -s package-config CONF=$(DEB_ROOT)/etc/netevd/netevd.yaml
	@# netevd.yaml.new or rt_protos.d leftovers cannot occur in a fresh root
	install -d $(DEB_ROOT)/DEBIAN $(DEB_ROOT)/usr/share/doc/netevd $(DEB_ROOT)/usr/share/lintian/overrides
	@# Depends: the shared libraries the binaries link, as dpkg-shlibdeps
	@# finds them (it wants a debian/control to exist).
	rm -rf $(DEB_OUT)/shlibs && mkdir -p $(DEB_OUT)/shlibs/debian
	printf 'Source: netevd\n\nPackage: netevd\nArchitecture: any\n' > $(DEB_OUT)/shlibs/debian/control
	cd $(DEB_OUT)/shlibs && dpkg-shlibdeps -O ../root/usr/sbin/netevd ../root/usr/bin/netevctl \
	  2>/dev/null | sed -n 's/^shlibs:Depends=//p' > depends
	sed -e 's/@VERSION@/$(VERSION)/' -e 's/@ARCH@/$(DEB_ARCH)/' \
	  -e "s/@DEPENDS@/$$(cat $(DEB_OUT)/shlibs/depends)/" \
	  -e "s/@SIZE@/$$(du -sk --exclude=DEBIAN $(DEB_ROOT) | cut -f1)/" \
	  contrib/debian/control > $(DEB_ROOT)/DEBIAN/control
	install -m 644 contrib/debian/conffiles $(DEB_ROOT)/DEBIAN/conffiles
	install -m 755 contrib/debian/postinst contrib/debian/postrm $(DEB_ROOT)/DEBIAN/
	install -m 644 contrib/debian/copyright $(DEB_ROOT)/usr/share/doc/netevd/copyright
	install -m 644 contrib/debian/lintian-overrides $(DEB_ROOT)/usr/share/lintian/overrides/netevd
	sed 's/@VERSION@/$(VERSION)/' contrib/debian/changelog | gzip -9n > $(DEB_ROOT)/usr/share/doc/netevd/changelog.gz
	gzip -9n $(DEB_ROOT)/usr/share/man/man*/*
	cd $(DEB_ROOT) && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | \
	  xargs -0 md5sum > DEBIAN/md5sums
	chmod 644 $(DEB_ROOT)/DEBIAN/md5sums
	dpkg-deb --root-owner-group -Zxz --build $(DEB_ROOT) $(DEB_OUT)/netevd_$(VERSION)_$(DEB_ARCH).deb

# The RPM, from the same `make install`: the spec installs the binaries
# built here (rpmbuild does not build Rust).
RPM_OUT ?= $(CURDIR)/target/rpm
rpm: build
	rm -rf $(RPM_OUT)
	mkdir -p $(RPM_OUT)/SOURCES
	rpmbuild -bb --define "_topdir $(RPM_OUT)" --define "srcdir $(CURDIR)" \
	  --define "version $(VERSION)" contrib/rpm/netevd.spec

clean:
	$(CARGO) clean
	rm -rf bench/out

.PHONY: all build run deps test lint bench bench-scale install keep package-config deb rpm clean
