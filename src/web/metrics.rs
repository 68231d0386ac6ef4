//! `GET /metrics`: Prometheus text format. Sweep and account figures are read from the
//! database at scrape time, so sweeps run by the CLI or by another replica count too.

use super::AppState;
use crate::db::models::STATUS_ACTIVE;
use crate::db::schema::{accounts, identities, sweep_runs};
use crate::db::{DbConnection, DbError};
use actix_web::{HttpResponse, web};
use diesel::dsl::{count_star, sql};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

type Labels = Vec<(String, String)>;

#[derive(Default)]
struct Snapshot {
    runs: Vec<(String, String, i64)>,
    totals: Vec<(String, i64, i64, i64, i64)>,
    last: Vec<(String, f64, i64)>,
    orphaned: Vec<(String, i64)>,
    accounts: Vec<(String, i64)>,
}

fn snapshot(c: &mut DbConnection, connections: &[String]) -> Result<Snapshot, DbError> {
    let mut s = Snapshot {
        runs: sweep_runs::table
            .group_by((sweep_runs::connection, sweep_runs::outcome))
            .select((sweep_runs::connection, sweep_runs::outcome, count_star()))
            .load(c)?,
        accounts: accounts::table
            .group_by(accounts::status)
            .select((accounts::status, count_star()))
            .load(c)?,
        ..Default::default()
    };
    for name in connections {
        let totals: (Option<i64>, Option<i64>, Option<i64>, Option<i64>) = sweep_runs::table
            .filter(sweep_runs::connection.eq(name))
            .select((
                total("CAST(SUM(disabled) AS BIGINT)"),
                total("CAST(SUM(reactivated) AS BIGINT)"),
                total("CAST(SUM(purged) AS BIGINT)"),
                total("CAST(SUM(deprovision_seconds_sum) AS BIGINT)"),
            ))
            .get_result(c)?;
        s.totals.push((
            name.clone(),
            totals.0.unwrap_or(0),
            totals.1.unwrap_or(0),
            totals.2.unwrap_or(0),
            totals.3.unwrap_or(0),
        ));
        let last: Option<(time::PrimitiveDateTime, time::PrimitiveDateTime, i64)> =
            sweep_runs::table
                .filter(sweep_runs::connection.eq(name))
                .filter(sweep_runs::outcome.eq("applied"))
                .order(sweep_runs::id.desc())
                .select((
                    sweep_runs::started_at,
                    sweep_runs::finished_at,
                    sweep_runs::seen,
                ))
                .first(c)
                .optional()?;
        if let Some((start, end, seen)) = last {
            s.last
                .push((name.clone(), (end - start).as_seconds_f64(), seen));
        }
        let orphaned: i64 = identities::table
            .inner_join(accounts::table)
            .filter(identities::connection.eq(name))
            .filter(identities::missing_since.is_not_null())
            .filter(accounts::status.eq(STATUS_ACTIVE))
            .count()
            .get_result(c)?;
        s.orphaned.push((name.clone(), orphaned));
    }
    Ok(s)
}

/// SUM of a BIGINT column as BIGINT (diesel types a plain SUM as NUMERIC).
fn total(sql_text: &'static str) -> diesel::expression::SqlLiteral<Nullable<BigInt>> {
    sql::<Nullable<BigInt>>(sql_text)
}

fn gauge_family(reg: &mut Registry, name: &str, help: &str) -> Family<Labels, Gauge> {
    let f = Family::<Labels, Gauge>::default();
    reg.register(name, help, f.clone());
    f
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let names: Vec<String> = state
        .config
        .connections
        .iter()
        .map(|c| c.name.clone())
        .collect();
    let snap = match state.db.run(move |c| snapshot(c, &names)).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "metrics: database unavailable");
            return HttpResponse::ServiceUnavailable().body("database unavailable");
        }
    };
    let mut reg = Registry::with_prefix("jitbridge");
    let runs = gauge_family(
        &mut reg,
        "sweep_runs",
        "Sweeps recorded, by outcome (applied, dry-run, aborted)",
    );
    for (conn, outcome, n) in &snap.runs {
        runs.get_or_create(&labels(&[("connection", conn), ("outcome", outcome)]))
            .set(*n);
    }
    let disabled = gauge_family(
        &mut reg,
        "sweep_disabled_accounts",
        "Accounts disabled by sweeps",
    );
    let reactivated = gauge_family(
        &mut reg,
        "sweep_reactivated_accounts",
        "Accounts reactivated by sweeps",
    );
    let purged = gauge_family(
        &mut reg,
        "sweep_purged_accounts",
        "Accounts purged after the retention period",
    );
    let ttd_sum = gauge_family(
        &mut reg,
        "time_to_deprovision_seconds_sum",
        "Sum over disabled accounts of the time from first seen missing to disabled",
    );
    let ttd_count = gauge_family(
        &mut reg,
        "time_to_deprovision_seconds_count",
        "Number of accounts in time_to_deprovision_seconds_sum",
    );
    for (conn, d, r, p, secs) in &snap.totals {
        let l = labels(&[("connection", conn)]);
        disabled.get_or_create(&l).set(*d);
        reactivated.get_or_create(&l).set(*r);
        purged.get_or_create(&l).set(*p);
        ttd_sum.get_or_create(&l).set(*secs);
        ttd_count.get_or_create(&l).set(*d);
    }
    let duration = Family::<Labels, Gauge<f64, AtomicU64>>::default();
    reg.register(
        "sweep_last_duration_seconds",
        "Duration of the last applied sweep",
        duration.clone(),
    );
    let seen = gauge_family(
        &mut reg,
        "sweep_last_seen_entries",
        "Directory entries seen by the last applied sweep",
    );
    for (conn, secs, n) in &snap.last {
        let l = labels(&[("connection", conn)]);
        duration.get_or_create(&l).set(*secs);
        seen.get_or_create(&l).set(*n);
    }
    let orphaned = gauge_family(
        &mut reg,
        "orphaned_accounts",
        "Active accounts absent from the last successful directory listing",
    );
    for (conn, n) in &snap.orphaned {
        orphaned
            .get_or_create(&labels(&[("connection", conn)]))
            .set(*n);
    }
    let accounts = gauge_family(&mut reg, "accounts", "Local accounts by status");
    for (status, n) in &snap.accounts {
        accounts
            .get_or_create(&labels(&[("status", status)]))
            .set(*n);
    }
    let mut body = String::new();
    if encode(&mut body, &reg).is_err() {
        return HttpResponse::InternalServerError().finish();
    }
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(body)
}
