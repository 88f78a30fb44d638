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
/// Reserved for the HTTP listener.
#[allow(dead_code)]
pub const HTTP: Token = Token(4);

/// Hook output pipes: one per run slot, `HOOKS..HOOKS + HOOKS_LEN`.
pub const HOOKS: usize = 1 << 10;
pub const HOOKS_LEN: usize = 1 << 16;
/// Control socket clients: `CLIENTS..`.
pub const CLIENTS: usize = HOOKS + HOOKS_LEN;

/// What a ready token belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Netlink,
    Signals,
    ControlListener,
    /// The system bus connection.
    Dbus,
    /// A hook's output pipe, by token.
    Hook(Token),
    /// A control client, by slot.
    Client(usize),
    /// Closed since it was reported: ignored.
    Unknown,
}

/// Decodes a token by its range alone.
pub fn source(t: Token) -> Source {
    match t {
        NETLINK => Source::Netlink,
        SIGNALS => Source::Signals,
        CONTROL => Source::ControlListener,
        DBUS => Source::Dbus,
        Token(n) if (HOOKS..HOOKS + HOOKS_LEN).contains(&n) => Source::Hook(t),
        Token(n) if n >= CLIENTS => Source::Client(n - CLIENTS),
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
        assert_eq!(source(Token(HOOKS)), Source::Hook(Token(HOOKS)));
        assert_eq!(
            source(Token(HOOKS + HOOKS_LEN - 1)),
            Source::Hook(Token(HOOKS + HOOKS_LEN - 1))
        );
        assert_eq!(source(Token(CLIENTS)), Source::Client(0));
        assert_eq!(source(Token(CLIENTS + 7)), Source::Client(7));
        assert_eq!(source(DBUS), Source::Dbus);
        assert_eq!(source(HTTP), Source::Unknown);
        assert_eq!(source(Token(HOOKS - 1)), Source::Unknown);
    }
}
