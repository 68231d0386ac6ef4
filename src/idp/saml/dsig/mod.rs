//! XML Signature verification of SAML messages on libxmlsec1, with the IdP's keys loaded once.
//!
//! samael's verifier (`Crypto::reduce_xml_to_signed_with_allowed_algorithms`) decodes the IdP
//! certificate again for every signature of every response; under OpenSSL 3 that decoding was
//! the largest single cost of a SAML login (bench/README.md). It also leaves libxmlsec1's
//! defaults in place, which let a signature reference any URI (remote and local files included)
//! and run any transform libxmlsec1 knows (XSLT, XPath) on input that is not verified yet.
//!
//! This verifier keeps samael's answer to signature wrapping, the pre-digest reduction: every
//! signature in the document must verify, and what goes on is exactly the canonical bytes that
//! were digested, never a node looked up again in the received tree. It differs in that:
//! - keys are the certificates' public keys, loaded once when the metadata loads and
//!   duplicated (a reference count) for each verification;
//! - a Reference may only point into the same document (`""` or `#id`), and each signature
//!   carries exactly one (SAML core 5.4.2);
//! - the transforms libxmlsec1 will run are enabled by list: enveloped-signature, the
//!   canonicalizations without comments, and the digest and signature methods of the
//!   connection's allow-list; anything else fails before any digest is computed;
//! - the document is parsed strictly (no recovery, no network).

mod ffi;

use libxml::parser::{Parser, ParserOptions};
use libxml::tree::{Document, Node, NodeType};
use samael::crypto::AllowedSignatureAlgorithm;
use std::ffi::CString;
use std::ptr::{NonNull, null, null_mut};

const DSIG_NS: &str = "http://www.w3.org/2000/09/xmldsig#";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DsigError {
    #[error("the document cannot be parsed")]
    Parse,
    #[error("an ID attribute is not an NCName or appears twice")]
    Ids,
    #[error("the document carries no signature")]
    Unsigned,
    #[error("a signature must carry exactly one reference")]
    References,
    #[error("a signature does not verify, or uses a refused algorithm, transform or reference")]
    Invalid,
    #[error("the several signed parts do not include exactly one whole Response")]
    Selection,
    #[error("the public key of a certificate cannot be loaded")]
    Key,
}

/// A public key in libxmlsec1's form. Never used directly by a verification: each one works
/// on its own duplicate, which the signature context owns and frees.
struct Key(NonNull<ffi::_xmlSecKey>);

// SAFETY: the key is immutable once loaded; the only operation on it after that is
// xmlSecKeyDuplicate, which reads it (and takes a reference on the OpenSSL key).
unsafe impl Send for Key {}
unsafe impl Sync for Key {}

impl Drop for Key {
    fn drop(&mut self) {
        // SAFETY: the pointer came from xmlSecOpenSSLAppKeyLoadMemory and is freed once.
        unsafe { ffi::xmlSecKeyDestroy(self.0.as_ptr()) }
    }
}

/// The IdP's signing keys (several during a rollover), ready for verification.
pub struct VerifyingKeys {
    keys: Vec<Key>,
}

impl std::fmt::Debug for VerifyingKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VerifyingKeys({})", self.keys.len())
    }
}

impl VerifyingKeys {
    /// Loads the public key of each certificate. libxmlsec1 must be initialised (samael does
    /// it on first use; `xmlsec_log::install` triggers that).
    pub fn new(certs: &[openssl::x509::X509]) -> Result<Self, DsigError> {
        let mut keys = Vec::with_capacity(certs.len());
        for cert in certs {
            let spki = cert
                .public_key()
                .and_then(|k| k.public_key_to_der())
                .map_err(|_| DsigError::Key)?;
            let len = spki.len().try_into().map_err(|_| DsigError::Key)?;
            // SAFETY: a valid buffer and length; no password or callbacks.
            let key = unsafe {
                ffi::xmlSecOpenSSLAppKeyLoadMemory(
                    spki.as_ptr(),
                    len,
                    ffi::xmlSecKeyDataFormat_xmlSecKeyDataFormatDer,
                    null(),
                    null_mut(),
                    null_mut(),
                )
            };
            keys.push(Key(NonNull::new(key).ok_or(DsigError::Key)?));
        }
        Ok(Self { keys })
    }

    /// Verifies every signature in `xml` and returns the pre-digest form of the signed
    /// content: the Response when it is signed (it holds the assertion and its signature),
    /// otherwise the one signed element.
    pub fn reduce(
        &self,
        xml: &str,
        algorithms: &[AllowedSignatureAlgorithm],
    ) -> Result<String, DsigError> {
        let options = ParserOptions {
            recover: false,
            no_net: true,
            no_def_dtd: true,
            ..ParserOptions::default()
        };
        let doc = Parser::default()
            .parse_string_with_options(xml, options)
            .map_err(|_| DsigError::Parse)?;
        let root = doc.get_root_element().ok_or(DsigError::Parse)?;
        let elements = elements(&root);
        register_ids(&doc, &elements)?;
        let signatures: Vec<&Node> = elements.iter().filter(|n| is_signature(n)).collect();
        if signatures.is_empty() {
            return Err(DsigError::Unsigned);
        }
        let mut predigests = Vec::with_capacity(signatures.len());
        for sig in signatures {
            predigests.push(self.verify(sig, algorithms)?);
        }
        select(predigests)
    }

