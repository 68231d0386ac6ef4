//! The binary as an operator meets it.

use std::process::Command;

fn jitbridge() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_jitbridge"));
    c.env_remove("JITBRIDGE_CONFIG");
    c
}

#[test]
fn version_is_printed() {
    let out = jitbridge().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("jitbridge "));
}

#[test]
fn a_bad_configuration_exits_non_zero_and_names_key_value_and_fix() {
    let dir = std::env::temp_dir().join(format!("jbcli-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    std::fs::write(&file, "[sessions]\nstore = \"memcached\"\n").unwrap();
    let out = jitbridge()
        .arg("--config")
        .arg(&file)
        .arg("serve")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("sessions.store = \"memcached\""), "{err}");
    assert!(err.contains("fix:"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn an_unknown_environment_override_is_refused() {
    let out = jitbridge()
        .arg("check-config")
        .env("JITBRIDGE_DATABSE__URL", "x")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("JITBRIDGE_DATABSE__URL"));
}

/// `check-config` printed the configuration's Debug dump: nothing said which connections
/// trust unverified emails or run with a risky opt-in. Now it prints each connection's email
/// trust and a warning per risky setting, naming the key and the fix, and still exits 0.
#[test]
fn check_config_prints_email_trust_and_warns_of_each_risky_opt_in() {
    let dir = std::env::temp_dir().join(format!("jbcli-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("risky.toml");
    std::fs::write(
        &file,
        r#"
[[connection]]
name = "corp"
kind = "oidc"
issuer = "https://login.example.com"
client_id = "jitbridge"
client_secret = "literal-client-secret-never-printed"
[connection.mapping]
trust_email = true

[[connection]]
name = "adfs"
kind = "saml"
[connection.saml]
idp_metadata_file = "/etc/jitbridge/idp.xml"
allow_unstable_name_id = true
allow_unsigned_cbc = true
"#,
    )
    .unwrap();
    let out = jitbridge()
        .arg("--config")
        .arg(&file)
        .args(["check-config", "--dump"])
        .output()
        .unwrap();
    std::fs::remove_dir_all(dir).unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "warnings are no errors: {out:?}"
    );
    for want in [
        "connection corp (oidc",
        "email: verified when the provider sends email_verified = true or no email_verified",
        "connection adfs (saml",
        "email: the address the IdP asserts is trusted",
        "4 warnings:",
        "connection[corp].mapping.trust_email = \"true\"",
        "connection[adfs].saml.allow_unstable_name_id = \"true\"",
        "connection[adfs].saml.allow_unsigned_cbc = \"true\"",
        "accounts.username_hash_key: is not set",
        "fix:",
    ] {
        assert!(text.contains(want), "{want:?} missing in:\n{text}");
    }
    assert!(!text.contains("literal-client-secret"), "{text}");
}

#[test]
fn migrate_creates_the_sqlite_schema_and_is_idempotent() {
    let dir = std::env::temp_dir().join(format!("jbcli-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}", dir.join("m.db").display());
    let first = jitbridge()
        .arg("migrate")
        .env("JITBRIDGE_DATABASE__URL", &url)
        .output()
        .unwrap();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let shipped = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite"))
        .unwrap()
        .count();
    let printed = String::from_utf8_lossy(&first.stdout);
    assert!(
        printed.starts_with(&format!("{shipped} migration(s) applied")),
        "{printed}"
    );
    let again = jitbridge()
        .arg("migrate")
        .env("JITBRIDGE_DATABASE__URL", &url)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&again.stdout).starts_with("0 migration(s) applied"));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn an_unreachable_database_is_reported_as_such() {
    let out = jitbridge()
        .arg("migrate")
        .env(
            "JITBRIDGE_DATABASE__URL",
            "postgres://nobody@127.0.0.1:1/none",
        )
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("database.url") && err.contains("cannot connect to the database"),
        "{err}"
    );
}

/// A database with one account, `alice`, provisioned as a login would.
fn database_with_alice() -> (crate::helpers::TestDb, String) {
    let (test_db, db) = crate::direct::library_db();
    let key = jitbridge::provisioning::LoginKey {
        connection: crate::helpers::CONNECTION,
        subject: "alice-subject",
        request_id: None,
    };
    jitbridge::provisioning::provision(
        &mut db.get().unwrap(),
        key,
        &crate::direct::profile("alice"),
        &Default::default(),
    )
    .unwrap();
    let url = test_db.url.clone();
    (test_db, url)
}

fn accounts_cmd(url: &str, args: &[&str]) -> std::process::Output {
    jitbridge()
        .arg("accounts")
        .args(args)
        .env("JITBRIDGE_DATABASE__URL", url)
        .output()
        .unwrap()
}

/// Regression: `accounts enable` set the status back to active but left `disabled_reason` and
/// `disabled_at` from the old disable (the whole-row write skipped the `None` fields).
#[test]
fn accounts_enable_no_longer_leaves_the_old_disable_reason_and_time_set() {
    let (test_db, url) = database_with_alice();
    let out = accounts_cmd(&url, &["disable", "alice", "--reason", "left the company"]);
    assert!(out.status.success(), "{out:?}");
    let out = accounts_cmd(&url, &["enable", "alice"]);
    assert!(out.status.success(), "{out:?}");
    let db = jitbridge::db::Db::connect(&jitbridge::config::Secret::new(&test_db.url), 1).unwrap();
    let acc = jitbridge::accounts::find_by_username(&mut db.get().unwrap(), "alice")
        .unwrap()
        .unwrap();
    assert_eq!(acc.status, "active");
    assert_eq!(acc.disabled_reason, None, "the old reason stays set");
    assert_eq!(acc.disabled_at, None, "the old disable time stays set");
}

/// Regression: on PostgreSQL over TLS, CLI commands sometimes crashed (SIGSEGV) at exit after
/// the change was committed and printed: a pool thread was still opening a TLS connection while
/// the process exited. A cron job read a failure for a change that was made. Every run of a
/// loop of disables and enables must exit 0 (on PostgreSQL with `sslmode=require`, which the
/// test server offers).
#[test]
fn cli_account_commands_no_longer_crash_at_exit() {
    const RUNS: usize = 200;
    let (_test_db, url) = database_with_alice();
    let url = if crate::helpers::uses_postgres() {
        format!("{url}?sslmode=require")
    } else {
        url
    };
    let mut failures = Vec::new();
    for run in 0..RUNS {
        let args: &[&str] = if run % 2 == 0 {
            &["disable", "alice", "--reason", "loop"]
        } else {
            &["enable", "alice"]
        };
        let out = accounts_cmd(&url, args);
        if !out.status.success() {
            failures.push(format!(
                "run {run}: {:?} {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {RUNS} runs failed: {failures:#?}",
        failures.len()
    );
}
