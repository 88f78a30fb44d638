//! Event filters: which events run hooks, and which hook files. A filter
//! set is the `filters:` list of the configuration, checked in order; the
//! first filter that matches an event decides (execute, ignore or log),
//! and an event no filter matches runs its hooks as if there were none.
//! Each filter counts the events it decided (its hits), for `netevctl
//! filters` and the metrics.
//!
//! Also the condition language, shared by filters (`condition:`) and
//! subscribers (`subscribe` with `where`): terms such as `has_gateway`,
//! `mtu >= 1400` or `kind == "wireguard"` joined by `&&`, `||`, `!` and
//! parentheses. A condition is parsed once, at load or when a client
//! subscribes, into a small tree ([`Expr`]); an event is only ever
//! checked against that tree, never against text.
//!
//! Pure: no I/O, no clock. What an event does not carry (whether its link
//! has a gateway, how many DNS servers it has) comes through [`Lookup`],
//! asked only when a condition needs it.

use std::fmt;
use std::rc::Rc;

use netevd_ctl::EventFilter;

use super::event::{Event, Kind};
use super::glob;
use super::model::Core;

/// Longest condition accepted, in bytes: far beyond any real one.
pub const MAX_CONDITION: usize = 4096;

/// Deepest nesting of `!` and parentheses: the parser recurses once per
/// level, and a hostile `where` must not exhaust the stack.
pub const MAX_DEPTH: usize = 64;

/// What an `event_types` entry may name (see [`EventType`]): every hook
/// directory netevctl knows (`netevd_ctl::STATES`, the one list), then
/// `address`.
pub const EVENT_TYPES: [&str; netevd_ctl::STATES.len() + 1] = {
    let mut a = [""; netevd_ctl::STATES.len() + 1];
    let mut i = 0;
    while i < netevd_ctl::STATES.len() {
        a[i] = netevd_ctl::STATES[i];
        i += 1;
    }
    a[i] = "address";
    a
};

/// The hook directories among [`EVENT_TYPES`] (all but `address`, last).
const DIRS: usize = EVENT_TYPES.len() - 1;

/// The backends, as events name them (`BACKEND`).
pub const BACKENDS: [&str; 5] = [
    "kernel",
    "systemd-networkd",
    "NetworkManager",
    "dhclient",
    "control",
];

/// What the first matching filter does with an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Run the hooks (those in `scripts`, when given).
    Execute,
    /// Run no hooks for it.
    Ignore,
    /// Log that the filter matched, then run the hooks as `Execute` does.
    Log,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Execute => "execute",
            Action::Ignore => "ignore",
            Action::Log => "log",
        }
    }

    pub fn parse(s: &str) -> Option<Action> {
        match s {
            "execute" => Some(Action::Execute),
            "ignore" => Some(Action::Ignore),
            "log" => Some(Action::Log),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Ipv4,
    Ipv6,
    Any,
}

impl Family {
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Ipv4 => "ipv4",
            Family::Ipv6 => "ipv6",
            Family::Any => "any",
        }
    }

    pub fn parse(s: &str) -> Option<Family> {
        match s {
            "ipv4" => Some(Family::Ipv4),
            "ipv6" => Some(Family::Ipv6),
            "any" => Some(Family::Any),
            _ => None,
        }
    }
}

/// One entry of `event_types`: a hook directory (the event's `STATE`),
/// or `address`: a state event whose state did not change, so what did
/// is the link's usable addresses (or its name). Held as its index in
/// [`EVENT_TYPES`], so that an event is matched with a bit mask.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventType(u8);

/// The bit of `address` in an event's mask.
const ADDRESS_BIT: u32 = 1 << DIRS;

impl EventType {
    pub fn parse(s: &str) -> Option<EventType> {
        EVENT_TYPES
            .iter()
            .position(|t| *t == s)
            .map(|i| EventType(i as u8))
    }

    pub fn as_str(self) -> &'static str {
        EVENT_TYPES[self.0 as usize]
    }

    fn bit(self) -> u32 {
        1 << self.0
    }
}

/// A set of event types, as bits of [`EVENT_TYPES`]; empty means every
/// type. Listed in the order of [`EVENT_TYPES`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventTypes(u32);

impl EventTypes {
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = EventType> {
        (0..EVENT_TYPES.len() as u8)
            .map(EventType)
            .filter(move |t| self.0 & t.bit() != 0)
    }
}

impl FromIterator<EventType> for EventTypes {
    fn from_iter<I: IntoIterator<Item = EventType>>(it: I) -> Self {
        EventTypes(it.into_iter().fold(0, |m, t| m | t.bit()))
    }
}

/// The event types an event is of, as bits of [`EVENT_TYPES`]: its hook
/// directory's, and `address`'s when its state did not change. Made once
/// per event, not per filter.
fn event_mask(ev: &Event) -> u32 {
    let dir = ev.dir();
    let mut m = EVENT_TYPES[..DIRS]
        .iter()
        .position(|t| *t == dir)
        .map_or(0, |i| 1 << i);
    if ev.kind == Kind::State && ev.previous == Some(ev.state) {
        m |= ADDRESS_BIT;
    }
    m
}

/// What an event does not carry but a condition may ask.
pub trait Lookup {
    /// Whether the event's link has a gateway: a default route through it
    /// with a next hop, in any table.
    fn has_gateway(&self, ev: &Event) -> bool;
    /// DNS servers a backend reports for the event's link.
    fn dns_count(&self, ev: &Event) -> u64;
}

/// The kernel mirror answers for the kernel backend: it knows gateways
/// and no DNS servers (no kernel table holds them; networkd, NetworkManager
/// and dhclient report them).
impl Lookup for Core {
    fn has_gateway(&self, ev: &Event) -> bool {
        if let Some(rc) = &ev.route {
            if rc.added && rc.route.gateway.is_some() {
                return true;
            }
        }
        self.routes()
            .defaults()
            .any(|r| r.oif == ev.index && r.gateway.is_some())
    }

    fn dns_count(&self, _ev: &Event) -> u64 {
        0
    }
}

/// A condition's tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expr {
    Or(Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Flag(Flag),
    Num(NumField, Cmp, u64),
    Str(StrField, StrOp, Lit),
}

/// A string of a condition, with its first bytes as one word: most
/// comparisons are settled by comparing that word and the length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lit {
    pub bytes: Vec<u8>,
    head: u64,
}

