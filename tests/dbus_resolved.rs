//! `use_dns`, `use_domain` and `use_hostname` against the real
//! systemd-resolved and systemd-hostnamed on a private bus, with the
//! values systemd-networkd reports for a link it configures. hostnamed is
//! started late: the host name call made before is refused, logged with
//! the bus's error, and not repeated until the value changes.

#![cfg(feature = "dbus")]

mod common;
#[path = "common/peers.rs"]
mod peers;

use std::fs;
use std::time::{Duration, Instant};

use common::{Dir, Ns};
use peers::*;

const NETWORK: &str = "[Match]\nName=rs0\n[Network]\nAddress=192.0.2.10/24\nGateway=192.0.2.1\n\
DNS=192.0.2.53\nDomains=example.test ~corp.test\nIPv6AcceptRA=no\nLinkLocalAddressing=no\n";

fn wait_log(dir: &Dir, what: &str, secs: u64) {
    let end = Instant::now() + Duration::from_secs(secs);
    while !dir.log().contains(what) {
        assert!(Instant::now() < end, "log lacks {what:?}:\n{}", dir.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn resolved_and_hostnamed_get_the_links_values() {
    if skip_without_networkd() || skip_without_resolved() {
        return;
    }
    let ns = Ns::new();
    let peer = Ns::new();
    let dir = Dir::new();
    let pw = passwd_with_resolve(&dir);
    let bus = Bus::start_with(&dir, Some(pw.clone()));
    let _resolved = resolved(&dir, &ns, &bus, &pw);
    let nd = Networkd::start(&ns, &dir, &bus, NETWORK);
    // netevd reads networkd's link state files through links/ here, and a
    // host name from leases/ here: networkd removes a lease file it did
    // not write, so the test keeps its own.
    let state = dir.join("state");
    fs::create_dir_all(state.join("leases")).unwrap();
    std::os::unix::fs::symlink(nd.state.join("links"), state.join("links")).unwrap();
    let config = format!(
        "  backend: systemd-networkd\nbackends:\n  systemd_networkd:\n    state_dir: {}\n  \
         dhclient:\n    use_dns: true\n    use_domain: true\n    use_hostname: true\n",
        state.display()
    );
    let _netevd = Netevd::start(&ns, &dir, &bus, &config);
    ns.ip(&[
        "link", "add", "rs0", "type", "veth", "peer", "name", "rs1", "netns", &peer.name,
    ]);
    let o = ns.output(&["-o", "link", "show", "rs0"]);
    let idx: u32 = o.split(':').next().unwrap().trim().parse().unwrap();
    // A host name as a DHCP lease would give it.
    fs::write(
        state.join(format!("leases/{idx}")),
        "HOSTNAME=netevd-new-name\n",
    )
    .unwrap();
    peer.ip(&["link", "set", "rs1", "up"]);
    peer.ip(&["addr", "add", "192.0.2.1/24", "dev", "rs1"]);
    nd.wait_line(idx, "ADMIN_STATE=configured", 40);

    wait_log(
        &dir,
        &format!("resolved SetLinkDNS link {idx} [192.0.2.53]: done"),
        10,
    );
    wait_log(
        &dir,
        &format!("resolved SetLinkDomains link {idx} [example.test ~corp.test]: done"),
        10,
    );
    let dns = bus.busctl(&[
        "get-property",
        "org.freedesktop.resolve1",
        &format!("/org/freedesktop/resolve1/link/_3{idx}"),
        "org.freedesktop.resolve1.Link",
        "Domains",
    ]);
    assert!(
        dns.contains("\"corp.test\" true") && dns.contains("\"example.test\" false"),
        "{dns}"
    );
    // No hostnamed yet: refused, with the bus's error, once.
    wait_log(&dir, "hostnamed SetStaticHostname netevd-new-name: refused: org.freedesktop.DBus.Error.ServiceUnknown", 10);

    let _hostnamed = hostnamed(&dir, &bus);
    // The same value is not sent again when the next event comes.
    std::thread::sleep(Duration::from_millis(1100));
    peer.ip(&["link", "set", "rs1", "down"]);
    nd.wait_line(idx, "OPER_STATE=no-carrier", 30);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        dir.log()
            .matches("SetStaticHostname netevd-new-name: refused")
            .count(),
        1,
        "{}",
        dir.log()
    );
    // A new value goes out and is done.
    fs::write(
        state.join(format!("leases/{idx}")),
        "HOSTNAME=netevd-newer\n",
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(600));
    peer.ip(&["link", "set", "rs1", "up"]);
    wait_log(&dir, "hostnamed SetStaticHostname netevd-newer: done", 20);
    wait_log(&dir, "hostnamed SetHostname netevd-newer: done", 10);
    let written = fs::read_to_string(dir.join("hostnamed/upper/hostname")).unwrap();
    assert_eq!(written.trim(), "netevd-newer");
    assert_ne!(
        fs::read_to_string("/etc/hostname")
            .unwrap_or_default()
            .trim(),
        "netevd-newer",
        "the host's own name is untouched"
    );
}
