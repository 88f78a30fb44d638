//! The reactor's tokens: a fixed one for each singleton source and a fixed
//! range for each kind of many (hook output pipes, control clients), so a
//! token alone says which source is ready. `Source` is what the one
//! dispatch `match` in mod.rs switches on.

use mio::Token;

pub const NETLINK: Token = Token(0);
pub const SIGNALS: Token = Token(1);
pub const CONTROL: Token = Token(2);
/// The DBus connection (systemd-networkd, NetworkManager).
pub const DBUS: Token = Token(3);
/// The HTTP listener (feature `http`).
#[cfg_attr(not(feature = "http"), allow(dead_code))]
pub const HTTP: Token = Token(4);
/// The privileged hook spawner's socketpair (with `system.user`).
pub const SPAWNER: Token = Token(5);
/// The inotify descriptor of `system.watch_config`.
pub const CONFIG_WATCH: Token = Token(6);
/// The dhclient lease watcher's inotify descriptor: one for every
/// watched directory.
pub const LEASE: Token = Token(7);
/// The hook directories' inotify descriptor (`effect::hookdirs`).
pub const HOOK_DIRS: Token = Token(8);

/// Hook output pipes: one per run slot, `HOOKS..HOOKS + HOOKS_LEN`.
pub const HOOKS: usize = 1 << 10;
pub const HOOKS_LEN: usize = 1 << 16;
/// Control socket clients: `CLIENTS..HTTP_CLIENTS`.
pub const CLIENTS: usize = HOOKS + HOOKS_LEN;
/// HTTP clients: `HTTP_CLIENTS..`.
pub const HTTP_CLIENTS: usize = 1 << 24;

/// What a ready token belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Netlink,
    Signals,
    ControlListener,
    /// Replies from the hook spawner.
    Spawner,
    /// The configuration's directories changed (`system.watch_config`).
    ConfigWatch,
    Lease,
    /// A hook directory changed: its cached listing goes.
    HookDirs,
    /// The system bus connection.
    Dbus,
    /// A hook's output pipe, by token.
    Hook(Token),
    /// A control client, by slot.
    Client(usize),
    HttpListener,
    /// An HTTP client, by slot.
    HttpClient(usize),
    /// Closed since it was reported: ignored.
    Unknown,
}

/// Decodes a token by its range alone.
pub fn source(t: Token) -> Source {
    match t {
        NETLINK => Source::Netlink,
        SIGNALS => Source::Signals,
        CONTROL => Source::ControlListener,
        SPAWNER => Source::Spawner,
        CONFIG_WATCH => Source::ConfigWatch,
        LEASE => Source::Lease,
        HOOK_DIRS => Source::HookDirs,
        DBUS => Source::Dbus,
        Token(n) if (HOOKS..HOOKS + HOOKS_LEN).contains(&n) => Source::Hook(t),
        HTTP => Source::HttpListener,
        Token(n) if (CLIENTS..HTTP_CLIENTS).contains(&n) => Source::Client(n - CLIENTS),
        Token(n) if n >= HTTP_CLIENTS => Source::HttpClient(n - HTTP_CLIENTS),
        _ => Source::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_do_not_overlap() {
        assert_eq!(source(NETLINK), Source::Netlink);
        assert_eq!(source(CONTROL), Source::ControlListener);
        assert_eq!(source(CONFIG_WATCH), Source::ConfigWatch);
        assert_eq!(source(LEASE), Source::Lease);
        assert_eq!(source(HOOK_DIRS), Source::HookDirs);
        assert_eq!(source(Token(HOOKS)), Source::Hook(Token(HOOKS)));
        assert_eq!(
            source(Token(HOOKS + HOOKS_LEN - 1)),
            Source::Hook(Token(HOOKS + HOOKS_LEN - 1))
        );
        assert_eq!(source(Token(CLIENTS)), Source::Client(0));
        assert_eq!(source(Token(CLIENTS + 7)), Source::Client(7));
        assert_eq!(source(DBUS), Source::Dbus);
        assert_eq!(source(HTTP), Source::HttpListener);
        assert_eq!(
            source(Token(HTTP_CLIENTS - 1)),
            Source::Client(HTTP_CLIENTS - 1 - CLIENTS)
        );
        assert_eq!(source(Token(HTTP_CLIENTS + 3)), Source::HttpClient(3));
        assert_eq!(source(Token(HOOKS - 1)), Source::Unknown);
    }
}
