//! The browser's side of an OIDC login against the npm oidc-provider, up to the callback.

use crate::helpers::{Browser, absolute, location, urlencode};

/// The OIDC login at the bridge at `base` with the provider at `issuer`, up to the moment the
/// IdP sends the browser back; returns the callback URL (at `base`).
pub async fn oidc_login_until_callback(
    browser: &Browser,
    base: &str,
    issuer: &str,
    connection: &str,
    user: &str,
    rd: &str,
) -> String {
    let r = browser
        .get(&format!(
            "{base}/login?connection={connection}&rd={}",
            urlencode(rd)
        ))
        .await;
    assert_eq!(r.status(), 302, "/login should redirect to the IdP");
    let authorize = location(&r);
    assert!(authorize.starts_with(issuer), "{authorize}");
    oidc_login_at_the_idp(browser, base, issuer, &authorize, user).await
}

/// The IdP's part of a login, from its authorization URL to the callback URL (at `base`). A
/// browser that already has a session at the IdP would skip the login form: give each such
/// step a fresh one.
pub async fn oidc_login_at_the_idp(
    browser: &Browser,
    base: &str,
    issuer: &str,
    authorize: &str,
    user: &str,
) -> String {
    let r = browser.get(authorize).await;
    assert_eq!(r.status(), 303);
    let interaction = absolute(issuer, &location(&r));
    let r = browser
        .http
        .post(format!("{interaction}/login"))
        .form(&[("login", user), ("password", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "the IdP accepts the login of {user}");
    let resume = absolute(issuer, &location(&r));
    let r = browser.get(&resume).await;
    assert_eq!(r.status(), 303);
    let callback = location(&r);
    assert!(
        callback.starts_with(&format!("{base}/callback/")),
        "{callback}"
    );
    callback
}
