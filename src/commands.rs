//! What each CLI command does. `main` only parses, sets up logging and calls [`run`].

use crate::cli::{AccountsCommand, Cli, Command};
use crate::config::{Config, SessionStoreKind};
use crate::db::Db;
use crate::directory::Directory;
use crate::lifecycle::roles::RoleChange;
use crate::mapping::RoleName;
use crate::session::{SessionStore, Timeouts};
use crate::sweeper::{self, SweepOptions, SweepOutcome};
use crate::{accounts, audit, demo, web};
use anyhow::Context;
use std::process::ExitCode;

/// Exit code for a configuration that does not validate.
const EXIT_CONFIG: u8 = 2;
/// Exit code for a sweep stopped by a safety gate, a listing error or another sweeper.
const EXIT_SWEEP_STOPPED: u8 = 3;
/// Exit code for a disable that committed but whose sessions could not be ended in Redis now
/// (the revocation log still ends them in the servers that follow it).
const EXIT_SESSIONS_NOT_REVOKED: u8 = 4;

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Command::Demo {
        listen,
        provider_port,
        database,
    } = &cli.command
    {
        return runtime()?.block_on(demo::run(*listen, *provider_port, database.clone()));
    }
    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
    };
    match cli.command {
        Command::Serve => runtime()?.block_on(serve(config)),
        Command::Migrate => {
            let db = Db::connect_direct(&config.database.url)
                .context("cannot open the database (database.url)")?;
            let applied = db.migrate().context("cannot migrate the database")?;
            close_db(db)?;
            println!("{} migration(s) applied", applied.len());
            for v in applied {
                println!("  {v}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckConfig { dump } => {
            print!("{}", crate::config::report(&config));
            if dump {
                println!("\n{config:#?}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Accounts(cmd) => runtime()?.block_on(accounts_cmd(config, cmd)),
        Command::Sweep {
            connection,
            dry_run,
            force,
            force_purge,
        } => runtime()?.block_on(sweep_cmd(
            config,
            connection,
            SweepOptions {
                dry_run,
                force,
                force_purge,
            },
        )),
        Command::Audit { limit } => {
            let db = open_db(&config)?;
            for e in audit::recent(&mut *db.get()?, limit)? {
                println!(
                    "{} {:<18} {:<7} actor={} account={} connection={} {}",
                    e.at,
                    e.action,
                    e.outcome,
                    e.actor,
                    e.account_id.as_deref().unwrap_or("-"),
                    e.connection.as_deref().unwrap_or("-"),
                    e.details
                );
            }
            close_db(db)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo { .. } => unreachable!("handled above"),
    }
}

async fn sweep_cmd(
    config: Config,
    only: Option<String>,
    opts: SweepOptions,
) -> anyhow::Result<ExitCode> {
    let targets: Vec<_> = config
        .connections
        .iter()
        .filter(|c| only.as_deref().is_none_or(|n| n == c.name))
        .filter(|c| c.directory.is_some())
        .cloned()
        .collect();
    if targets.is_empty() {
        anyhow::bail!(
            "no connection{} has a [connection.directory] to sweep",
            only.map(|n| format!(" named {n:?}")).unwrap_or_default()
        );
    }
    let db = open_db(&config)?;
    let sessions = session_store_for_admin(&config).await?;
    let mut code = ExitCode::SUCCESS;
    for conn in targets {
        let source = Directory::open(conn.directory.as_ref().expect("filtered"))?;
        let report = sweeper::sweep_once(&db, sessions.as_ref(), &conn, source, opts).await?;
        print_report(&report);
        if matches!(
            report.outcome,
            SweepOutcome::Aborted(_) | SweepOutcome::Busy { .. }
        ) {
            code = ExitCode::from(EXIT_SWEEP_STOPPED);
        }
    }
    close_db(db)?;
    Ok(code)
}

fn print_report(r: &sweeper::SweepReport) {
    use sweeper::reconcile::Action;
    println!(
        "connection {}: {:?} in {:.1}s, {} directory entries seen",
        r.connection,
        r.outcome,
        r.duration.as_secs_f64(),
        r.plan.as_ref().map_or(0, |p| p.seen)
    );
    let Some(plan) = &r.plan else { return };
    for p in &plan.actions {
        let what = match &p.action {
            Action::MarkMissing {
                missing_count, why, ..
            } => format!("missing ({why:?}, sweep {missing_count}): within grace"),
            Action::Disable {
                missing_count, why, ..
            } => format!("DISABLE ({why:?}, missing for {missing_count} sweeps)"),
            Action::ClearMissing => "back in the directory".into(),
            Action::Reactivate => "REACTIVATE (back in the directory)".into(),
            Action::LeaveDisabled => {
                "back in the directory, left disabled (reactivate = false)".into()
            }
            Action::Purge => "PURGE (disabled longer than the retention)".into(),
        };
        println!("  {:<40} account {}  {what}", p.subject, p.account_id);
    }
    if plan.without_subject > 0 {
        println!(
            "  {} entries without the subject attribute (within max_entries_without_subject)",
            plan.without_subject
        );
    }
    if let Some(reason) = &plan.purges_held {
        println!("  purges held back: {reason}");
    }
    if let Some(reason) = &plan.abort {
        println!("  stopped before any change: {reason}");
    }
}

/// The session store an admin command can reach directly: Redis, shared with the servers. With
/// in-process sessions, the servers learn of revocations from the revocation log instead.
/// Delivers a committed change's account snapshot to Redis now; with in-process sessions the
/// running servers apply it from the log within a second. The change is committed: a failure
/// here gets its own exit code and says what was done.
async fn deliver_snapshot(
    config: &Config,
    state: &crate::session::AccountState,
    username: &str,
) -> anyhow::Result<ExitCode> {
    let delivered = match session_store_for_admin(config).await {
        Ok(Some(store)) => store
            .put_account(state)
            .await
            .map(|_| true)
            .map_err(Into::into),
        Ok(None) => Ok(false),
        Err(e) => Err(e),
    };
    match delivered {
        Ok(true) => println!("live sessions of {username} hold it at their next check"),
        Ok(false) => {
            println!("running servers apply it to live sessions within a second (revocation log)")
        }
        Err(e) => {
            eprintln!(
                "error: the change to {username} is committed, but could not be written to Redis \
                 now (servers following the revocation log still apply it): {e:#}"
            );
            return Ok(ExitCode::from(EXIT_SESSIONS_NOT_REVOKED));
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn session_store_for_admin(config: &Config) -> anyhow::Result<Option<SessionStore>> {
    if config.sessions.store != SessionStoreKind::Redis {
        return Ok(None);
    }
    let url = config
        .sessions
        .redis_url
        .as_ref()
        .context("sessions.redis_url")?;
    let timeouts = Timeouts {
        idle: config.sessions.idle_timeout,
        absolute: config.sessions.absolute_timeout,
    };
    Ok(Some(
        SessionStore::redis(url.expose(), &config.sessions.key_prefix, timeouts)
            .await
            .context("cannot use the Redis at sessions.redis_url")?,
    ))
}

/// Opens the database for an admin command, migrating it first so a fresh file works too.
/// One direct connection, no pool: see [`Db::connect_direct`] for the crash a pool caused.
fn open_db(config: &Config) -> anyhow::Result<Db> {
    let db = Db::connect_direct(&config.database.url)
        .context("cannot open the database (database.url)")?;
    db.migrate().context("cannot migrate the database")?;
    Ok(db)
}

/// Closes the command's connection before the process exits, so that nothing is left running
/// while the process tears down.
fn close_db(db: Db) -> anyhow::Result<()> {
    db.close().context("cannot close the database connection")
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

async fn serve(config: Config) -> anyhow::Result<ExitCode> {
    let public = config.server.public_url.clone();
    let app = web::Application::build(config, web::Listeners::default(), None).await?;
    tracing::info!(port = app.port(), %public, "jitbridge is serving");
    app.run_until_stopped().await?;
    Ok(ExitCode::SUCCESS)
}

async fn accounts_cmd(config: Config, cmd: AccountsCommand) -> anyhow::Result<ExitCode> {
    let db = open_db(&config)?;
    let code = accounts_change(&config, &db, cmd).await;
    close_db(db)?;
    code
}

async fn accounts_change(
    config: &Config,
    db: &Db,
    cmd: AccountsCommand,
) -> anyhow::Result<ExitCode> {
    let actor = format!(
        "cli:{}",
        std::env::var("USER").unwrap_or_else(|_| "unknown".into())
    );
    match cmd {
        AccountsCommand::List => {
            for a in accounts::list(&mut *db.get()?)? {
                println!(
                    "{}  {:<24} {:<8} {:<32} last login {}",
                    a.id,
                    a.username,
                    a.status,
                    a.email.as_deref().unwrap_or("-"),
                    a.last_login_at
                        .map(|t| t.to_string())
                        .unwrap_or_else(|| "never".into())
                );
            }
        }
        AccountsCommand::Disable { username, reason } => {
            let acc = accounts::set_disabled(&mut *db.get()?, &username, Some(&reason), &actor)?;
            println!("disabled {}", acc.username);
            // The disable is committed: from here on a failure must not read as "nothing
            // happened", so it gets its own exit code and says what was done.
            // The disable is committed: a failure to read the snapshot only leaves its delivery
            // to the servers' followers.
            let state = db
                .get()
                .map_err(anyhow::Error::from)
                .and_then(|mut c| Ok(crate::session::snapshot::load(&mut c, &acc.id)?))
                .ok()
                .flatten();
            let revoked = match session_store_for_admin(config).await {
                Ok(Some(store)) => async {
                    let n = store.revoke_account(&acc.id, Some(acc.version)).await?;
                    if let Some(state) = &state {
                        store.put_account(state).await?;
                    }
                    Ok::<_, crate::session::SessionError>(Some(n))
                }
                .await
                .map_err(Into::into),
                Ok(None) => Ok(None),
                Err(e) => Err(e),
            };
            match revoked {
                Ok(Some(n)) => println!("revoked {n} session(s)"),
                Ok(None) => {
                    println!("running servers end its sessions within a second (revocation log)")
                }
                Err(e) => {
                    eprintln!(
                        "error: {} is disabled, but its sessions could not be ended in Redis now \
                         (servers following the revocation log still end them): {e:#}",
                        acc.username
                    );
                    return Ok(ExitCode::from(EXIT_SESSIONS_NOT_REVOKED));
                }
            }
        }
        AccountsCommand::Enable { username } => {
            let acc = accounts::set_disabled(&mut *db.get()?, &username, None, &actor)?;
            println!("enabled {}", acc.username);
            if let Some(state) = crate::session::snapshot::load(&mut *db.get()?, &acc.id)? {
                return deliver_snapshot(config, &state, &username).await;
            }
        }
        AccountsCommand::ReleaseUsername { name } => {
            let quarantine = &config.accounts.username_quarantine;
            let holds = accounts::release_username(&mut *db.get()?, quarantine, &name, &actor)?;
            for h in holds {
                println!(
                    "released {name}: it was held for account {} until {} UTC",
                    h.account_id, h.until
                );
            }
        }
        AccountsCommand::Grant {
            username,
            role,
            duration,
            reason,
        } => {
            let role = RoleName::parse(&role)
                .map_err(|why| anyhow::anyhow!("the role name {role:?} {why}"))?;
            let until = duration
                .map(|d| -> anyhow::Result<_> {
                    anyhow::ensure!(!d.is_zero(), "--for must be longer than zero");
                    let d = time::Duration::try_from(d).context("--for is too long")?;
                    crate::db::now().checked_add(d).context("--for is too long")
                })
                .transpose()?;
            let change = RoleChange::Grant {
                role: &role,
                until,
                reason: &reason,
            };
            let state = accounts::change_role(&mut *db.get()?, &username, change, &actor)?;
            match until {
                Some(until) => {
                    println!("granted {} to {username} until {until} UTC", role.as_str())
                }
                None => println!("granted {} to {username}", role.as_str()),
            }
            return deliver_snapshot(config, &state, &username).await;
        }
        AccountsCommand::RemoveRole {
            username,
            role,
            reason,
        } => {
            let role = RoleName::parse(&role)
                .map_err(|why| anyhow::anyhow!("the role name {role:?} {why}"))?;
            let change = RoleChange::Remove {
                role: &role,
                reason: &reason,
            };
            let state = accounts::change_role(&mut *db.get()?, &username, change, &actor)?;
            println!("removed {} from {username}", role.as_str());
            if state.roles.iter().any(|r| r.name == role.as_str()) {
                println!(
                    "note: {username} still holds {} from the identity provider's claims",
                    role.as_str()
                );
            }
            return deliver_snapshot(config, &state, &username).await;
        }
    }
    Ok(ExitCode::SUCCESS)
}
