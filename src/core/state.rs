//! Operational state of a link, derived from kernel data alone with the
//! meanings of systemd-networkd's OperationalState.
//!
//! Pure functions: flags, RFC 2863 operstate and address counts in, a state
//! out.

use super::types::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OperState {
    /// Administratively down.
    Off,
    /// Up, but the lower layer has no carrier.
    NoCarrier,
    /// Carrier, but waiting for an external event (802.1X, ...).
    Dormant,
    /// Carrier, no usable address of link or global scope.
    Carrier,
    /// Carrier and only link-local (or site) addresses.
    Degraded,
    /// Carrier and at least one usable global address.
    Routable,
}

impl OperState {
    pub fn as_str(self) -> &'static str {
        match self {
            OperState::Off => "off",
            OperState::NoCarrier => "no-carrier",
            OperState::Dormant => "dormant",
            OperState::Carrier => "carrier",
            OperState::Degraded => "degraded",
            OperState::Routable => "routable",
        }
    }
}

/// The kernel's rule (Documentation/networking/operstates.rst): trust
/// `IF_OPER_UP`; a driver that does not implement operstate reports
/// UNKNOWN, and then LOWER_UP and RUNNING without DORMANT mean carrier.
pub fn has_carrier(flags: u32, operstate: u8) -> bool {
    match operstate {
        IF_OPER_UP => true,
        IF_OPER_UNKNOWN => {
            flags & (IFF_LOWER_UP | IFF_RUNNING) == (IFF_LOWER_UP | IFF_RUNNING)
                && flags & IFF_DORMANT == 0
        }
        _ => false,
    }
}

/// Which scope class an address counts in: `Some(true)` routable,
/// `Some(false)` degraded (link or site scope), `None` neither (host scope,
/// loopback's own addresses, or not usable yet).
pub fn address_class(a: &AddrInfo) -> Option<bool> {
    if !a.usable() {
        return None;
    }
    if a.scope < RT_SCOPE_SITE {
        Some(true)
    } else if a.scope < RT_SCOPE_HOST {
        Some(false)
    } else {
        None
    }
}

/// networkd's table, without the bond and bridge-port columns:
///
/// ```text
///                    off  no-carrier  dormant  carrier
///   no address       off  no-carrier  dormant  carrier
///   degraded         off  no-carrier  dormant  degraded
///   routable         off  no-carrier  dormant  routable
/// ```
pub fn derive(flags: u32, operstate: u8, n_routable: u32, n_degraded: u32) -> OperState {
    if operstate == IF_OPER_DORMANT {
        return OperState::Dormant;
    }
    if !has_carrier(flags, operstate) {
        return if flags & IFF_UP != 0 {
            OperState::NoCarrier
        } else {
            OperState::Off
        };
    }
    if n_routable > 0 {
        OperState::Routable
    } else if n_degraded > 0 {
        OperState::Degraded
    } else {
        OperState::Carrier
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    const LOWER: u32 = IFF_UP | IFF_RUNNING | IFF_LOWER_UP;

    #[test]
    fn table() {
        // (flags, operstate, routable, degraded) -> state
        let cases = [
            (0, 2, 0, 0, OperState::Off),
            (0, 2, 1, 1, OperState::Off),
            (IFF_UP, 2, 0, 0, OperState::NoCarrier),
            (IFF_UP, 7, 3, 0, OperState::NoCarrier), // LOWERLAYERDOWN
            (IFF_UP, IF_OPER_DORMANT, 1, 0, OperState::Dormant),
            (LOWER, IF_OPER_UP, 0, 0, OperState::Carrier),
            (LOWER, IF_OPER_UP, 0, 1, OperState::Degraded),
            (LOWER, IF_OPER_UP, 1, 1, OperState::Routable),
            // loopback: operstate UNKNOWN, flags decide
            (LOWER, IF_OPER_UNKNOWN, 0, 0, OperState::Carrier),
            (
                IFF_UP | IFF_LOWER_UP,
                IF_OPER_UNKNOWN,
                0,
                0,
                OperState::NoCarrier,
            ),
            (
                LOWER | IFF_DORMANT,
                IF_OPER_UNKNOWN,
                0,
                0,
                OperState::NoCarrier,
            ),
        ];
        for (flags, op, r, d, want) in cases {
            assert_eq!(derive(flags, op, r, d), want, "{flags:#x} {op} {r} {d}");
        }
    }

    #[test]
    fn address_classes() {
        let mut a = AddrInfo {
            index: 1,
            ip: "192.0.2.1".parse().unwrap(),
            prefix: 24,
            scope: RT_SCOPE_UNIVERSE,
            flags: 0,
            valid_lft: u32::MAX,
            preferred_lft: u32::MAX,
        };
        assert_eq!(address_class(&a), Some(true));
        a.flags = IFA_F_TENTATIVE;
        assert_eq!(address_class(&a), None);
        a.flags = 0;
        a.scope = RT_SCOPE_LINK;
        assert_eq!(address_class(&a), Some(false));
        a.scope = RT_SCOPE_HOST;
        assert_eq!(address_class(&a), None);
    }
}
