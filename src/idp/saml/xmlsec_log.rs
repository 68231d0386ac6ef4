//! libxmlsec1 reports errors by printing them to stderr. Its callback hook routes them into
//! `tracing` instead (target `xmlsec`, level debug): a refused signature is already reported
//! by the adapter, and the operator's log stays structured.

use std::ffi::{CStr, c_char, c_int};

type Callback = unsafe extern "C" fn(
    file: *const c_char,
    line: c_int,
    func: *const c_char,
    error_object: *const c_char,
    error_subject: *const c_char,
    reason: c_int,
    msg: *const c_char,
);

unsafe extern "C" {
    /// From libxmlsec1 (linked through samael): replaces the default stderr printer.
    fn xmlSecErrorsSetCallback(callback: Callback);
}

fn text(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: libxmlsec passes NUL-terminated strings that live for the call.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

unsafe extern "C" fn to_tracing(
    _file: *const c_char,
    _line: c_int,
    func: *const c_char,
    error_object: *const c_char,
    _error_subject: *const c_char,
    reason: c_int,
    msg: *const c_char,
) {
    tracing::debug!(
        target: "xmlsec",
        func = %text(func),
        object = %text(error_object),
        reason,
        message = %text(msg),
        "libxmlsec1 error"
    );
}

/// Installs the hook once per process. libxmlsec1 resets it when samael initialises the
/// library on first use, so that initialisation is triggered first, through a verification
/// with a real certificate that fails harmlessly (the document has no signature).
pub fn install(cert: &samael::crypto::CertificateDer) {
    use samael::crypto::{Crypto, CryptoProvider};
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = Crypto::verify_signed_xml(b"<x/>", cert, None);
        // SAFETY: the callback has the signature libxmlsec1 declares and never unwinds.
        unsafe { xmlSecErrorsSetCallback(to_tracing) }
    });
}
