//! A hostile "networkd" on a private bus: it owns org.freedesktop.network1
//! and answers and signals what the real one never would: a state string
//! with `../` in it (networkd-dispatcher's CVE-2022-29799), a signal with
//! the wrong signature, object paths that do not exist, a link list whose
//! path does not match its index. netevd must log each, run no hook for
//! any of them, and go on serving the well-formed signal that follows.
#![cfg(feature = "dbus")]

mod common;
#[path = "common/peers.rs"]
mod peers;

use std::collections::HashMap;
use std::sync::mpsc;
use std::time::Duration;

use dbus::arg::{RefArg, Variant};
use dbus::channel::Channel;
use dbus::message::MessageType;
use dbus::Message;

use common::{Dir, Ns};
use peers::*;

type Props = HashMap<String, Variant<Box<dyn RefArg>>>;

fn props(kv: &[(&str, &str)]) -> Props {
    kv.iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                Variant(Box::new(v.to_string()) as Box<dyn RefArg>),
            )
        })
        .collect()
}

enum Cmd {
    Signal(Message),
    Stop,
}

/// The fake, on its own thread: owns the name, answers ListLinks and
/// GetAll, and sends what the test hands it.
fn fake_networkd(address: String, index: u32, rx: mpsc::Receiver<Cmd>, ready: mpsc::Sender<()>) {
    let mut c = Channel::open_private(&address).unwrap();
    c.register().unwrap();
    let m = Message::new_method_call(
        "org.freedesktop.DBus",
        "/org/freedesktop/DBus",
        "org.freedesktop.DBus",
        "RequestName",
    )
    .unwrap()
    .append2("org.freedesktop.network1", 4u32);
    c.send_with_reply_and_block(m, Duration::from_secs(5))
        .unwrap();
    ready.send(()).unwrap();
    let link = format!("/org/freedesktop/network1/link/_3{index}");
    loop {
        match rx.try_recv() {
            Ok(Cmd::Signal(s)) => {
                c.send(s).unwrap();
                c.flush();
            }
            Ok(Cmd::Stop) | Err(mpsc::TryRecvError::Disconnected) => return,
            Err(mpsc::TryRecvError::Empty) => {}
        }
        let _ = c.read_write(Some(Duration::from_millis(20)));
        while let Some(msg) = c.pop_message() {
            if msg.msg_type() != MessageType::MethodCall {
                continue;
            }
            let member = msg.member().map(|m| m.to_string()).unwrap_or_default();
            let path = msg.path().map(|p| p.to_string()).unwrap_or_default();
            let reply = match member.as_str() {
                "ListLinks" => msg.method_return().append1(vec![
                    (
                        index as i32,
                        "hv0".to_string(),
                        dbus::Path::from(link.clone()),
                    ),
                    // A path that is not this index's.
                    (
                        index as i32 + 50,
                        "hv9".to_string(),
                        dbus::Path::from("/org/freedesktop/network1/link/_37"),
                    ),
                ]),
                "GetAll" if path == "/org/freedesktop/network1" => msg
                    .method_return()
                    .append1(props(&[("OperationalState", "../../../tmp/pwn")])),
                "GetAll" if path == link => msg.method_return().append1(props(&[
                    ("OperationalState", "routable"),
                    ("AdministrativeState", "configured"),
                    ("CarrierState", "carrier"),
                ])),
                _ => msg.error(
                    &"org.freedesktop.DBus.Error.UnknownMethod".into(),
                    c"no such method",
                ),
            };
            c.send(reply).unwrap();
        }
    }
}

fn changed(path: &str, kv: &[(&str, &str)]) -> Message {
    Message::new_signal(path, "org.freedesktop.DBus.Properties", "PropertiesChanged")
        .unwrap()
        .append3(
            "org.freedesktop.network1.Link",
            props(kv),
            Vec::<String>::new(),
        )
}

#[test]
fn hostile_networkd_is_refused_and_the_daemon_goes_on() {
    if skip_unless("/usr/bin/dbus-daemon", "dbus-daemon")
        || skip_unless("/usr/bin/busctl", "systemd")
    {
        return;
    }
    let ns = Ns::new();
    let dir = Dir::new();
    let bus = Bus::start(&dir);
    ns.ip(&["link", "add", "hv0", "type", "veth", "peer", "name", "hv1"]);
    let o = ns.output(&["-o", "link", "show", "hv0"]);
    let index: u32 = o.split(':').next().unwrap().trim().parse().unwrap();

    let (tx, rx) = mpsc::channel();
    let (rtx, rrx) = mpsc::channel();
    let addr = bus.address.clone();
    let fake = std::thread::spawn(move || fake_networkd(addr, index, rx, rtx));
    rrx.recv_timeout(Duration::from_secs(10)).unwrap();

    bus_recorder(
        &dir,
        &["routable", "configured", "degraded", "manager", "off"],
    );
    // The trap: "../evil" as a state would make this directory.
    let marker = dir.join("trap-ran");
    dir.write(
        "evil.d/50-trap",
        &format!("#!/bin/sh\ntouch {}\n", marker.display()),
        0o755,
    );
    let _netevd = Netevd::start(&ns, &dir, &bus, "  backend: systemd-networkd\n");
    wait_records(&dir, "the start-up read of the fake", 10, |r| {
        r.iter()
            .any(|x| is(x, "systemd-networkd", "configured", "hv0"))
    });

    let link = format!("/org/freedesktop/network1/link/_3{index}");
    let send = |m: Message| tx.send(Cmd::Signal(m)).unwrap();
    send(changed(&link, &[("OperationalState", "../evil")]));
    // The wrong signature: (ss) instead of (sa{sv}as).
    send(
        Message::new_signal(
            link.as_str(),
            "org.freedesktop.DBus.Properties",
            "PropertiesChanged",
        )
        .unwrap()
        .append2("org.freedesktop.network1.Link", "degraded"),
    );
    // Paths that name no link.
    send(changed(
        "/org/freedesktop/network1/bogus",
        &[("OperationalState", "degraded")],
    ));
    send(changed(
        "/org/freedesktop/network1/link/_3999999",
        &[("OperationalState", "degraded")],
    ));
    // Then a good one: the daemon must still be listening.
    send(changed(&link, &[("OperationalState", "degraded")]));
    let r = wait_records(&dir, "degraded.d from the well-formed signal", 10, |r| {
        r.iter()
            .any(|x| is(x, "systemd-networkd", "degraded", "hv0"))
    });
    tx.send(Cmd::Stop).unwrap();
    fake.join().unwrap();

    assert!(!marker.exists(), "a state string became a path");
    assert_eq!(
        r.iter().filter(|x| x[1] == "degraded").count(),
        1,
        "only the good signal ran degraded.d: {r:?}"
    );
    assert!(
        !r.iter().any(|x| x[1] == "manager"),
        "the manager's bad state ran nothing: {r:?}"
    );
    let log = dir.log();
    for want in [
        "OperationalState \"../../../tmp/pwn\": not a known state",
        "OperationalState \"../evil\": not a known state",
        "with signature ss",
        "PropertiesChanged on /org/freedesktop/network1/bogus",
        "link 999999",
        "ListLinks: path /org/freedesktop/network1/link/_37",
    ] {
        assert!(log.contains(want), "log lacks {want:?}:\n{log}");
    }
}