    fn verify(
        &self,
        sig: &Node,
        algorithms: &[AllowedSignatureAlgorithm],
    ) -> Result<String, DsigError> {
        for key in &self.keys {
            let ctx = Context::new(algorithms)?;
            // SAFETY: the duplicate is handed to the context, which destroys it.
            let dup = unsafe { ffi::xmlSecKeyDuplicate(key.0.as_ptr()) };
            if dup.is_null() {
                return Err(DsigError::Key);
            }
            // SAFETY: ctx is a live context; sig is an element of a live document.
            unsafe {
                let c = ctx.0.as_ptr();
                (*c).signKey = dup;
                if ffi::xmlSecDSigCtxVerify(c, sig.node_ptr() as *mut ffi::xmlNode) < 0 {
                    // A refused transform, URI or algorithm, or a broken structure: no key
                    // would do better.
                    return Err(DsigError::Invalid);
                }
                if (*c).status != ffi::xmlSecDSigStatus_xmlSecDSigStatusSucceeded {
                    continue;
                }
                return ctx.single_predigest();
            }
        }
        Err(DsigError::Invalid)
    }
}

/// A signature context with the restrictions above, destroyed on drop.
struct Context(NonNull<ffi::xmlSecDSigCtx>);

impl Context {
    fn new(algorithms: &[AllowedSignatureAlgorithm]) -> Result<Self, DsigError> {
        // SAFETY: a context without keys manager (the key is set directly).
        let ctx = Self(
            NonNull::new(unsafe { ffi::xmlSecDSigCtxCreate(null_mut()) }).ok_or(DsigError::Key)?,
        );
        // SAFETY: the klass getters return static descriptors; ctx is live.
        unsafe {
            let c = ctx.0.as_ptr();
            // Manifests are references SAML never uses; each would be one more digest over
            // attacker-chosen content before any signature is known good.
            (*c).flags |= ffi::XMLSEC_DSIG_FLAGS_STORE_SIGNEDINFO_REFERENCES
                | ffi::XMLSEC_DSIG_FLAGS_IGNORE_MANIFESTS;
            (*c).enabledReferenceUris =
                ffi::xmlSecTransformUriTypeEmpty | ffi::xmlSecTransformUriTypeSameDocument;
            let c14n = [
                ffi::xmlSecTransformExclC14NGetKlass(),
                ffi::xmlSecTransformInclC14NGetKlass(),
                ffi::xmlSecTransformInclC14N11GetKlass(),
            ];
            let mut reference = vec![ffi::xmlSecTransformEnvelopedGetKlass()];
            reference.extend(c14n);
            let mut signature = c14n.to_vec();
            for a in algorithms {
                let (method, digest) = klasses(*a);
                reference.push(digest);
                signature.push(method);
            }
            for t in reference {
                if ffi::xmlSecDSigCtxEnableReferenceTransform(c, t) < 0 {
                    return Err(DsigError::Key);
                }
            }
            for t in signature {
                if ffi::xmlSecDSigCtxEnableSignatureTransform(c, t) < 0 {
                    return Err(DsigError::Key);
                }
            }
        }
        Ok(ctx)
    }

    /// The pre-digest bytes of the one Reference of a verified signature.
    ///
    /// # Safety
    /// Only after xmlSecDSigCtxVerify succeeded on this context.
    unsafe fn single_predigest(&self) -> Result<String, DsigError> {
        // SAFETY: the list and its items belong to the live context (see the caller).
        unsafe {
            let list = &mut (*self.0.as_ptr()).signedInfoReferences as *mut ffi::xmlSecPtrList;
            if ffi::xmlSecPtrListGetSize(list) != 1 {
                return Err(DsigError::References);
            }
            let r = ffi::xmlSecPtrListGetItem(list, 0) as *mut ffi::xmlSecDSigReferenceCtx;
            if r.is_null() || (*r).status != ffi::xmlSecDSigStatus_xmlSecDSigStatusSucceeded {
                return Err(DsigError::Invalid);
            }
            let buf = ffi::xmlSecDSigReferenceCtxGetPreDigestBuffer(r);
            if buf.is_null() {
                return Err(DsigError::Invalid);
            }
            let data = ffi::xmlSecBufferGetData(buf);
            let size = ffi::xmlSecBufferGetSize(buf) as usize;
            if data.is_null() || size == 0 {
                return Err(DsigError::Invalid);
            }
            let bytes = std::slice::from_raw_parts(data, size);
            String::from_utf8(bytes.to_vec()).map_err(|_| DsigError::Invalid)
        }
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        // SAFETY: created by xmlSecDSigCtxCreate; this frees the key duplicate as well.
        unsafe { ffi::xmlSecDSigCtxDestroy(self.0.as_ptr()) }
    }
}

