//! Reading a table whose `kind` decides which keys it may hold (`[[connection]]`,
//! `[connection.directory]`), and turning serde's errors into problems that name their key.
//!
//! serde's internally tagged enums (`#[serde(tag = "kind")]`) buffer the table before choosing a
//! variant, so every error inside the variant loses its key path ("unknown field `bind_dn`" with
//! no hint of where), and its field lists cannot say that a key belongs to another kind. So the
//! kind is read first, keys shared by every kind are split off for the caller, a key of another
//! kind is refused as such, and the rest is read as that kind's struct (`deny_unknown_fields`)
//! straight from the table, where toml keeps the path of every error.

use super::Problem;
use super::raw::Collector;
use serde::de::{DeserializeOwned, Visitor};

/// One value of `kind`: the keys its struct takes, and how to read it.
pub(super) struct Kind<T> {
    /// As written: `kind = "oidc"`.
    pub name: &'static str,
    /// As prose names one: "an OIDC", "a SCIM".
    pub noun: &'static str,
    /// Where this kind's settings go, when not beside `kind` (said in a fix).
    pub note: Option<&'static str>,
    /// The keys of this kind only (usually [`keys_of`] its struct).
    pub keys: fn() -> &'static [&'static str],
    /// Reads the keys left for this kind (usually [`from_table`] into a variant).
    pub read: fn(&mut Collector, &str, toml::Table) -> Option<T>,
}

/// Reads the table at `key` (a `what`, e.g. "directory") as the kind its `kind` names: returns
/// the keys in `common` (shared by every kind; the caller reads them) and that kind's value.
/// Every foreign or unknown key is a problem of its own, so one run names them all.
pub(super) fn read_tagged<T>(
    c: &mut Collector,
    key: &str,
    what: &str,
    mut table: toml::Table,
    common: &[&str],
    kinds: &[Kind<T>],
) -> (toml::Table, Option<T>) {
    let kind = take_kind(c, key, what, &mut table, kinds);
    let (shared, own): (toml::Table, toml::Table) = table
        .into_iter()
        .partition(|(k, _)| common.contains(&k.as_str()));
    let mut rest = toml::Table::new();
    for (k, v) in own {
        if kind.is_some_and(|kind| (kind.keys)().contains(&k.as_str())) {
            rest.insert(k, v);
            continue;
        }
        let other = kinds.iter().find(|o| (o.keys)().contains(&k.as_str()));
        match (kind, other) {
            // The kind is missing or unknown (already a problem): a key some kind takes may
            // well be right, so only a key of none is named.
            (None, Some(_)) => {}
            (Some(kind), Some(other)) => c.push(
                format!("{key}.{k}"),
                None,
                format!(
                    "is {} setting, which {} {what} does not take",
                    other.noun, kind.noun
                ),
                format!(
                    "remove it, or set kind = \"{}\" if this is {} {what}{}",
                    other.name,
                    other.noun,
                    note(kind)
                ),
            ),
            (Some(kind), None) => {
                let mut takes: Vec<&str> = vec!["kind"];
                takes.extend(common);
                takes.extend((kind.keys)());
                c.push(
                    format!("{key}.{k}"),
                    None,
                    format!("is not a setting of {} {what}", kind.noun),
                    format!(
                        "remove it or correct its name ({} {what} takes {}){}",
                        kind.noun,
                        takes.join(", "),
                        note(kind)
                    ),
                );
            }
            (None, None) => c.push(
                format!("{key}.{k}"),
                None,
                format!("is not a setting of any {what} kind"),
                "remove it or correct its name (see the configuration reference in README.md)",
            ),
        }
    }
    let value = kind.and_then(|kind| (kind.read)(c, key, rest));
    (shared, value)
}

fn note<T>(kind: &Kind<T>) -> String {
    kind.note.map(|n| format!("; {n}")).unwrap_or_default()
}

fn take_kind<'k, T>(
    c: &mut Collector,
    key: &str,
    what: &str,
    table: &mut toml::Table,
    kinds: &'k [Kind<T>],
) -> Option<&'k Kind<T>> {
    let names: Vec<String> = kinds.iter().map(|k| format!("\"{}\"", k.name)).collect();
    let choices = names.join(" or ");
    let written = match table.remove("kind") {
        None => {
            c.push(
                format!("{key}.kind"),
                None,
                "is missing",
                format!("write kind = {choices}"),
            );
            return None;
        }
        Some(toml::Value::String(s)) => s,
        Some(other) => other.to_string(),
    };
    let found = kinds.iter().find(|k| k.name == written);
    if found.is_none() {
        c.push(
            format!("{key}.kind"),
            Some(&written),
            format!("is not a {what} kind"),
            format!("write {choices}"),
        );
    }
    found
}

/// Deserializes `T` from the table at `key`; an error becomes a problem naming its key.
pub(super) fn from_table<T: DeserializeOwned>(
    c: &mut Collector,
    key: &str,
    table: toml::Table,
) -> Option<T> {
    match toml::Value::Table(table).try_into() {
        Ok(v) => Some(v),
        Err(e) => {
            c.add(serde_problem(key, &e));
            None
        }
    }
}

/// A deserialization error of the value at `key` ("" for the whole file) as a problem: the key
/// it is about (toml's path below `key`, and the field serde names), and the fix.
pub(super) fn serde_problem(key: &str, e: &toml::de::Error) -> Problem {
    // toml keeps the path (`server.rate_limits`) private; its Display ends with it.
    let text = e.to_string();
    let path = text
        .lines()
        .last()
        .and_then(|l| l.strip_prefix("in `")?.strip_suffix('`'))
        .unwrap_or_default();
    let join = |a: &str, b: &str| match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_string(),
        (_, true) => a.to_string(),
        _ => format!("{a}.{b}"),
    };
    let at = join(key, path);
    let message = e.message();
    let field = |prefix: &str| {
        let (name, rest) = message.strip_prefix(prefix)?.split_once('`')?;
        Some((join(&at, name), rest.trim_start_matches(',').trim()))
    };
    let (key, message, fix) = if let Some((k, expected)) = field("unknown field `") {
        let fix = if expected.is_empty() {
            "remove it or correct its name".to_string()
        } else {
            format!("remove it or correct its name; {expected}")
        };
        (k, "is not a known setting".to_string(), fix)
    } else if let Some((k, _)) = field("missing field `") {
        (
            k,
            "is missing".to_string(),
            "add it (see the configuration reference in README.md)".to_string(),
        )
    } else {
        (
            at,
            message.to_string(),
            "see the configuration reference in README.md".to_string(),
        )
    };
    Problem {
        key: if key.is_empty() { "(file)".into() } else { key },
        value: None,
        message,
        fix,
    }
}

/// The keys a `#[derive(Deserialize)]` struct takes: serde's own list, the one its
/// `deny_unknown_fields` checks against, so no list of keys is written twice.
pub(super) fn keys_of<T: DeserializeOwned>() -> &'static [&'static str] {
    /// A deserializer that only records the field list serde_derive hands to it.
    struct Probe<'a>(&'a mut &'static [&'static str]);

    impl<'de> serde::Deserializer<'de> for Probe<'_> {
        type Error = serde::de::value::Error;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(serde::de::Error::custom("not a struct"))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(serde::de::Error::custom("probed"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
            ignored_any
        }
    }

    let mut keys: &'static [&'static str] = &[];
    let _ = T::deserialize(Probe(&mut keys));
    keys
}