impl Lit {
    pub fn new(bytes: Vec<u8>) -> Lit {
        Lit {
            head: head(&bytes),
            bytes,
        }
    }
}

/// The first 8 bytes of `b`, zero-padded, as one word.
fn head(b: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    let n = b.len().min(8);
    w[..n].copy_from_slice(&b[..n]);
    u64::from_le_bytes(w)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flag {
    HasGateway,
    HasAddress,
    HasIpv4,
    HasIpv6,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NumField {
    Mtu,
    DnsCount,
    AddressCount,
    Ifindex,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
/// The order is that of `Facts::strs`.
pub enum StrField {
    Interface,
    Kind,
    State,
    Operstate,
    PreviousState,
    Event,
    Backend,
    Family,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StrOp {
    Eq,
    Ne,
    /// A shell glob, as `interface_pattern`.
    Glob,
}

const FLAGS: [(&str, Flag); 4] = [
    ("has_gateway", Flag::HasGateway),
    ("has_address", Flag::HasAddress),
    ("has_ipv4", Flag::HasIpv4),
    ("has_ipv6", Flag::HasIpv6),
];

const NUMS: [(&str, NumField); 4] = [
    ("mtu", NumField::Mtu),
    ("dns_count", NumField::DnsCount),
    ("address_count", NumField::AddressCount),
    ("ifindex", NumField::Ifindex),
];

const STRS: [(&str, StrField); 9] = [
    ("interface", StrField::Interface),
    ("name", StrField::Interface),
    ("kind", StrField::Kind),
    ("state", StrField::State),
    ("operstate", StrField::Operstate),
    ("previous_state", StrField::PreviousState),
    ("event", StrField::Event),
    ("backend", StrField::Backend),
    ("family", StrField::Family),
];

/// The values a field compared with `==` or `!=` can have, so that a typo
/// (`state == "routabel"`) is an error rather than a filter that never
/// matches. None: any value.
fn known_values(f: StrField) -> Option<&'static [&'static str]> {
    const OPER: [&str; 6] = [
        "off",
        "no-carrier",
        "dormant",
        "carrier",
        "degraded",
        "routable",
    ];
    match f {
        StrField::State => Some(&EVENT_TYPES[..DIRS]),
        StrField::Operstate | StrField::PreviousState => Some(&OPER),
        StrField::Event => Some(&["startup", "state", "removed", "routes", "test"]),
        StrField::Backend => Some(&BACKENDS),
        StrField::Family => Some(&["ipv4", "ipv6"]),
        StrField::Interface | StrField::Kind => None,
    }
}

fn field_name(f: StrField) -> &'static str {
    STRS.iter().find(|(_, x)| *x == f).map_or("?", |(n, _)| n)
}

/// A condition that did not parse: what is wrong, and where (0-based, in
/// characters from the start of the condition).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub at: usize,
    pub msg: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "column {}: {}", self.at + 1, self.msg)
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    Num(u64),
    Str(Vec<u8>),
    And,
    Or,
    Not,
    Open,
    Close,
    Cmp(Cmp),
    Glob,
    End,
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Ident(s) => format!("{s:?}"),
        Tok::Num(n) => format!("the number {n}"),
        Tok::Str(s) => format!("the string {:?}", String::from_utf8_lossy(s)),
        Tok::And => "&&".into(),
        Tok::Or => "||".into(),
        Tok::Not => "!".into(),
        Tok::Open => "(".into(),
        Tok::Close => ")".into(),
        Tok::Cmp(c) => cmp_str(*c).into(),
        Tok::Glob => "~".into(),
        Tok::End => "the end".into(),
    }
}

fn cmp_str(c: Cmp) -> &'static str {
    match c {
        Cmp::Eq => "==",
        Cmp::Ne => "!=",
        Cmp::Lt => "<",
        Cmp::Le => "<=",
        Cmp::Gt => ">",
        Cmp::Ge => ">=",
    }
}

