//! netevd against the real NetworkManager on a private system bus, in a
//! namespace of the test's own, managing a veth end from a keyfile: the
//! device's states run their directories with BACKEND=NetworkManager and
//! the connection's id, uuid, addresses, gateway and name servers.

#![cfg(feature = "dbus")]

mod common;
#[path = "common/peers.rs"]
mod peers;

use std::fs;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Dir, Ns};
use peers::*;

/// Where .ci/run unpacks the network-manager package (installing it would
/// pull udev and start NetworkManager on the machine).
const NM_ROOT: &str = "/var/cache/netevd-tests/nm-root";

const UUID: &str = "5f0d8d2c-1c1a-4f2e-9a57-2b8f0e2d0a01";

fn nm(dir: &Dir, ns: &Ns, bus: &Bus) -> Service {
    let d = dir.join("nm");
    for sub in [
        "conns",
        "conf.d",
        "empty",
        "var-upper",
        "var-work",
        "etc-upper",
        "etc-work",
    ] {
        fs::create_dir_all(d.join(sub)).unwrap();
    }
    fs::write(
        d.join("NetworkManager.conf"),
        format!(
            "[main]\nplugins=keyfile\ndhcp=internal\ndns=none\nrc-manager=unmanaged\n\
             hostname-mode=none\nauth-polkit=false\nno-auto-default=*\n[keyfile]\npath={}\n\
             unmanaged-devices=except:interface-name:nm0\n",
            d.join("conns").display()
        ),
    )
    .unwrap();
    let conn = d.join("conns/netevd-nm0.nmconnection");
    fs::write(
        &conn,
        format!(
            "[connection]\nid=netevd nm0\nuuid={UUID}\ntype=ethernet\ninterface-name=nm0\n\
             autoconnect=true\n[ethernet]\n[ipv4]\nmethod=manual\naddress1=192.0.2.20/24,192.0.2.1\n\
             dns=192.0.2.53;\n[ipv6]\nmethod=manual\naddress1=2001:db8:1::20/64,2001:db8:1::1\n\
             addr-gen-mode=eui64\n"
        ),
    )
    .unwrap();
    // NetworkManager ignores keyfiles others may read.
    common::run("chmod", &["600", conn.to_str().unwrap()]);
    let script = format!(
        "#!/bin/sh\nset -e\nmount -o remount,bind,ro /sys\n\
         mount -t tmpfs -o mode=755 netevd-run /run\n\
         mount -t overlay netevd-var -o lowerdir=/var,upperdir={d}/var-upper,workdir={d}/var-work /var\n\
         mount -t overlay netevd-etc -o lowerdir=/etc,upperdir={d}/etc-upper,workdir={d}/etc-work /etc\n\
         mkdir -p /run/NetworkManager /var/lib/NetworkManager\n\
         export DBUS_SYSTEM_BUS_ADDRESS='{a}'\n\
         exec {NM_ROOT}/usr/sbin/NetworkManager --no-daemon --config={d}/NetworkManager.conf \
         --config-dir={d}/conf.d --system-config-dir={d}/empty \
         --intern-config=/var/lib/NetworkManager/intern.conf \
         --state-file=/var/lib/NetworkManager/NetworkManager.state \
         --pid-file=/run/NetworkManager/NetworkManager.pid\n",
        d = d.display(),
        a = bus.address
    );
    let s = Service::start(dir, "nm", Some(ns), &["-m", "-u"], &script);
    let end = Instant::now() + Duration::from_secs(20);
    while !bus.has("org.freedesktop.NetworkManager") {
        assert!(
            Instant::now() < end,
            "NetworkManager did not come up: {}",
            fs::read_to_string(&s.log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    s
}

fn records(dir: &Dir) -> Vec<Vec<String>> {
    fs::read_to_string(dir.join("nm-records"))
        .unwrap_or_default()
        .lines()
        .map(|l| l.split('|').map(str::to_string).collect())
        .collect()
}

fn wait(
    dir: &Dir,
    what: &str,
    secs: u64,
    pred: impl Fn(&[Vec<String>]) -> bool,
) -> Vec<Vec<String>> {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        let r = records(dir);
        if pred(&r) {
            return r;
        }
        assert!(
            Instant::now() < end,
            "timed out waiting for {what}: {r:?}\n{}",
            dir.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn network_manager_device_states_and_connection() {
    if skip_unless("/usr/bin/dbus-daemon", "dbus-daemon")
        || skip_unless("/usr/bin/busctl", "systemd")
        || skip_unless(
            &format!("{NM_ROOT}/usr/sbin/NetworkManager"),
            "network-manager, unpacked, not installed, with its libraries: apt-get install \
             libbluetooth3 libmm-glib0 libndp0 libnewt0.52 libnm0 libteamdctl0 && apt-get download \
             network-manager && dpkg-deb -x network-manager_*.deb /var/cache/netevd-tests/nm-root \
             (as .ci/run does)",
        )
    {
        return;
    }
    let ns = Ns::new();
    let peer = Ns::new();
    let dir = Dir::new();
    let bus = Bus::start(&dir);
    let _nm = nm(&dir, &ns, &bus);
    let rec = dir.join("nm-records");
    for s in [
        "unavailable",
        "disconnected",
        "prepare",
        "config",
        "ip-config",
        "ip-check",
        "activated",
        "deactivating",
        "unmanaged",
    ] {
        dir.write(
            &format!("hooks/{s}.d/50-nm"),
            &format!(
                "#!/bin/sh\nprintf '%s|%s|%s|%s|%s|%s|%s|%s|%s|%s\\n' \"$BACKEND\" \"$STATE\" \"$LINK\" \
                 \"$CONNECTION_ID\" \"$CONNECTION_UUID\" \"$IP4_ADDRESSES\" \"$IP4_GATEWAY\" \"$DNS\" \
                 \"$IP6_ADDRESSES\" \"$DEVICE_STATE_REASON\" >> {}\n",
                rec.display()
            ),
            0o755,
        );
    }
    // NetworkManager-dispatcher's scripts, run unchanged.
    let nmd = dir.join("nmd-records");
    dir.write(
        "dispatcher.d/50-record",
        &format!(
            "#!/bin/sh\nprintf '%s|%s|%s|%s|%s|%s|%s|%s\\n' \"$1\" \"$2\" \"$NM_DISPATCHER_ACTION\" \
             \"$CONNECTION_ID\" \"$IP4_ADDRESS_0\" \"$IP4_NUM_ADDRESSES\" \"$IP4_NAMESERVERS\" \
             \"$DEVICE_IFACE\" >> {}\n",
            nmd.display()
        ),
        0o755,
    );
    // auto picks NetworkManager: networkd is not on this bus.
    let config = format!(
        "backends:\n  networkmanager:\n    dispatcher_dir: {}\n",
        dir.join("dispatcher.d").display()
    );
    let _netevd = Netevd::start(&ns, &dir, &bus, &config);
    ns.ip(&[
        "link", "add", "nm0", "type", "veth", "peer", "name", "nm1", "netns", &peer.name,
    ]);
    peer.ip(&["link", "set", "nm1", "up"]);
    let r = wait(&dir, "activated.d for nm0", 30, |r| {
        r.iter()
            .any(|x| x[0] == "NetworkManager" && x[1] == "activated" && x[2] == "nm0")
    });
    let a = r.iter().find(|x| x[1] == "activated").unwrap();
    assert_eq!(a[3], "netevd nm0", "CONNECTION_ID: {a:?}");
    assert_eq!(a[4], UUID, "CONNECTION_UUID");
    assert_eq!(a[5], "192.0.2.20/24", "IP4_ADDRESSES");
    assert_eq!(a[6], "192.0.2.1", "IP4_GATEWAY");
    assert!(a[7].contains("192.0.2.53"), "DNS: {a:?}");
    assert!(a[8].contains("2001:db8:1::20/64"), "IP6_ADDRESSES: {a:?}");
    assert!(
        r.iter().any(|x| x[1] == "ip-config" && x[2] == "nm0"),
        "the states on the way run too: {r:?}"
    );
    let log = dir.log();
    assert!(log.contains("backend auto: NetworkManager"), "{log}");

    let out = Command::new(format!("{NM_ROOT}/usr/bin/nmcli"))
        .args(["device", "disconnect", "nm0"])
        .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "nmcli: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Reason 39: the user asked (40, carrier, came on the way up).
    let r = wait(&dir, "disconnected.d after nmcli disconnect", 20, |r| {
        r.iter()
            .any(|x| x[1] == "disconnected" && x[2] == "nm0" && x[9] == "39")
    });
    assert!(
        r.iter().any(|x| x[1] == "deactivating" && x[2] == "nm0"),
        "{r:?}"
    );
    // NetworkManager-dispatcher's view: up, then pre-down and down.
    let end = Instant::now() + Duration::from_secs(10);
    let lines = loop {
        let t = fs::read_to_string(&nmd).unwrap_or_default();
        if t.lines().any(|l| l.starts_with("nm0|down|")) || Instant::now() > end {
            break t;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let actions: Vec<&str> = lines
        .lines()
        .map(|l| l.split('|').nth(1).unwrap_or(""))
        .collect();
    assert_eq!(actions, ["up", "pre-down", "down"], "{lines}");
    assert_eq!(
        lines.lines().next().unwrap(),
        "nm0|up|up|netevd nm0|192.0.2.20/24 192.0.2.1|1|192.0.2.53|nm0",
        "{lines}"
    );
    let status = common::Ctl::connect(&dir).ok(r#"{"command":"status"}"#);
    assert_eq!(status["backend"], "NetworkManager", "{status}");
    let b = status["bus"].as_str().unwrap_or_default();
    assert!(
        b.starts_with("auto; up; systemd-networkd not running, NetworkManager :"),
        "{status}"
    );
}
