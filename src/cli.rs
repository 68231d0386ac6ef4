//! Command line. The doc comments are the `--help` text.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// jitbridge: SSO bridge with just-in-time provisioning and safe deprovisioning.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    /// TOML configuration file (default: $JITBRIDGE_CONFIG, else the embedded defaults).
    #[arg(long, short, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the bridge (migrations are applied at start).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Validate the configuration, print each connection's effective email trust and username
    /// rules and every risky setting as a warning (naming the key and the fix), and exit: 0
    /// when it is valid (warnings included), 2 when it is not.
    CheckConfig {
        /// Also print every effective setting (secrets redacted).
        #[arg(long)]
        dump: bool,
    },
    /// Run the bridge with a built-in DEVELOPMENT-ONLY OpenID provider and a sample protected page.
    Demo {
        /// Address of the bridge.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// Loopback port of the development OpenID provider.
        #[arg(long, default_value_t = 8081)]
        provider_port: u16,
        /// SQLite file for the demo's accounts.
        #[arg(long, default_value = "jitbridge-demo.db")]
        database: PathBuf,
    },
    /// Check accounts against the IdP's directory now: disable the leavers (after their grace),
    /// reactivate or purge per policy. Prints the plan.
    Sweep {
        /// Only this connection (default: every connection with a [connection.directory]).
        #[arg(long)]
        connection: Option<String>,
        /// Print what would change; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Go past the mass-disable safety gate (an empty listing still changes nothing).
        #[arg(long)]
        force: bool,
        /// Go past the purge cap (purging is irreversible: --force alone never passes it).
        #[arg(long)]
        force_purge: bool,
    },
    /// Inspect and manage local accounts.
    #[command(subcommand)]
    Accounts(AccountsCommand),
    /// Show the newest audit events.
    Audit {
        /// How many events.
        #[arg(short = 'n', long, default_value_t = 20)]
        limit: i64,
    },
}

#[derive(Debug, Subcommand)]
pub enum AccountsCommand {
    /// List accounts.
    List,
    /// Disable an account: future logins are refused and (with Redis sessions) its sessions end now.
    Disable {
        username: String,
        /// Why, for the audit trail.
        #[arg(long, default_value = "disabled by an administrator")]
        reason: String,
    },
    /// Enable a disabled account again.
    Enable { username: String },
    /// Grant a role, for good or, with --for, until then (a temporary grant); live sessions
    /// hold it at their next check.
    Grant {
        username: String,
        role: String,
        /// How long the grant lasts (e.g. 2h, 30m, 7days); without it, until removed.
        #[arg(long = "for", value_parser = humantime::parse_duration)]
        duration: Option<std::time::Duration>,
        /// Why, for the audit trail.
        #[arg(long, default_value = "granted by an administrator")]
        reason: String,
    },
    /// Release a username held in quarantine (freed by a rename or a purge), so that another
    /// account may take it at its next login. Audited; the name is matched case-insensitively.
    ReleaseUsername { name: String },
    /// Remove an administrator's grant of a role (permanent and temporary); live sessions lose
    /// it at their next check. Roles from the IdP's claims are changed by the mapping instead.
    RemoveRole {
        username: String,
        role: String,
        /// Why, for the audit trail.
        #[arg(long, default_value = "removed by an administrator")]
        reason: String,
    },
}
