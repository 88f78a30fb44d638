//! Shell-style patterns for interface names (`wg*`, `eth[0-3]`, `veth?`),
//! matched on bytes as fnmatch(3) without flags would.

pub fn matches(pat: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    // Where to resume after the last `*`: (pattern index, name index).
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pat.len() {
            match pat[p] {
                b'*' => {
                    star = Some((p + 1, n));
                    p += 1;
                    continue;
                }
                b'?' => {
                    p += 1;
                    n += 1;
                    continue;
                }
                b'[' => {
                    if let Some((ok, len)) = class(&pat[p..], name[n]) {
                        if ok {
                            p += len;
                            n += 1;
                            continue;
                        }
                    } else if name[n] == b'[' {
                        // An unclosed `[` is a literal.
                        p += 1;
                        n += 1;
                        continue;
                    }
                }
                b'\\' if p + 1 < pat.len() && pat[p + 1] == name[n] => {
                    p += 2;
                    n += 1;
                    continue;
                }
                c if c != b'\\' && c == name[n] => {
                    p += 1;
                    n += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, sn)) => {
                p = sp;
                n = sn + 1;
                star = Some((sp, sn + 1));
            }
            None => return false,
        }
    }
    pat[p..].iter().all(|&c| c == b'*')
}

/// Matches `c` against the bracket expression at the start of `pat`;
/// returns whether it matched and the expression's length, or `None` when
/// the bracket is not closed.
fn class(pat: &[u8], c: u8) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = matches!(pat.get(i), Some(b'!') | Some(b'^'));
    if negate {
        i += 1;
    }
    let mut hit = false;
    let mut first = true;
    while i < pat.len() {
        let lo = pat[i];
        if lo == b']' && !first {
            return Some((hit != negate, i + 1));
        }
        first = false;
        if i + 2 < pat.len() && pat[i + 1] == b'-' && pat[i + 2] != b']' {
            hit |= (lo..=pat[i + 2]).contains(&c);
            i += 3;
        } else {
            hit |= lo == c;
            i += 1;
        }
    }
    None
}

/// True when `name` matches one of `patterns`, or there are none.
pub fn any(patterns: &[Vec<u8>], name: &[u8]) -> bool {
    patterns.is_empty() || patterns.iter().any(|p| matches(p, name))
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn patterns() {
        let yes = [
            ("eth0", "eth0"),
            ("wg*", "wg0"),
            ("wg*", "wg"),
            ("*", ""),
            ("e?h0", "eth0"),
            ("eth[0-3]", "eth2"),
            ("eth[!0-3]", "eth7"),
            ("*-lan", "br-lan"),
            ("a*b*c", "aXXbYYc"),
            ("e[th", "e[th"),
            ("ve\\*", "ve*"),
            ("[]x]", "]"),
        ];
        let no = [
            ("eth0", "eth1"),
            ("wg*", "xwg0"),
            ("eth[0-3]", "eth4"),
            ("eth[!0-3]", "eth1"),
            ("e?h0", "eh0"),
            ("a*b*c", "aXXbYY"),
            ("ve\\*", "vex"),
        ];
        for (p, n) in yes {
            assert!(matches(p.as_bytes(), n.as_bytes()), "{p} ~ {n}");
        }
        for (p, n) in no {
            assert!(!matches(p.as_bytes(), n.as_bytes()), "{p} !~ {n}");
        }
    }
}