/// Splits a condition into tokens, each with its character position.
fn lex(text: &str) -> Result<Vec<(Tok, usize)>, ParseError> {
    let err = |at: usize, msg: String| ParseError { at, msg };
    let cs: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < cs.len() {
        let c = cs[i];
        let at = i;
        let next = cs.get(i + 1).copied();
        let two = |t: Tok| (t, 2);
        let (tok, len) = match (c, next) {
            (c, _) if c.is_whitespace() => {
                i += 1;
                continue;
            }
            ('&', Some('&')) => two(Tok::And),
            ('|', Some('|')) => two(Tok::Or),
            ('=', Some('=')) => two(Tok::Cmp(Cmp::Eq)),
            ('!', Some('=')) => two(Tok::Cmp(Cmp::Ne)),
            ('<', Some('=')) => two(Tok::Cmp(Cmp::Le)),
            ('>', Some('=')) => two(Tok::Cmp(Cmp::Ge)),
            ('<', _) => (Tok::Cmp(Cmp::Lt), 1),
            ('>', _) => (Tok::Cmp(Cmp::Gt), 1),
            ('!', _) => (Tok::Not, 1),
            ('(', _) => (Tok::Open, 1),
            (')', _) => (Tok::Close, 1),
            ('~', _) => (Tok::Glob, 1),
            ('&', _) => return Err(err(at, "a single &: write && for \"and\"".into())),
            ('|', _) => return Err(err(at, "a single |: write || for \"or\"".into())),
            ('=', _) => return Err(err(at, "a single =: write == to compare".into())),
            ('"', _) => {
                let mut s = String::new();
                let mut j = i + 1;
                loop {
                    match cs.get(j) {
                        None => return Err(err(at, "a string that is not closed (\")".into())),
                        Some('"') => break,
                        Some('\\') => match cs.get(j + 1) {
                            Some(&e @ ('"' | '\\')) => {
                                s.push(e);
                                j += 2;
                            }
                            _ => {
                                return Err(err(
                                    j,
                                    "in a string, \\ may only escape \" or \\".into(),
                                ))
                            }
                        },
                        Some(&ch) => {
                            s.push(ch);
                            j += 1;
                        }
                    }
                }
                (Tok::Str(s.into_bytes()), j + 1 - i)
            }
            (c, _) if c.is_ascii_digit() => {
                let mut j = i;
                while j < cs.len() && cs[j].is_ascii_alphanumeric() {
                    j += 1;
                }
                let word: String = cs[i..j].iter().collect();
                if !word.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(err(
                        at,
                        format!("{word:?} is not a number (plain decimal digits)"),
                    ));
                }
                let n = word
                    .parse::<u64>()
                    .map_err(|_| err(at, format!("{word} is too large")))?;
                (Tok::Num(n), j - i)
            }
            (c, _) if c.is_ascii_alphabetic() || c == '_' => {
                let mut j = i;
                while j < cs.len() && (cs[j].is_ascii_alphanumeric() || cs[j] == '_') {
                    j += 1;
                }
                (Tok::Ident(cs[i..j].iter().collect()), j - i)
            }
            (c, _) => return Err(err(at, format!("unexpected character {c:?}"))),
        };
        out.push((tok, at));
        i += len;
    }
    out.push((Tok::End, cs.len()));
    Ok(out)
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    pos: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> &(Tok, usize) {
        &self.toks[self.pos.min(self.toks.len() - 1)]
    }

    fn bump(&mut self) -> (Tok, usize) {
        let t = self.peek().clone();
        if self.pos < self.toks.len() - 1 {
            self.pos += 1;
        }
        t
    }

    fn or(&mut self) -> Result<Expr, ParseError> {
        let mut e = self.and()?;
        while self.peek().0 == Tok::Or {
            self.bump();
            e = Expr::Or(Box::new(e), Box::new(self.and()?));
        }
        Ok(e)
    }

    fn and(&mut self) -> Result<Expr, ParseError> {
        let mut e = self.unary()?;
        while self.peek().0 == Tok::And {
            self.bump();
            e = Expr::And(Box::new(e), Box::new(self.unary()?));
        }
        Ok(e)
    }

    fn deeper(&mut self, at: usize) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ParseError {
                at,
                msg: format!("nested deeper than {MAX_DEPTH} levels"),
            });
        }
        Ok(())
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        let (t, at) = self.bump();
        match t {
            Tok::Not => {
                self.deeper(at)?;
                let e = self.unary()?;
                self.depth -= 1;
                Ok(Expr::Not(Box::new(e)))
            }
            Tok::Open => {
                self.deeper(at)?;
                let e = self.or()?;
                self.depth -= 1;
                match self.bump() {
                    (Tok::Close, _) => Ok(e),
                    (t, at2) => Err(ParseError {
                        at: at2,
                        msg: format!(
                            "expected ) to close the ( at column {}, found {}",
                            at + 1,
                            describe(&t)
                        ),
                    }),
                }
            }
            Tok::Ident(name) => self.term(name, at),
            t => Err(ParseError {
                at,
                msg: format!(
                    "expected a term (such as has_gateway or mtu >= 1400), !, or (, found {}",
                    describe(&t)
                ),
            }),
        }
    }

    fn term(&mut self, name: String, at: usize) -> Result<Expr, ParseError> {
        let err = |at: usize, msg: String| ParseError { at, msg };
        if let Some((_, f)) = FLAGS.iter().find(|(n, _)| *n == name) {
            if let (Tok::Cmp(_) | Tok::Glob, at2) = self.peek() {
                return Err(err(
                    *at2,
                    format!(
                        "{name} is true or false: it is not compared (write !{name} for false)"
                    ),
                ));
            }
            return Ok(Expr::Flag(*f));
        }
        if let Some((_, f)) = NUMS.iter().find(|(n, _)| *n == name) {
            let (op, at2) = self.bump();
            let Tok::Cmp(c) = op else {
                return Err(err(
                    at2,
                    format!(
                        "expected a comparison (==, !=, <, <=, >, >=) after {name}, found {}",
                        describe(&op)
                    ),
                ));
            };
            return match self.bump() {
                (Tok::Num(n), _) => Ok(Expr::Num(*f, c, n)),
                (t, at3) => Err(err(
                    at3,
                    format!("{name} is compared with a number, not {}", describe(&t)),
                )),
            };
        }
        if let Some((_, f)) = STRS.iter().find(|(n, _)| *n == name) {
            let (op, at2) = self.bump();
            let op = match op {
                Tok::Cmp(Cmp::Eq) => StrOp::Eq,
                Tok::Cmp(Cmp::Ne) => StrOp::Ne,
                Tok::Glob => StrOp::Glob,
                t => {
                    return Err(err(
                        at2,
                        format!(
                            "expected ==, != or ~ (a glob) after {name}, found {}",
                            describe(&t)
                        ),
                    ))
                }
            };
            let (v, at3) = self.bump();
            let Tok::Str(s) = v else {
                let hint = match &v {
                    Tok::Ident(w) => format!(" (quote it: \"{w}\")"),
                    _ => String::new(),
                };
                return Err(err(
                    at3,
                    format!(
                        "{name} is compared with a string in double quotes, not {}{hint}",
                        describe(&v)
                    ),
                ));
            };
            if op != StrOp::Glob {
                if let Some(known) = known_values(*f) {
                    if !known.iter().any(|k| k.as_bytes() == s.as_slice()) {
                        return Err(err(
                            at3,
                            format!(
                                "{name} is never {:?}: it is one of {}",
                                String::from_utf8_lossy(&s),
                                known.join(", ")
                            ),
                        ));
                    }
                }
            }
            return Ok(Expr::Str(*f, op, Lit::new(s)));
        }
        let all: Vec<&str> = FLAGS
            .iter()
            .map(|x| x.0)
            .chain(NUMS.iter().map(|x| x.0))
            .chain(STRS.iter().map(|x| x.0))
            .collect();
        let hint = match name.as_str() {
            "and" => " (write &&)".to_string(),
            "or" => " (write ||)".to_string(),
            "not" => " (write !)".to_string(),
            _ => String::new(),
        };
        Err(err(
            at,
            format!("unknown term {name:?}{hint}; known: {}", all.join(", ")),
        ))
    }
}

/// Parses a condition into its tree.
pub fn parse(text: &str) -> Result<Expr, ParseError> {
    if text.len() > MAX_CONDITION {
        return Err(ParseError {
            at: 0,
            msg: format!("longer than {MAX_CONDITION} bytes"),
        });
    }
    let toks = lex(text)?;
    if toks.len() == 1 {
        return Err(ParseError {
            at: 0,
            msg: "an empty condition".into(),
        });
    }
    let mut p = Parser {
        toks,
        pos: 0,
        depth: 0,
    };
    let e = p.or()?;
    match p.peek() {
        (Tok::End, _) => Ok(e),
        (t, at) => Err(ParseError {
            at: *at,
            msg: format!(
                "expected && or || or the end, found {}{}",
                describe(t),
                if *t == Tok::Close {
                    " (no ( to close)"
                } else {
                    ""
                }
            ),
        }),
    }
}

