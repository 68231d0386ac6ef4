//! Field templates: either a bare claim name (`email`, `realm_access.roles`) or text with
//! `{claim}` placeholders (`{given_name} {family_name}`); `{{` and `}}` are literal braces.
//! Deliberately not an expression language: substitution only.

use super::{Claims, lookup};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Claim(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
    /// A bare claim name: the claim's value is used as is (arrays included) for attributes.
    bare: bool,
}

impl Template {
    pub fn parse(src: &str) -> Result<Self, String> {
        let src = src.trim();
        if src.is_empty() {
            return Err("the template is empty".into());
        }
        if !src.contains(['{', '}']) {
            validate_claim_name(src)?;
            return Ok(Self {
                parts: vec![Part::Claim(src.to_string())],
                bare: true,
            });
        }
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut chars = src.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    text.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    text.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    let mut closed = false;
                    for c in chars.by_ref() {
                        if c == '}' {
                            closed = true;
                            break;
                        }
                        name.push(c);
                    }
                    if !closed {
                        return Err(
                            "a `{` has no closing `}` (write `{{` for a literal brace)".into()
                        );
                    }
                    let name = name.trim();
                    validate_claim_name(name)?;
                    if !text.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut text)));
                    }
                    parts.push(Part::Claim(name.to_string()));
                }
                '}' => return Err("unmatched `}` (write `}}` for a literal brace)".into()),
                c => text.push(c),
            }
        }
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        if !parts.iter().any(|p| matches!(p, Part::Claim(_))) {
            return Err("the template names no claim".into());
        }
        Ok(Self { parts, bare: false })
    }

    /// The top-level claim names this template reads.
    pub fn claim_roots(&self) -> impl Iterator<Item = String> + '_ {
        self.parts.iter().filter_map(|p| match p {
            Part::Claim(c) => Some(c.split('.').next().unwrap_or(c).to_string()),
            Part::Text(_) => None,
        })
    }

    /// Renders to text. Missing claims render empty; `None` when nothing at all was found.
    pub fn render(&self, claims: &Claims) -> Option<String> {
        let mut out = String::new();
        let mut found = false;
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Claim(c) => {
                    if let Some(s) = lookup(claims, c).and_then(scalar_text) {
                        found = true;
                        out.push_str(&s);
                    }
                }
            }
        }
        let collapsed = out.split_whitespace().collect::<Vec<_>>().join(" ");
        (found && !collapsed.is_empty()).then_some(collapsed)
    }

    /// Renders for an attribute: a bare claim keeps its JSON shape (lists of scalars stay lists).
    pub fn render_value(&self, claims: &Claims) -> Option<Value> {
        if let (true, [Part::Claim(c)]) = (self.bare, self.parts.as_slice()) {
            return match lookup(claims, c)? {
                Value::Array(items) => {
                    let items: Vec<Value> = items
                        .iter()
                        .filter(|i| !i.is_object() && !i.is_array() && !i.is_null())
                        .cloned()
                        .collect();
                    (!items.is_empty()).then_some(Value::Array(items))
                }
                v => scalar_text(v).map(Value::String),
            };
        }
        self.render(claims).map(Value::String)
    }
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn validate_claim_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a placeholder names no claim (`{}`)".into());
    }
    if name
        .chars()
        .any(|c| c.is_whitespace() || c == '{' || c == '}')
    {
        return Err(format!("`{name}` is not a claim name"));
    }
    Ok(())
}
