//! Secrets in configuration: a literal, an environment variable or a file, resolved once at
//! start and never shown by `Debug` or `Display`.

use serde::Deserialize;
use std::fmt;

/// A resolved secret value. Its `Debug` prints a placeholder so that dumping a config
/// struct (in a panic, a log line or a test failure) never leaks it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(\"[redacted]\")")
    }
}

/// How a secret is written in the TOML file.
#[derive(Clone, Deserialize)]
#[serde(untagged)]
pub enum SecretSource {
    Literal(String),
    Env { env: String },
    File { file: String },
}

impl fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Literal(_) => f.write_str("Literal([redacted])"),
            Self::Env { env } => write!(f, "Env({env})"),
            Self::File { file } => write!(f, "File({file})"),
        }
    }
}

impl SecretSource {
    /// Reads the secret. The error says where it was looked for, never what it contained.
    pub fn resolve(&self) -> Result<Secret, String> {
        let value = match self {
            Self::Literal(v) => v.clone(),
            Self::Env { env } => std::env::var(env).map_err(|_| {
                format!("environment variable {env} is not set (or is not valid UTF-8)")
            })?,
            Self::File { file } => std::fs::read_to_string(file)
                .map_err(|e| format!("cannot read the file {file}: {e}"))?
                .trim_end_matches(['\r', '\n'])
                .to_string(),
        };
        if value.is_empty() {
            return Err("the secret is empty".into());
        }
        Ok(Secret(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_contains_the_secret() {
        let s = Secret::new("hunter2-very-secret");
        assert!(!format!("{s:?}").contains("hunter2"));
        let src = SecretSource::Literal("hunter2-very-secret".into());
        assert!(!format!("{src:?}").contains("hunter2"));
    }

    #[test]
    fn a_secret_file_is_read_without_its_trailing_newline() {
        let dir = std::env::temp_dir().join(format!("jb-secret-{}", uuid::Uuid::new_v4()));
        std::fs::write(&dir, "s3cr3t\n").unwrap();
        let src = SecretSource::File {
            file: dir.display().to_string(),
        };
        assert_eq!(src.resolve().unwrap().expose(), "s3cr3t");
        std::fs::remove_file(dir).unwrap();
    }

    #[test]
    fn a_missing_env_secret_names_the_variable() {
        let src = SecretSource::Env {
            env: "JB_TEST_SURELY_UNSET_VAR".into(),
        };
        assert!(
            src.resolve()
                .unwrap_err()
                .contains("JB_TEST_SURELY_UNSET_VAR")
        );
    }
}