fn family_str(ev: &Event) -> &'static str {
    match &ev.route {
        Some(rc) if rc.route.family == 10 => "ipv6",
        Some(_) => "ipv4",
        None => "",
    }
}

/// An event as conditions read it, made once per event so that a term is
/// a load and a compare, whatever the number of filters. What only
/// [`Lookup`] knows is asked when a term needs it.
pub struct Facts<'e> {
    ev: &'e Event,
    look: &'e dyn Lookup,
    /// [`event_mask`].
    mask: u32,
    /// By `StrField as usize`.
    strs: [&'e [u8]; 8],
    /// The first bytes of each of `strs` (see [`Lit`]).
    heads: [u64; 8],
}

impl<'e> Facts<'e> {
    pub fn new(ev: &'e Event, look: &'e dyn Lookup) -> Facts<'e> {
        let s = |x: &'static str| x.as_bytes();
        let strs = [
            &ev.name,
            ev.link_kind.as_deref().unwrap_or("").as_bytes(),
            s(ev.dir()),
            s(ev.state.as_str()),
            s(ev.previous.map_or("", |p| p.as_str())),
            s(ev.kind.as_str()),
            s(ev.origin.as_str()),
            s(family_str(ev)),
        ];
        Facts {
            ev,
            look,
            mask: event_mask(ev),
            heads: strs.map(head),
            strs,
        }
    }
}

impl Expr {
    /// Whether `ev` satisfies the condition.
    #[cfg(test)]
    pub fn eval(&self, ev: &Event, look: &dyn Lookup) -> bool {
        self.holds(&Facts::new(ev, look))
    }

    /// Whether the event of `f` satisfies the condition.
    pub fn holds(&self, f: &Facts) -> bool {
        match self {
            Expr::Or(a, b) => a.value(f) || b.value(f),
            Expr::And(a, b) => a.value(f) && b.value(f),
            Expr::Not(a) => !a.value(f),
            term => term.term(f),
        }
    }

    /// [`Expr::holds`], with a term's test inlined: most operands are
    /// terms, and a call per term is most of the cost of a condition.
    #[inline(always)]
    fn value(&self, f: &Facts) -> bool {
        match self {
            Expr::Or(..) | Expr::And(..) | Expr::Not(..) => self.holds(f),
            term => term.term(f),
        }
    }

    /// The value of a term (`Flag`, `Num`, `Str`).
    #[inline(always)]
    fn term(&self, f: &Facts) -> bool {
        let ev = f.ev;
        match self {
            Expr::Or(..) | Expr::And(..) | Expr::Not(..) => self.holds(f),
            Expr::Flag(x) => match x {
                Flag::HasGateway => f.look.has_gateway(ev),
                Flag::HasAddress => !ev.addrs.is_empty(),
                Flag::HasIpv4 => ev.addrs.iter().any(|a| a.ip.is_ipv4()),
                Flag::HasIpv6 => ev.addrs.iter().any(|a| a.ip.is_ipv6()),
            },
            Expr::Num(x, c, n) => {
                let v = match x {
                    NumField::Mtu => ev.mtu as u64,
                    NumField::DnsCount => f.look.dns_count(ev),
                    NumField::AddressCount => ev.addrs.len() as u64,
                    NumField::Ifindex => ev.index as u64,
                };
                match c {
                    Cmp::Eq => v == *n,
                    Cmp::Ne => v != *n,
                    Cmp::Lt => v < *n,
                    Cmp::Le => v <= *n,
                    Cmp::Gt => v > *n,
                    Cmp::Ge => v >= *n,
                }
            }
            Expr::Str(x, StrOp::Glob, s) => glob::matches(&s.bytes, f.strs[*x as usize]),
            Expr::Str(x, op, s) => {
                let (v, h) = (f.strs[*x as usize], f.heads[*x as usize]);
                // The word settles all but strings longer than 8 bytes.
                let eq = h == s.head && v.len() == s.bytes.len() && (v.len() <= 8 || v == s.bytes);
                eq == (*op == StrOp::Eq)
            }
        }
    }
}

/// Writes the tree back as text, fully parenthesised where precedence
/// would otherwise matter; it parses back to the same tree.
impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        fn quoted(f: &mut fmt::Formatter, s: &[u8]) -> fmt::Result {
            f.write_str("\"")?;
            for c in String::from_utf8_lossy(s).chars() {
                if c == '"' || c == '\\' {
                    f.write_str("\\")?;
                }
                write!(f, "{c}")?;
            }
            f.write_str("\"")
        }
        match self {
            Expr::Or(a, b) => write!(f, "({a} || {b})"),
            Expr::And(a, b) => write!(f, "({a} && {b})"),
            Expr::Not(a) => write!(f, "!{a}"),
            Expr::Flag(x) => {
                let n = FLAGS.iter().find(|(_, y)| y == x).map_or("?", |p| p.0);
                f.write_str(n)
            }
            Expr::Num(x, c, n) => {
                let name = NUMS.iter().find(|(_, y)| y == x).map_or("?", |p| p.0);
                write!(f, "{name} {} {n}", cmp_str(*c))
            }
            Expr::Str(x, op, s) => {
                let op = match op {
                    StrOp::Eq => "==",
                    StrOp::Ne => "!=",
                    StrOp::Glob => "~",
                };
                write!(f, "{} {op} ", field_name(*x))?;
                quoted(f, &s.bytes)
            }
        }
    }
}

/// A condition: its text as written, for listings, and its tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    pub text: String,
    pub expr: Expr,
}

impl Condition {
    pub fn parse(text: &str) -> Result<Condition, ParseError> {
        Ok(Condition {
            text: text.to_string(),
            expr: parse(text)?,
        })
    }

    pub fn holds(&self, f: &Facts) -> bool {
        self.expr.holds(f)
    }
}

/// Which field of a filter an event missed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Miss {
    Interface,
    Pattern,
    EventTypes,
    Backend,
    Family,
    Condition,
}