/// The libxmlsec1 (OpenSSL) transforms of an allowed algorithm: its signature method and the
/// digest method its references must use.
fn klasses(a: AllowedSignatureAlgorithm) -> (ffi::xmlSecTransformId, ffi::xmlSecTransformId) {
    use AllowedSignatureAlgorithm as A;
    // SAFETY: static descriptors.
    unsafe {
        match a {
            A::RsaSha224 => (
                ffi::xmlSecOpenSSLTransformRsaSha224GetKlass(),
                ffi::xmlSecOpenSSLTransformSha224GetKlass(),
            ),
            A::RsaSha256 => (
                ffi::xmlSecOpenSSLTransformRsaSha256GetKlass(),
                ffi::xmlSecOpenSSLTransformSha256GetKlass(),
            ),
            A::RsaSha384 => (
                ffi::xmlSecOpenSSLTransformRsaSha384GetKlass(),
                ffi::xmlSecOpenSSLTransformSha384GetKlass(),
            ),
            A::RsaSha512 => (
                ffi::xmlSecOpenSSLTransformRsaSha512GetKlass(),
                ffi::xmlSecOpenSSLTransformSha512GetKlass(),
            ),
            A::EcdsaSha224 => (
                ffi::xmlSecOpenSSLTransformEcdsaSha224GetKlass(),
                ffi::xmlSecOpenSSLTransformSha224GetKlass(),
            ),
            A::EcdsaSha256 => (
                ffi::xmlSecOpenSSLTransformEcdsaSha256GetKlass(),
                ffi::xmlSecOpenSSLTransformSha256GetKlass(),
            ),
            A::EcdsaSha384 => (
                ffi::xmlSecOpenSSLTransformEcdsaSha384GetKlass(),
                ffi::xmlSecOpenSSLTransformSha384GetKlass(),
            ),
            A::EcdsaSha512 => (
                ffi::xmlSecOpenSSLTransformEcdsaSha512GetKlass(),
                ffi::xmlSecOpenSSLTransformSha512GetKlass(),
            ),
            A::DsaSha256 => (
                ffi::xmlSecOpenSSLTransformDsaSha256GetKlass(),
                ffi::xmlSecOpenSSLTransformSha256GetKlass(),
            ),
        }
    }
}

/// Every element of the tree, in document order.
fn elements(root: &Node) -> Vec<Node> {
    let mut out = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(n) = stack.pop() {
        let mut children = n.get_child_elements();
        children.reverse();
        stack.extend(children);
        if n.get_type() == Some(NodeType::ElementNode) {
            out.push(n);
        }
    }
    out
}

fn is_signature(n: &Node) -> bool {
    n.get_name() == "Signature" && n.get_namespace().is_some_and(|ns| ns.get_href() == DSIG_NS)
}

/// Declares the unqualified `ID` attributes as XML IDs, so that `#id` references resolve to
/// them and to nothing else. An ID that is not an NCName, or appears twice, refuses the whole
/// document: with two equal IDs, which element a reference names is up to the parser.
fn register_ids(doc: &Document, elements: &[Node]) -> Result<(), DsigError> {
    let name = c"ID";
    let mut seen = std::collections::HashSet::new();
    for n in elements {
        // SAFETY: a live element of a live document; the returned strings are freed below.
        unsafe {
            let attr = libxml::bindings::xmlHasNsProp(n.node_ptr(), name.as_ptr() as _, null());
            if attr.is_null() {
                continue;
            }
            let raw = libxml::bindings::xmlGetNoNsProp(n.node_ptr(), name.as_ptr() as _);
            if raw.is_null() {
                return Err(DsigError::Ids);
            }
            let value = std::ffi::CStr::from_ptr(raw as *const std::ffi::c_char)
                .to_string_lossy()
                .into_owned();
            // libxml2 allocates with malloc unless an application installs other functions.
            libc::free(raw as *mut std::ffi::c_void);
            let c = CString::new(value.as_str()).map_err(|_| DsigError::Ids)?;
            if libxml::bindings::xmlValidateNCName(c.as_ptr() as _, 0) != 0 || !seen.insert(value) {
                return Err(DsigError::Ids);
            }
            if libxml::bindings::xmlAddID(null_mut(), doc.doc_ptr(), c.as_ptr() as _, attr)
                .is_null()
            {
                return Err(DsigError::Ids);
            }
        }
    }
    Ok(())
}

/// One signature: its content. Several (Response and Assertion): the Response's, which holds
/// the rest; there must be exactly one.
fn select(mut predigests: Vec<String>) -> Result<String, DsigError> {
    if predigests.len() == 1 {
        return Ok(predigests.remove(0));
    }
    let mut responses = predigests
        .into_iter()
        .filter(|p| super::preflight::root_is_protocol_response(p));
    match (responses.next(), responses.next()) {
        (Some(r), None) => Ok(r),
        _ => Err(DsigError::Selection),
    }
}

#[cfg(test)]
pub(super) mod tests;
