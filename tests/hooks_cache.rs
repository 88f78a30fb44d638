//! The hook directories' listing cache (src/effect/hookdirs.rs) against
//! the real daemon in its own namespace: after each change to `routes.d`
//! (a hook added, one made executable, one removed, one renamed, the
//! whole directory replaced, removed and made again) the very next route
//! event runs exactly the hooks that are there, as without a cache.

mod common;

use common::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

/// Adds a route whose destination no other event has, and returns the
/// hooks its event ran, in order, once `99-end` (always there, always
/// last) has run.
fn fire(ns: &Ns, d: &Dir, n: u32) -> Vec<String> {
    let dst = format!("198.51.100.{n}/32");
    ns.ip(&["route", "add", &dst, "via", "192.0.2.1"]);
    let r = d.wait_for(&format!("99-end for {dst}"), 10, |r| {
        r.iter().any(|x| x.route_dst == dst && x.hook == "99-end")
    });
    ran(&r, &dst)
}

fn ran(r: &[Record], dst: &str) -> Vec<String> {
    r.iter()
        .filter(|x| x.route_dst == dst && x.route_action == "add")
        .map(|x| x.hook.clone())
        .collect()
}

fn chmod(p: &std::path::Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn every_change_to_a_hook_directory_counts_at_the_next_event() {
    let (ns, d) = (Ns::new(), Dir::new());
    d.recorder("routes", "10-a");
    d.recorder("routes", "99-end");
    ns.ip(&["link", "add", "va", "type", "veth", "peer", "name", "vb"]);
    ns.ip(&["addr", "add", "192.0.2.10/24", "dev", "va"]);
    ns.ip(&["link", "set", "va", "up"]);
    ns.ip(&["link", "set", "vb", "up"]);
    let _n = Daemon::start(&ns, &d, "");
    let routes = d.join("hooks/routes.d");

    // Listed once, then answered from the cache, as the metrics count.
    let counter = |name: &str| -> u64 {
        let m = Ctl::connect(&d).ok(r#"{"command":"metrics"}"#);
        let text = m["text"].as_str().unwrap().to_string();
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
    };
    assert_eq!(fire(&ns, &d, 1), ["10-a", "99-end"]);
    // (Other directories may be listed meanwhile: a link-local address
    // finishing DAD is an event of its own.)
    assert!(counter("netevd_hook_dir_listed_total") >= 1);
    let cached = counter("netevd_hook_dir_cached_total");
    assert_eq!(fire(&ns, &d, 2), ["10-a", "99-end"]);
    assert!(counter("netevd_hook_dir_cached_total") > cached);

    // Added.
    d.recorder("routes", "20-b");
    assert_eq!(fire(&ns, &d, 3), ["10-a", "20-b", "99-end"]);

    // Not executable, then chmod +x (the directory's mtime stays).
    d.recorder("routes", "30-c");
    chmod(&routes.join("30-c"), 0o644);
    assert_eq!(fire(&ns, &d, 4), ["10-a", "20-b", "99-end"]);
    chmod(&routes.join("30-c"), 0o755);
    assert_eq!(fire(&ns, &d, 5), ["10-a", "20-b", "30-c", "99-end"]);
    // And chmod -x.
    chmod(&routes.join("10-a"), 0o644);
    assert_eq!(fire(&ns, &d, 6), ["20-b", "30-c", "99-end"]);
    chmod(&routes.join("10-a"), 0o755);

    // Removed.
    fs::remove_file(routes.join("10-a")).unwrap();
    assert_eq!(fire(&ns, &d, 7), ["20-b", "30-c", "99-end"]);

    // Renamed: within the directory, and to a name that is not a hook.
    // The recorder logs the name it was made with, so "b" stays.
    fs::rename(routes.join("20-b"), routes.join("40-b")).unwrap();
    fs::rename(routes.join("30-c"), routes.join("30-c.dpkg-old")).unwrap();
    assert_eq!(fire(&ns, &d, 8), ["20-b", "99-end"]);

    // The whole directory replaced by another one.
    d.recorder("routes.new", "50-x");
    d.recorder("routes.new", "99-end");
    fs::rename(&routes, d.join("hooks/routes.old")).unwrap();
    fs::rename(d.join("hooks/routes.new.d"), &routes).unwrap();
    assert_eq!(fire(&ns, &d, 9), ["50-x", "99-end"]);
    // The new directory is watched in turn.
    d.recorder("routes", "60-y");
    assert_eq!(fire(&ns, &d, 10), ["50-x", "60-y", "99-end"]);

    // Gone: the event runs nothing. Made again: the next one runs it.
    fs::remove_dir_all(&routes).unwrap();
    let none = format!("no hooks in {}", routes.display());
    let before = d.log().matches(&none).count();
    ns.ip(&["route", "add", "198.51.100.11/32", "via", "192.0.2.1"]);
    // The daemon logs (at debug) the event that found no hooks.
    let end = Instant::now() + Duration::from_secs(10);
    while d.log().matches(&none).count() == before {
        assert!(
            Instant::now() < end,
            "no event for 198.51.100.11:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    d.recorder("routes", "70-z");
    d.recorder("routes", "99-end");
    assert_eq!(fire(&ns, &d, 12), ["70-z", "99-end"]);
    assert!(ran(&d.records(), "198.51.100.11/32").is_empty());
}