/// One entry of `filters:`. Every field given narrows what it matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter {
    pub name: String,
    pub interface: Option<Vec<u8>>,
    pub interface_pattern: Option<Vec<u8>>,
    /// Empty: every type.
    pub event_types: EventTypes,
    pub backend: Option<String>,
    pub ip_family: Option<Family>,
    pub condition: Option<Condition>,
    pub action: Action,
    /// The hook files (names in the hook directory) that may run; None
    /// for all of them.
    pub scripts: Option<Rc<[String]>>,
}

impl Filter {
    /// A filter that matches everything and executes; the fields are set
    /// by the caller.
    pub fn new(name: impl Into<String>) -> Filter {
        Filter {
            name: name.into(),
            interface: None,
            interface_pattern: None,
            event_types: EventTypes::default(),
            backend: None,
            ip_family: None,
            condition: None,
            action: Action::Execute,
            scripts: None,
        }
    }

    /// The link has an address of the family (or, for a route event, the
    /// route is of it), as the existing netevd's `ip_family`.
    fn family_ok(f: Family, ev: &Event) -> bool {
        let v6 = match (f, &ev.route) {
            (Family::Any, _) => return true,
            (_, Some(rc)) => return (rc.route.family == 10) == (f == Family::Ipv6),
            (Family::Ipv6, None) => true,
            (Family::Ipv4, None) => false,
        };
        ev.addrs.iter().any(|a| a.ip.is_ipv6() == v6)
    }

    /// Whether the filter matches `ev`; the cheap fields are checked
    /// before the condition. Allocates nothing: it runs for every filter
    /// and every event.
    #[cfg(test)]
    pub fn matches(&self, ev: &Event, look: &dyn Lookup) -> bool {
        self.first_miss(&Facts::new(ev, look)).is_none()
    }

    /// The first field that does not match; None when the filter matches.
    fn first_miss(&self, f: &Facts) -> Option<Miss> {
        let ev = f.ev;
        if !self.event_types.is_empty() && self.event_types.0 & f.mask == 0 {
            return Some(Miss::EventTypes);
        }
        if self.interface.as_ref().is_some_and(|i| *i != ev.name) {
            return Some(Miss::Interface);
        }
        if let Some(p) = &self.interface_pattern {
            if !glob::matches(p, &ev.name) {
                return Some(Miss::Pattern);
            }
        }
        if self
            .backend
            .as_ref()
            .is_some_and(|b| b != ev.origin.as_str())
        {
            return Some(Miss::Backend);
        }
        if let Some(f) = self.ip_family {
            if !Filter::family_ok(f, ev) {
                return Some(Miss::Family);
            }
        }
        if let Some(c) = &self.condition {
            if !c.holds(f) {
                return Some(Miss::Condition);
            }
        }
        None
    }

    /// A miss in words, for `test --dry-run`.
    fn miss_text(&self, miss: Miss, ev: &Event) -> String {
        let lossy = |b: &Option<Vec<u8>>| {
            String::from_utf8_lossy(b.as_deref().unwrap_or_default()).into_owned()
        };
        let name = String::from_utf8_lossy(&ev.name);
        match miss {
            Miss::Interface => format!("interface {:?} is not {name:?}", lossy(&self.interface)),
            Miss::Pattern => format!(
                "interface_pattern {:?} does not match {name:?}",
                lossy(&self.interface_pattern)
            ),
            Miss::EventTypes => format!(
                "event_types [{}] do not hold {}{}",
                self.types_str(),
                ev.dir(),
                if ev.kind == Kind::State && ev.previous == Some(ev.state) {
                    " (nor address)"
                } else {
                    ""
                }
            ),
            Miss::Backend => format!(
                "backend {} is not the event's, {}",
                self.backend.as_deref().unwrap_or_default(),
                ev.origin.as_str()
            ),
            Miss::Family => {
                let f = self.ip_family.map_or("", Family::as_str);
                match &ev.route {
                    Some(_) => format!("ip_family {f} is not the route's"),
                    None => format!("ip_family {f}: the link has no such address"),
                }
            }
            Miss::Condition => format!(
                "condition {:?} is false",
                self.condition.as_ref().map_or("", |c| c.text.as_str())
            ),
        }
    }

    fn types_str(&self) -> String {
        self.event_types
            .iter()
            .map(|t| t.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Why the filter matches `ev`, one phrase per field it has: for
    /// `test --dry-run`. Err with the first field that does not match.
    pub fn explain(&self, ev: &Event, look: &dyn Lookup) -> Result<Vec<String>, String> {
        let facts = Facts::new(ev, look);
        let mask = facts.mask;
        if let Some(miss) = self.first_miss(&facts) {
            return Err(self.miss_text(miss, ev));
        }
        let mut why = Vec::new();
        let name = String::from_utf8_lossy(&ev.name);
        if let Some(i) = &self.interface {
            why.push(format!("interface is {:?}", String::from_utf8_lossy(i)));
        }
        if let Some(p) = &self.interface_pattern {
            why.push(format!(
                "interface_pattern {:?} matches {name:?}",
                String::from_utf8_lossy(p)
            ));
        }
        if !self.event_types.is_empty() {
            let hit = self
                .event_types
                .iter()
                .find(|t| t.bit() & mask != 0)
                .map_or("", |t| t.as_str());
            why.push(format!("event_types [{}] hold {hit}", self.types_str()));
        }
        if let Some(b) = &self.backend {
            why.push(format!("backend is {b}"));
        }
        if let Some(f) = self.ip_family {
            why.push(format!("ip_family {} matches", f.as_str()));
        }
        if let Some(c) = &self.condition {
            why.push(format!("condition {:?} is true", c.text));
        }
        if why.is_empty() {
            why.push("the filter matches every event".into());
        }
        Ok(why)
    }
}

/// The configured filters, in order, with their hit counts.
#[derive(Debug, Default)]
pub struct FilterSet {
    filters: Vec<Filter>,
    hits: Vec<u64>,
    /// Events no filter matched (they ran their hooks).
    pub unmatched: u64,
}

impl FilterSet {
    pub fn new(filters: Vec<Filter>) -> FilterSet {
        let hits = vec![0; filters.len()];
        FilterSet {
            filters,
            hits,
            unmatched: 0,
        }
    }

    /// New filters (on reload): a filter whose name stays keeps its count,
    /// so that a counter never goes back for a filter that is still there.
    pub fn replace(&mut self, filters: Vec<Filter>) {
        let hits = filters
            .iter()
            .map(|f| {
                self.filters
                    .iter()
                    .position(|o| o.name == f.name)
                    .map_or(0, |i| self.hits[i])
            })
            .collect();
        self.filters = filters;
        self.hits = hits;
    }

    /// The filter that decides `ev`, counted as a hit; None when none
    /// matches (the hooks run).
    pub fn decide(&mut self, ev: &Event, look: &dyn Lookup) -> Option<&Filter> {
        if self.filters.is_empty() {
            self.unmatched += 1;
            return None;
        }
        let facts = Facts::new(ev, look);
        match self
            .filters
            .iter()
            .position(|f| f.first_miss(&facts).is_none())
        {
            Some(i) => {
                self.hits[i] += 1;
                Some(&self.filters[i])
            }
            None => {
                self.unmatched += 1;
                None
            }
        }
    }

    /// Each filter with its hit count, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&Filter, u64)> {
        self.filters.iter().zip(self.hits.iter().copied())
    }
}

/// A control client's subscription: the protocol's fields and its
/// `where` condition, parsed when it subscribed.
#[derive(Clone, Debug)]
pub struct Subscription {
    pub filter: EventFilter,
    pub cond: Option<Condition>,
}

impl Subscription {
    /// Parses the `where` condition of `filter`; the error says where it
    /// is wrong, for a `bad_request` reply.
    pub fn new(filter: EventFilter) -> Result<Subscription, String> {
        let cond = match &filter.condition {
            Some(w) => Some(Condition::parse(w).map_err(|e| format!("where: {e}"))?),
            None => None,
        };
        Ok(Subscription { filter, cond })
    }

