//! Reading the one tree of verified SAML bytes (`roxmltree`): elements by namespace and local
//! name, never by local name alone or by prefix.

use super::SamlError;
use roxmltree::Node;

/// True when `n` is the element `{ns}local`.
pub fn is(n: &Node<'_, '_>, ns: &str, local: &str) -> bool {
    n.is_element() && n.tag_name().namespace() == Some(ns) && n.tag_name().name() == local
}

/// The element children of `n`.
pub fn elements<'a, 'i>(n: Node<'a, 'i>) -> impl Iterator<Item = Node<'a, 'i>> {
    n.children().filter(Node::is_element)
}

/// The first child `{ns}local` of `n`.
pub fn child<'a, 'i>(n: Node<'a, 'i>, ns: &str, local: &str) -> Option<Node<'a, 'i>> {
    elements(n).find(|c| is(c, ns, local))
}

/// A namespace constant of [`super::preflight`] as text.
pub fn ns(bytes: &'static [u8]) -> &'static str {
    std::str::from_utf8(bytes).expect("namespace names are ASCII")
}

/// The text of an element: its text descendants, trimmed.
pub fn text(n: Node<'_, '_>) -> String {
    n.descendants()
        .filter(Node::is_text)
        .filter_map(|t| t.text())
        .collect::<String>()
        .trim()
        .to_string()
}

/// Parses verified bytes into the one tree (no DTD: the preflight refused them already).
pub(super) fn parse(xml: &str) -> Result<roxmltree::Document<'_>, SamlError> {
    roxmltree::Document::parse_with_options(
        xml,
        roxmltree::ParsingOptions {
            allow_dtd: false,
            ..Default::default()
        },
    )
    .map_err(super::response::unreadable)
}
