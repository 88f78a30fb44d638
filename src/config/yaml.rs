//! YAML text to a tree of nodes that remember their line and column, and
//! the typed getters that read it. Strict and bounded, because the file is
//! read again on every reload of a running daemon:
//!
//! - no NUL or other control characters (but tab, CR, LF), also not
//!   through escapes (`"\0"`), since every value ends up as a path, a name
//!   or a number; a leading UTF-8 byte order mark is skipped;
//! - one document; no aliases, no tags; no key twice in a mapping;
//! - at most [`MAX_DEPTH`] nested collections. yaml-rust2's own loader
//!   recurses once per level and overflows the stack on deep input, so the
//!   tree is built here from the parser's events, iteratively;
//! - at most [`MAX_NODES`] nodes, so that the tree stays small;
//! - scalars are typed by the getter, YAML 1.2 core schema and nothing
//!   looser: `true`/`false` (also `True`, `TRUE`, ...), plain decimal
//!   integers without sign or leading zeros; a quoted scalar is a string.
//!
//! A configuration can span files (the main one and `conf.d/*.yaml`):
//! each node remembers which file it came from, [`merge`] lays one file's
//! tree over another's, and errors name the node's own file.
//!
//! No I/O here: [`super`] reads the files, with their sizes capped.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use super::Error;

/// Nested sequences and mappings allowed; the schema needs five.
pub const MAX_DEPTH: usize = 32;

/// Nodes (scalars, keys included, sequences and mappings) in a file. A
/// real configuration has hundreds; a million one-letter list items fit
/// in [`super::MAX_SIZE`] and would take half a second and 80 MB to
/// build, in the loop, at each reload.
pub const MAX_NODES: usize = 10_000;

