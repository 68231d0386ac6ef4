//! The configuration as written (TOML + env overrides), and its validation into
//! [`super::Config`]: each section's keys and rules live in the file named after it; here are
//! the top level, the environment overrides and the [`Collector`] of problems.

use super::*;
use serde::Deserialize;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    server: super::server::RawServer,
    #[serde(default)]
    database: super::database::RawDatabase,
    #[serde(default)]
    sessions: super::sessions::RawSessions,
    #[serde(default)]
    accounts: super::accounts::RawAccounts,
    /// Each `[[connection]]` is read by `connection::validate`, which knows its key
    /// (`connection[NAME]`) and its kind.
    #[serde(default)]
    connection: Vec<toml::Table>,
    #[serde(default)]
    assertion: super::assertion::RawAssertion,
    #[serde(default)]
    app: Vec<super::assertion::RawApp>,
}

/// Applies `JITBRIDGE_<SECTION>__<KEY>=value` overrides to the parsed file.
pub(super) fn apply_env(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut vars: Vec<_> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX) && !ENV_NOT_OVERRIDES.contains(&k.as_str()))
        .collect();
    vars.sort();
    for (var, value) in vars {
        let rest = &var[ENV_PREFIX.len()..];
        let Some((section, key)) = rest.split_once("__") else {
            problems.push(Problem {
                key: var.clone(),
                value: None,
                message: "is not a known jitbridge variable".into(),
                fix: "use JITBRIDGE_<SECTION>__<KEY> (e.g. JITBRIDGE_DATABASE__URL), or unset it"
                    .into(),
            });
            continue;
        };
        let section = section.to_ascii_lowercase();
        if !matches!(section.as_str(), "server" | "database" | "sessions") {
            problems.push(Problem {
                key: var.clone(),
                value: None,
                message: format!("names the section `{section}`, which cannot be set from the environment"),
                fix: "only [server], [database] and [sessions] keys have overrides; connection secrets use `{ env = \"VAR\" }` in the file".into(),
            });
            continue;
        }
        let entry = table
            .entry(section.clone())
            .or_insert_with(|| toml::Value::Table(Default::default()));
        let Some(t) = entry.as_table_mut() else {
            continue; // the file itself is malformed; deserialization reports it
        };
        let v = match value.parse::<i64>() {
            Ok(n) => toml::Value::Integer(n),
            Err(_) => toml::Value::String(value),
        };
        t.insert(key.to_ascii_lowercase(), v);
    }
    problems
}

pub(super) struct Collector(Vec<Problem>);

impl Collector {
    pub(super) fn add(&mut self, problem: Problem) {
        self.0.push(problem);
    }

    pub(super) fn push(
        &mut self,
        key: impl Into<String>,
        value: Option<&str>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.0.push(Problem {
            key: key.into(),
            value: value.map(str::to_string),
            message: message.into(),
            fix: fix.into(),
        });
    }

    pub(super) fn duration(&mut self, key: &str, v: Option<&str>, default: Duration) -> Duration {
        match v {
            None => default,
            Some(s) => match humantime::parse_duration(s) {
                Ok(d) if !d.is_zero() => d,
                _ => {
                    self.push(
                        key,
                        Some(s),
                        "is not a positive duration",
                        "write e.g. \"30s\", \"15m\" or \"8h\"",
                    );
                    default
                }
            },
        }
    }

    pub(super) fn secret(&mut self, key: &str, v: &SecretSource) -> Option<Secret> {
        match v.resolve() {
            Ok(s) => Some(s),
            Err(e) => {
                self.push(
                    key,
                    None,
                    format!("cannot be read: {e}"),
                    "set the variable or file it names, or write the value",
                );
                None
            }
        }
    }
}

pub(super) fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

impl RawConfig {
    pub(super) fn validate(mut self) -> Result<Config, Vec<Problem>> {
        let mut c = Collector(Vec::new());
        let state_key = self.server.take_state_key();
        let mut server = super::server::validate(&mut c, self.server);
        let database = super::database::validate(&mut c, self.database);
        let sessions = super::sessions::validate(&mut c, self.sessions);
        let accounts = super::accounts::validate(&mut c, self.accounts);
        (server.state_keys, server.state_key_ephemeral) =
            super::limits::state_keys(&mut c, state_key.as_ref(), sessions.store);
        let connections = super::connection::validate(
            &mut c,
            self.connection,
            &server.public_url,
            &accounts.username_quarantine,
        );
        let (assertion, apps) = super::assertion::validate(&mut c, self.assertion, self.app);

        match database {
            Some(database) if c.0.is_empty() => Ok(Config {
                server,
                database,
                sessions,
                accounts,
                connections,
                assertion,
                apps,
            }),
            _ => Err(c.0),
        }
    }
}
