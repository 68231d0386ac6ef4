//! Where a browser may be sent after login or logout (`rd`): a path on the bridge's own origin,
//! or an absolute URL on a host the admin allowed. Anything else is an open redirect and is
//! refused.

use url::Url;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the redirect target (rd) is not allowed: use a path on this site or a configured host")]
pub struct RedirectRefused;

/// Returns the validated target, or `/` when none was given.
pub fn safe_return_to(
    rd: Option<&str>,
    public_url: &Url,
    allowed_hosts: &[String],
) -> Result<String, RedirectRefused> {
    let rd = match rd {
        None | Some("") => return Ok("/".into()),
        Some(r) => r,
    };
    // Backslashes and control characters are read differently by browsers and parsers
    // (`/\evil.com` is `//evil.com` to some), so refuse them outright.
    if rd.len() > 2048 || rd.contains('\\') || rd.chars().any(char::is_control) {
        return Err(RedirectRefused);
    }
    if rd.starts_with('/') {
        if rd.starts_with("//") {
            return Err(RedirectRefused);
        }
        let resolved = public_url.join(rd).map_err(|_| RedirectRefused)?;
        if resolved.origin() != public_url.origin() {
            return Err(RedirectRefused);
        }
        return Ok(rd.to_string());
    }
    let url = Url::parse(rd).map_err(|_| RedirectRefused)?;
    let host = url.host_str().ok_or(RedirectRefused)?.to_ascii_lowercase();
    let scheme_ok = match url.scheme() {
        "https" => true,
        "http" => public_url.scheme() == "http",
        _ => false,
    };
    let host_ok = url.origin() == public_url.origin() || allowed_hosts.contains(&host);
    if !scheme_ok || !host_ok || !url.username().is_empty() || url.password().is_some() {
        return Err(RedirectRefused);
    }
    Ok(url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn check(rd: &str) -> Result<String, RedirectRefused> {
        let public = Url::parse("https://sso.example.com").unwrap();
        safe_return_to(Some(rd), &public, &["app.example.com".into()])
    }

    #[test]
    fn relative_paths_and_allowed_hosts_pass() {
        assert_eq!(check("/app?x=1#y").unwrap(), "/app?x=1#y");
        assert_eq!(
            check("https://app.example.com/a").unwrap(),
            "https://app.example.com/a"
        );
        assert_eq!(
            check("https://sso.example.com/me").unwrap(),
            "https://sso.example.com/me"
        );
        let public = Url::parse("https://sso.example.com").unwrap();
        assert_eq!(safe_return_to(None, &public, &[]).unwrap(), "/");
    }

    #[test]
    fn known_open_redirect_shapes_are_refused() {
        for rd in [
            "//evil.com",
            "///evil.com",
            "/\\evil.com",
            "\\\\evil.com",
            "https://evil.com",
            "https://app.example.com.evil.com/",
            "https://evil.com@app.example.com/",
            "https://app.example.com@evil.com/",
            "http://app.example.com/", // downgrade from an https bridge
            "javascript:alert(1)",
            "data:text/html,x",
            "/\t/evil.com",
            "/%0a/evil.com\n",
            "evil.com",
            "ftp://app.example.com/",
        ] {
            assert!(check(rd).is_err(), "{rd:?} was accepted");
        }
    }

    proptest! {
        /// Whatever is accepted stays on the bridge or on an allowed host.
        #[test]
        fn accepted_targets_never_leave_the_allowed_origins(rd in "[ -~]{0,40}") {
            if let Ok(target) = check(&rd) {
                let base = Url::parse("https://sso.example.com").unwrap();
                let resolved = base.join(&target).unwrap();
                let host = resolved.host_str().unwrap_or_default();
                prop_assert!(host == "sso.example.com" || host == "app.example.com", "{rd:?} -> {resolved}");
            }
        }
    }
}
