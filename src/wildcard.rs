//! Wildcard patterns as the configuration writes them: `*` stands for any run of characters,
//! anything else is literal, compared ASCII case-insensitively against the whole value. Used
//! for LDAP references a listing may ignore and for the roles an app's assertion carries.

/// Whether `s` matches `pattern` as a whole. Iterative (no recursion), linear in practice.
pub fn matches(pattern: &[u8], s: &[u8]) -> bool {
    let (p, mut pi, mut si) = (pattern, 0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if pi < p.len() && p[pi].eq_ignore_ascii_case(&s[si]) {
            pi += 1;
            si += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn a_star_matches_any_run_and_the_rest_is_literal() {
        assert!(matches(b"app-*-admins", b"app-billing-admins"));
        assert!(matches(b"app-*", b"app-"));
        assert!(!matches(b"app-*", b"myapp-x"));
        assert!(!matches(b"admin", b"admins"));
        assert!(matches(b"Admin", b"admin"));
    }
}
