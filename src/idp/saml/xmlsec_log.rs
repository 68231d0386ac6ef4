//! libxmlsec1 and libxml2 report errors by printing them to stderr. Their callback hooks route
//! them into `tracing` instead (targets `xmlsec` and `libxml2`, level debug): a refused
//! signature or a malformed document is already reported by the adapter, and the operator's
//! log stays structured.

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

/// The leading fields of libxml2's `xmlError` (the rest is never read).
#[repr(C)]
struct XmlErrorHead {
    domain: c_int,
    code: c_int,
    message: *const c_char,
}

type StructuredCallback =
    unsafe extern "C" fn(user_data: *mut std::ffi::c_void, error: *const XmlErrorHead);

unsafe extern "C" {
    /// From libxmlsec1 (linked through samael): replaces the default stderr printer.
    fn xmlSecErrorsSetCallback(callback: Callback);
    /// From libxml2: the structured error handler, for this thread and for threads created later.
    fn xmlSetStructuredErrorFunc(ctx: *mut std::ffi::c_void, handler: StructuredCallback);
    fn xmlThrDefSetStructuredErrorFunc(ctx: *mut std::ffi::c_void, handler: StructuredCallback);
}

unsafe extern "C" fn libxml_to_tracing(_ctx: *mut std::ffi::c_void, error: *const XmlErrorHead) {
    if error.is_null() {
        return;
    }
    // SAFETY: libxml2 passes a valid xmlError for the duration of the call.
    let e = unsafe { &*error };
    tracing::debug!(
        target: "libxml2",
        domain = e.domain,
        code = e.code,
        message = %text(e.message).trim_end(),
        "libxml2 error"
    );
}

/// Sets the libxml2 handler on the calling thread (threads created after [`install`] get it by
/// default).
pub fn on_this_thread() {
    // SAFETY: the handler has the signature libxml2 declares and never unwinds.
    unsafe { xmlSetStructuredErrorFunc(std::ptr::null_mut(), libxml_to_tracing) }
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
        // SAFETY: the callbacks have the signatures the libraries declare and never unwind.
        unsafe {
            xmlSecErrorsSetCallback(to_tracing);
            xmlThrDefSetStructuredErrorFunc(std::ptr::null_mut(), libxml_to_tracing);
        }
    });
    on_this_thread();
}