    pub fn matches(&self, ev: &Event, look: &dyn Lookup) -> bool {
        self.filter.matches(
            &String::from_utf8_lossy(&ev.name),
            ev.index,
            ev.kind.as_str(),
            ev.dir(),
        ) && self
            .cond
            .as_ref()
            .map_or(true, |c| c.holds(&Facts::new(ev, look)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The directories filters know are the ones netevd runs.
    #[test]
    fn event_types_are_the_states_and_address() {
        assert_eq!(EVENT_TYPES[DIRS], "address");
        assert!(EVENT_TYPES.len() <= 32, "the mask is a u32");
        let t = EventType::parse("degraded-carrier").unwrap();
        assert_eq!(t.as_str(), "degraded-carrier");
        assert!(EventType::parse("address").unwrap().bit() == ADDRESS_BIT);
    }
    use crate::core::event::{Origin, RouteChange};
    use crate::core::state::OperState::{self, *};
    use crate::core::types::{AddrInfo, RouteInfo};

    struct Fixed {
        gateway: bool,
        dns: u64,
    }

    impl Lookup for Fixed {
        fn has_gateway(&self, _: &Event) -> bool {
            self.gateway
        }
        fn dns_count(&self, _: &Event) -> u64 {
            self.dns
        }
    }

    const NONE: Fixed = Fixed {
        gateway: false,
        dns: 0,
    };
    const GW: Fixed = Fixed {
        gateway: true,
        dns: 2,
    };

    fn ev(name: &str, state: OperState, prev: Option<OperState>, addrs: &[&str]) -> Event {
        let mut e = Event::new(
            1,
            0,
            Kind::State,
            Origin::Kernel,
            7,
            name.into(),
            state,
            prev,
        );
        e.mtu = 1420;
        e.link_kind = Some("wireguard".into());
        e.addrs = addrs
            .iter()
            .map(|a| AddrInfo {
                index: 7,
                ip: a.parse().unwrap(),
                prefix: 24,
                scope: 0,
                flags: 0,
                valid_lft: u32::MAX,
                preferred_lft: u32::MAX,
            })
            .collect();
        e
    }

    fn route(name: &str, family: u8) -> Event {
        let mut e = ev(name, Routable, Some(Routable), &["10.0.0.1"]);
        e.kind = Kind::Routes;
        e.route = Some(RouteChange {
            added: true,
            route: RouteInfo::table_start(family, 254),
        });
        e
    }

    fn yes(cond: &str, e: &Event, look: &Fixed) -> bool {
        let x = parse(cond).unwrap_or_else(|err| panic!("{cond}: {err}"));
        // The tree written back parses to the same tree.
        assert_eq!(parse(&x.to_string()).unwrap(), x, "{cond} -> {x}");
        x.eval(e, look)
    }

    #[test]
    fn every_term_and_operator() {
        let wg = ev("wg0", Routable, Some(Carrier), &["10.0.0.2", "fd00::2"]);
        let cases: [(&str, &Fixed, bool); 34] = [
            ("has_gateway", &GW, true),
            ("has_gateway", &NONE, false),
            ("!has_gateway", &NONE, true),
            ("has_address", &NONE, true),
            ("has_ipv4 && has_ipv6", &NONE, true),
            ("dns_count >= 2", &GW, true),
            ("dns_count > 2", &GW, false),
            ("dns_count < 1", &NONE, true),
            ("dns_count <= 0", &NONE, true),
            ("mtu == 1420", &NONE, true),
            ("mtu != 1420", &NONE, false),
            ("mtu>=1400&&mtu<1500", &NONE, true),
            ("address_count == 2", &NONE, true),
            ("ifindex == 7", &NONE, true),
            ("kind == \"wireguard\"", &NONE, true),
            ("kind != \"wireguard\"", &NONE, false),
            ("interface == \"wg0\"", &NONE, true),
            ("name ~ \"wg*\"", &NONE, true),
            ("interface ~ \"veth*\"", &NONE, false),
            ("state == \"routable\"", &NONE, true),
            ("operstate == \"routable\"", &NONE, true),
            ("previous_state == \"carrier\"", &NONE, true),
            ("event == \"state\"", &NONE, true),
            ("backend == \"kernel\"", &NONE, true),
            ("family == \"ipv4\"", &NONE, false),
            ("has_gateway || mtu == 1420", &NONE, true),
            ("has_gateway || mtu == 1", &NONE, false),
            ("!(has_gateway || mtu == 1)", &NONE, true),
            ("!!has_address", &NONE, true),
            // && binds tighter than ||: true || (false && false)
            ("has_address || has_gateway && mtu == 1", &NONE, true),
            // (true || false) && false
            ("(has_address || has_gateway) && mtu == 1", &NONE, false),
            // ! binds tighter than &&
            ("!has_gateway && has_address", &NONE, true),
            ("!(has_gateway && has_address)", &NONE, true),
            (
                "  ( ( kind == \"wire\\\\guard\" ) ) ||\tmtu>9000",
                &NONE,
                false,
            ),
        ];
        for (c, look, want) in cases {
            assert_eq!(yes(c, &wg, look), want, "{c}");
        }
        let r6 = route("wg0", 10);
        assert!(yes("family == \"ipv6\" && event == \"routes\"", &r6, &NONE));
        assert!(yes("state == \"routes\"", &r6, &NONE));
        let quoted = ev("a\"b\\c", Off, None, &[]);
        assert!(yes("interface == \"a\\\"b\\\\c\"", &quoted, &NONE));
        assert!(yes(
            "previous_state != \"off\" && kind ~ \"*\"",
            &quoted,
            &NONE
        ));
    }

    #[test]
    fn precedence_shapes_the_tree() {
        use Expr::*;
        let a = || Box::new(Flag(super::Flag::HasAddress));
        let g = || Box::new(Flag(super::Flag::HasGateway));
        let v4 = || Box::new(Flag(super::Flag::HasIpv4));
        assert_eq!(
            parse("has_address || has_gateway && has_ipv4").unwrap(),
            Or(a(), Box::new(And(g(), v4())))
        );
        assert_eq!(
            parse("has_address && has_gateway || has_ipv4").unwrap(),
            Or(Box::new(And(a(), g())), v4())
        );
        assert_eq!(
            parse("!has_address && has_gateway").unwrap(),
            And(Box::new(Not(a())), g())
        );
        // left-associative
        assert_eq!(
            parse("has_address || has_gateway || has_ipv4").unwrap(),
            Or(Box::new(Or(a(), g())), v4())
        );
    }

    #[test]
    fn parse_errors_say_where() {
        let cases = [
            ("", 0, "an empty condition"),
            ("   ", 0, "an empty condition"),
            ("has_gatewy", 0, "unknown term \"has_gatewy\""),
            (
                "has_gateway and mtu > 1",
                12,
                "expected && or || or the end",
            ),
            ("and", 0, "(write &&)"),
            ("mtu >= ", 7, "mtu is compared with a number, not the end"),
            ("mtu => 5", 4, "a single =: write =="),
            ("mtu = 5", 4, "a single =: write == to compare"),
            ("mtu ~ \"1*\"", 4, "expected a comparison"),
            ("mtu >= \"5\"", 7, "compared with a number"),
            ("mtu >= 5x", 7, "\"5x\" is not a number"),
            ("mtu >= 99999999999999999999999", 7, "too large"),
            ("kind == wireguard", 8, "(quote it: \"wireguard\")"),
            ("kind == \"wireguard", 8, "not closed"),
            ("kind == \"a\\nb\"", 10, "may only escape"),
            ("kind < \"a\"", 5, "expected ==, != or ~"),
            (
                "state == \"routabel\"",
                9,
                "state is never \"routabel\": it is one of off",
            ),
            ("backend == \"networkd\"", 11, "backend is never"),
            ("has_gateway == 1", 12, "not compared"),
            ("has_gateway & has_address", 12, "a single &"),
            ("has_gateway | has_address", 12, "a single |"),
            (
                "(has_gateway",
                12,
                "expected ) to close the ( at column 1, found the end",
            ),
            ("has_gateway)", 11, "(no ( to close)"),
            ("has_gateway &&", 14, "expected a term"),
            ("|| has_gateway", 0, "expected a term"),
            ("()", 1, "expected a term"),
            ("mtu > 1 # x", 8, "unexpected character '#'"),
            ("ä", 0, "unexpected character 'ä'"),
            ("mtü > 1", 2, "unexpected character 'ü'"),
        ];
        for (text, at, want) in cases {
            let e = parse(text).unwrap_err();
            assert!(e.msg.contains(want), "{text:?}: got {e}, want {want:?}");
            assert_eq!(e.at, at, "{text:?}: {e}");
        }
        let deep = format!("{}has_gateway{}", "(".repeat(100), ")".repeat(100));
        assert!(parse(&deep).unwrap_err().msg.contains("deeper than 64"));
        let nots = format!("{}has_gateway", "!".repeat(100_000));
        assert!(parse(&nots).unwrap_err().msg.contains("longer than"));
        let nots = format!("{}has_gateway", "!".repeat(65));
        assert_eq!(parse(&nots).unwrap_err().at, 64);
        parse(&format!("{}has_gateway", "!".repeat(64))).unwrap();
    }

    fn filter(name: &str) -> Filter {
        Filter::new(name)
    }

    fn ty(s: &str) -> EventType {
        EventType::parse(s).unwrap()
    }

    #[test]
    fn fields_narrow_and_first_match_wins() {
        let veth = ev("veth3", Carrier, None, &[]);
        let wg = ev("wg0", Routable, Some(Carrier), &["fd00::1"]);
        let mut ignore = filter("no-veth");
        ignore.interface_pattern = Some(b"veth*".to_vec());
        ignore.action = Action::Ignore;
        let mut vpn = filter("vpn");
        vpn.condition = Some(Condition::parse("kind == \"wireguard\"").unwrap());
        vpn.event_types = [ty("routable")].into_iter().collect();
        vpn.ip_family = Some(Family::Ipv6);
        vpn.scripts = Some(vec!["01-up".to_string()].into());
        let mut all = filter("log-rest");
        all.action = Action::Log;
        let mut set = FilterSet::new(vec![ignore, vpn, all]);
        assert_eq!(set.decide(&veth, &NONE).unwrap().name, "no-veth");
        assert_eq!(set.decide(&wg, &NONE).unwrap().name, "vpn");
        // carrier is not in vpn's event_types; log-rest takes it
        let wg_carrier = ev("wg0", Carrier, None, &["fd00::1"]);
        assert_eq!(set.decide(&wg_carrier, &NONE).unwrap().name, "log-rest");
        let hits: Vec<u64> = set.iter().map(|(_, h)| h).collect();
        assert_eq!(hits, vec![1, 1, 1]);
        assert_eq!(set.unmatched, 0);

        // reload: kept names keep their counts
        let mut only = filter("vpn");
        only.interface = Some(b"wg1".to_vec());
        set.replace(vec![filter("new"), only]);
        let hits: Vec<(String, u64)> = set.iter().map(|(f, h)| (f.name.clone(), h)).collect();
        assert_eq!(hits, vec![("new".into(), 0), ("vpn".into(), 1)]);
        set.replace(vec![]);
        assert!(set.decide(&wg, &NONE).is_none());
        assert_eq!(set.unmatched, 1);
    }

    #[test]
    fn each_field() {
        let look = &NONE;
        let wg = ev("wg0", Routable, Some(Routable), &["10.0.0.1"]);
        let check = |f: &Filter, e: &Event| f.matches(e, look);
        let mut f = filter("x");
        f.interface = Some(b"wg0".to_vec());
        assert!(check(&f, &wg));
        f.interface = Some(b"wg1".to_vec());
        assert!(!check(&f, &wg));
        assert_eq!(
            f.explain(&wg, look).unwrap_err(),
            "interface \"wg1\" is not \"wg0\""
        );

        let mut f = filter("x");
        f.event_types = [ty("address")].into_iter().collect();
        assert!(check(&f, &wg), "state unchanged: an address event");
        assert!(!check(&f, &ev("wg0", Routable, Some(Carrier), &[])));
        f.event_types = [ty("routes")].into_iter().collect();
        assert!(!check(&f, &wg));
        assert!(check(&f, &route("wg0", 2)));

        let mut f = filter("x");
        f.backend = Some("kernel".into());
        assert!(check(&f, &wg));
        f.backend = Some("systemd-networkd".into());
        assert!(!check(&f, &wg));

        let mut f = filter("x");
        f.ip_family = Some(Family::Ipv6);
        assert!(!check(&f, &wg));
        assert!(check(&f, &route("wg0", 10)));
        f.ip_family = Some(Family::Ipv4);
        assert!(check(&f, &wg));
        assert!(!check(&f, &route("wg0", 10)));
        f.ip_family = Some(Family::Any);
        assert!(check(&f, &ev("x", Off, None, &[])));

        let mut f = filter("x");
        f.interface_pattern = Some(b"wg*".to_vec());
        f.event_types = [ty("carrier"), ty("address")].into_iter().collect();
        f.condition = Some(Condition::parse("mtu < 1500").unwrap());
        let why = f.explain(&wg, look).unwrap();
        assert_eq!(
            why,
            vec![
                "interface_pattern \"wg*\" matches \"wg0\"",
                "event_types [carrier, address] hold address",
                "condition \"mtu < 1500\" is true"
            ]
        );
        f.condition = Some(Condition::parse("mtu > 1500").unwrap());
        assert_eq!(
            f.explain(&wg, look).unwrap_err(),
            "condition \"mtu > 1500\" is false"
        );
        assert_eq!(
            filter("x").explain(&wg, look).unwrap(),
            vec!["the filter matches every event"]
        );
    }

    #[test]
    fn subscriptions_parse_their_condition_once() {
        let f = EventFilter {
            condition: Some("mtu >".into()),
            ..EventFilter::default()
        };
        let e = Subscription::new(f).unwrap_err();
        assert_eq!(
            e,
            "where: column 6: mtu is compared with a number, not the end"
        );
        let s = Subscription::new(EventFilter {
            state: Some("routable".into()),
            condition: Some("interface ~ \"wg*\"".into()),
            ..EventFilter::default()
        })
        .unwrap();
        assert!(s.matches(&ev("wg0", Routable, None, &[]), &NONE));
        assert!(!s.matches(&ev("eth0", Routable, None, &[]), &NONE));
        assert!(!s.matches(&ev("wg0", Carrier, None, &[]), &NONE));
    }

    /// The repo's stand-in for cargo-fuzz: seeded, repeatable mutations of
    /// valid conditions and random text. The parser must answer each
    /// without panicking; what parses must print back to the same tree and
    /// evaluate without panicking.
    #[test]
    fn fuzz_condition_parser() {
        let corpus = [
            "has_gateway && dns_count >= 2",
            "!(interface ~ \"veth*\") || kind == \"wireguard\"",
            "(mtu >= 1280 && mtu < 9000) || !has_ipv6",
            "state == \"routable\" && previous_state != \"off\"",
            "family == \"ipv6\" && event == \"routes\" || backend == \"kernel\"",
            "name == \"a\\\"b\" && address_count > 0 && ifindex != 1",
        ];
        let alphabet: Vec<char> = "()!&|=<>~\" \\abcdefghimnorstuwy_0123456789*?[]é\t"
            .chars()
            .collect();
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let e = ev("veth0", Routable, Some(Carrier), &["10.1.1.1", "fe80::1"]);
        let mut parsed = 0;
        for n in 0..100_000u32 {
            let mut s: Vec<char> = corpus[(rnd() % corpus.len() as u64) as usize]
                .chars()
                .collect();
            match rnd() % 5 {
                0 => {
                    let len = (rnd() % 48) as usize;
                    s = (0..len)
                        .map(|_| alphabet[(rnd() % alphabet.len() as u64) as usize])
                        .collect();
                }
                1 => {
                    for _ in 0..1 + rnd() % 3 {
                        let i = (rnd() % (s.len() as u64 + 1)) as usize;
                        s.insert(i, alphabet[(rnd() % alphabet.len() as u64) as usize]);
                    }
                }
                2 => {
                    for _ in 0..1 + rnd() % 3 {
                        if !s.is_empty() {
                            let i = (rnd() % s.len() as u64) as usize;
                            s.remove(i);
                        }
                    }
                }
                3 => {
                    let cut = (rnd() % (s.len() as u64 + 1)) as usize;
                    s.truncate(cut);
                }
                _ => {
                    // Two valid conditions joined: still valid.
                    let other = corpus[(rnd() % corpus.len() as u64) as usize];
                    let op = if rnd() % 2 == 0 { " && " } else { " || " };
                    s.extend(op.chars().chain(other.chars()));
                }
            }
            let text: String = s.iter().collect();
            match parse(&text) {
                Ok(x) => {
                    parsed += 1;
                    assert_eq!(parse(&x.to_string()).as_ref(), Ok(&x), "{text:?}");
                    let _ = x.eval(&e, if n % 2 == 0 { &GW } else { &NONE });
                }
                Err(err) => assert!(err.at <= s.len(), "{text:?}: {err}"),
            }
        }
        assert!(parsed > 5_000, "only {parsed} inputs parsed");
    }
}