#[derive(Debug, Clone)]
pub enum Value {
    /// The text, and whether it was plain (unquoted, not a block scalar):
    /// only a plain scalar can be a null, a boolean or a number.
    Scalar(String, bool),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

#[derive(Debug, Clone)]
pub struct Node {
    pub v: Value,
    pub line: usize,
    pub col: usize,
    /// Which file: an index into [`Ctx::files`], 0 for the main one.
    pub src: usize,
}

impl Node {
    /// `key:` with nothing after it, `~` or `null`.
    pub fn is_null(&self) -> bool {
        matches!(&self.v, Value::Scalar(s, true) if matches!(s.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }
}

fn bool_word(s: &str) -> Option<bool> {
    match s {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

/// Line and column (1-based, in characters) of byte `at` in `text`,
/// which must be valid UTF-8 up to `at`.
fn position(text: &[u8], at: usize) -> (usize, usize) {
    let before = &text[..at];
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let col = std::str::from_utf8(&before[line_start..])
        .map_or(at - line_start, |s| s.chars().count())
        + 1;
    (line, col)
}

fn at(file: &str, (line, col): (usize, usize), msg: impl Into<String>) -> Error {
    Error {
        file: file.to_string(),
        line,
        col,
        msg: msg.into(),
    }
}

/// The bytes of a file as text: valid UTF-8, without a leading byte order
/// mark.
pub fn decode<'a>(bytes: &'a [u8], file: &str) -> Result<&'a str, Error> {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    std::str::from_utf8(bytes).map_err(|e| {
        at(
            file,
            position(bytes, e.valid_up_to()),
            "not valid UTF-8 (the file must be UTF-8 text)",
        )
    })
}

/// Refuses control characters but tab, CR and LF, naming where the first
/// one stands.
fn check_chars(text: &str, file: &str) -> Result<(), Error> {
    let Some(i) = text
        .bytes()
        .position(|b| (b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r')) || b == 0x7f)
    else {
        return Ok(());
    };
    let what = match text.as_bytes()[i] {
        0 => "a NUL byte".to_string(),
        b => format!("the control character 0x{b:02x}"),
    };
    Err(at(
        file,
        position(text.as_bytes(), i),
        format!("{what}: the file must be text"),
    ))
}

/// Parses `text` into its one document's root node; `None` for a file
/// with no document (only comments).
#[cfg(test)]
pub fn parse(text: &str, file: &str) -> Result<Option<Node>, Error> {
    parse_nth(text, file, 0)
}

/// As [`parse`], for the `src`th file of a configuration.
pub fn parse_nth(text: &str, file: &str, src: usize) -> Result<Option<Node>, Error> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    check_chars(text, file)?;
    let err = |m: Marker, msg: String| at(file, (m.line(), m.col() + 1), msg);
    let mut parser = Parser::new_from_str(text);
    // Open collections, each with its map key waiting for a value.
    let mut stack: Vec<(Node, Option<Node>)> = Vec::new();
    let mut root = None;
    let mut documents = 0;
    let mut nodes = 0;
    loop {
        let (ev, mark) = parser.next_token().map_err(|e| {
            // The scanner counts flow nesting (`[[[[`) in a u8 and refuses
            // the 256th level; looking ahead, it can get there before the
            // events reach our bound.
            let msg = if e.info() == "recursion limit exceeded" {
                format!("nested deeper than {MAX_DEPTH} levels")
            } else {
                format!("YAML syntax: {}", e.info())
            };
            err(*e.marker(), msg)
        })?;
        let (line, col) = (mark.line(), mark.col() + 1);
        if matches!(
            ev,
            Event::Scalar(..) | Event::SequenceStart(..) | Event::MappingStart(..)
        ) {
            nodes += 1;
            if nodes > MAX_NODES {
                return Err(err(
                    mark,
                    format!("more than {MAX_NODES} values (keys, scalars, lists, mappings)"),
                ));
            }
        }
        let node = match ev {
            Event::StreamEnd => break,
            Event::DocumentStart => {
                documents += 1;
                if documents > 1 {
                    return Err(err(
                        mark,
                        "a second YAML document: the file must hold one".into(),
                    ));
                }
                continue;
            }
            Event::Alias(_) => return Err(err(mark, "aliases are not supported".into())),
            Event::Scalar(_, _, _, Some(_))
            | Event::SequenceStart(_, Some(_))
            | Event::MappingStart(_, Some(_)) => {
                return Err(err(mark, "tags (!...) are not supported".into()))
            }
            Event::Scalar(s, style, _, None) => {
                if s.contains('\0') {
                    return Err(err(mark, "a NUL character in a string".into()));
                }
                Node {
                    v: Value::Scalar(s, style == TScalarStyle::Plain),
                    line,
                    col,
                    src,
                }
            }
            Event::SequenceStart(..) | Event::MappingStart(..) => {
                if stack.len() == MAX_DEPTH {
                    return Err(err(mark, format!("nested deeper than {MAX_DEPTH} levels")));
                }
                let v = if matches!(ev, Event::SequenceStart(..)) {
                    Value::Seq(Vec::new())
                } else {
                    Value::Map(Vec::new())
                };
                stack.push((Node { v, line, col, src }, None));
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => match stack.pop() {
                Some((n, _)) => {
                    if let Value::Map(m) = &n.v {
                        no_duplicates(m, file)?;
                    }
                    n
                }
                None => continue,
            },
            Event::StreamStart | Event::DocumentEnd | Event::Nothing => continue,
        };
        match stack.last_mut() {
            None => root = Some(node),
            Some((parent, key)) => match &mut parent.v {
                Value::Seq(v) => v.push(node),
                Value::Map(m) => match key.take() {
                    None => *key = Some(node),
                    Some(k) => {
                        let mut node = node;
                        // `key:` with nothing after it: the parser marks the
                        // empty value where the next token starts, often the
                        // next line; the key is where the user looks.
                        if matches!(&node.v, Value::Scalar(s, true) if s.is_empty()) {
                            (node.line, node.col) = (k.line, k.col);
                        }
                        m.push((k, node))
                    }
                },
                Value::Scalar(..) => unreachable!("scalars are never pushed on the stack"),
            },
        }
    }
    Ok(root)
}

/// A key given twice would silently take the last value.
fn no_duplicates(m: &[(Node, Node)], file: &str) -> Result<(), Error> {
    let mut seen: HashMap<&str, usize> = HashMap::with_capacity(m.len());
    for (k, _) in m {
        if let Value::Scalar(s, _) = &k.v {
            if let Some(first) = seen.insert(s, k.line) {
                return Err(at(
                    file,
                    (k.line, k.col),
                    format!("duplicate key {s:?}: already given at line {first}"),
                ));
            }
        }
    }
    Ok(())
}

/// Lays `over` (a later file's tree) on `base`: a mapping is merged key
/// by key, recursively; anything else (a list, a scalar) replaces what
/// was there; a null (`system:` with nothing under it) changes nothing.
pub fn merge(base: &mut Node, over: Node) {
    if over.is_null() {
        return;
    }
    let Value::Map(b) = &mut base.v else {
        *base = over;
        return;
    };
    let Value::Map(o) = over.v else {
        *base = over;
        return;
    };
    for (k, v) in o {
        let same = |(bk, _): &&mut (Node, Node)| matches!((&bk.v, &k.v), (Value::Scalar(x, _), Value::Scalar(y, _)) if x == y);
        match b.iter_mut().find(same) {
            Some((_, bv)) => merge(bv, v),
            None => b.push((k, v)),
        }
    }
}

/// Typed reads of nodes, each error naming the node's file, the position
/// and the key (`what`).
pub struct Ctx<'a> {
    /// The main file.
    pub file: &'a str,
    /// Every file by [`Node::src`], the main one first; empty when there
    /// is only the main one.
    pub files: &'a [String],
}

impl Ctx<'_> {
    pub fn err(&self, n: &Node, msg: impl Into<String>) -> Error {
        let file = self.files.get(n.src).map_or(self.file, String::as_str);
        at(file, (n.line, n.col), msg)
    }

    /// A mapping; a null is an empty section.
    pub fn map<'n>(&self, n: &'n Node, what: &str) -> Result<&'n [(Node, Node)], Error> {
        match &n.v {
            Value::Map(m) => Ok(m),
            _ if n.is_null() => Ok(&[]),
            _ => Err(self.err(n, format!("{what}: expected a mapping"))),
        }
    }

    /// A sequence; a null is an empty list.
    pub fn seq<'n>(&self, n: &'n Node, what: &str) -> Result<&'n [Node], Error> {
        match &n.v {
            Value::Seq(s) => Ok(s),
            _ if n.is_null() => Ok(&[]),
            _ => Err(self.err(n, format!("{what}: expected a list"))),
        }
    }

    /// A mapping key.
    pub fn key<'n>(&self, n: &'n Node) -> Result<&'n str, Error> {
        match &n.v {
            Value::Scalar(s, _) if !n.is_null() => Ok(s),
            _ => Err(self.err(n, "expected a key (a string)")),
        }
    }

    /// A string: any scalar but a null, taken as written.
    pub fn str<'n>(&self, n: &'n Node, what: &str) -> Result<&'n str, Error> {
        match &n.v {
            _ if n.is_null() => Err(self.err(n, format!("{what}: expected a string, not null"))),
            Value::Scalar(s, _) => Ok(s),
            _ => Err(self.err(n, format!("{what}: expected a string"))),
        }
    }

    /// An interface name or pattern: a string. A plain number is a name as
    /// written (the kernel allows `5` or `007`); a plain `true` is refused
    /// as a boolean, so that a typo does not become a name.
    pub fn name<'n>(&self, n: &'n Node, what: &str) -> Result<&'n str, Error> {
        let s = self.str(n, what)?;
        if matches!(&n.v, Value::Scalar(_, true)) && bool_word(s).is_some() {
            return Err(self.err(
                n,
                format!("{what}: expected an interface name, not the boolean {s} (quote it if that is the name)"),
            ));
        }
        if s.is_empty() {
            return Err(self.err(n, format!("{what}: empty name")));
        }
        Ok(s)
    }

    pub fn bool(&self, n: &Node, what: &str) -> Result<bool, Error> {
        match &n.v {
            Value::Scalar(s, true) => bool_word(s)
                .ok_or_else(|| self.err(n, format!("{what}: expected true or false, not {s:?}"))),
            Value::Scalar(s, false) => Err(self.err(
                n,
                format!("{what}: expected true or false, not the string {s:?} (write it without quotes)"),
            )),
            _ => Err(self.err(n, format!("{what}: expected true or false"))),
        }
    }

    /// A plain decimal integer in `min..=max`: no quotes, sign, leading
    /// zeros, underscores or other bases.
    pub fn uint(&self, n: &Node, what: &str, min: u64, max: u64) -> Result<u64, Error> {
        let s = match &n.v {
            Value::Scalar(s, true) => s,
            Value::Scalar(s, false) => {
                return Err(self.err(
                    n,
                    format!(
                        "{what}: expected a number, not the string {s:?} (write it without quotes)"
                    ),
                ))
            }
            _ => return Err(self.err(n, format!("{what}: expected a number"))),
        };
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(self.err(
                n,
                format!("{what}: expected a number (a plain decimal integer), not {s:?}"),
            ));
        }
        if s.len() > 1 && s.starts_with('0') {
            return Err(self.err(
                n,
                format!("{what}: {s:?} has a leading zero; write a plain decimal integer"),
            ));
        }
        match s.parse::<u64>() {
            Ok(v) if (min..=max).contains(&v) => Ok(v),
            _ => Err(self.err(
                n,
                format!("{what}: {s} is out of range: it must be between {min} and {max}"),
            )),
        }
    }
}
