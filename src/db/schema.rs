//! Table definitions shared by both backends (kept by hand: the migrations are the source).

diesel::table! {
    accounts (id) {
        id -> Text,
        username -> Text,
        email -> Nullable<Text>,
        display_name -> Nullable<Text>,
        attributes -> Text,
        status -> Text,
        disabled_reason -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        last_login_at -> Nullable<Timestamp>,
        disabled_at -> Nullable<Timestamp>,
        version -> BigInt,
        disabled_by -> Nullable<Text>,
        revision -> BigInt,
    }
}

diesel::table! {
    identities (connection, subject) {
        connection -> Text,
        subject -> Text,
        account_id -> Text,
        created_at -> Timestamp,
        last_login_at -> Nullable<Timestamp>,
        last_seen_in_directory -> Nullable<Timestamp>,
        missing_since -> Nullable<Timestamp>,
        missing_count -> Integer,
    }
}

diesel::table! {
    account_roles (account_id, role, source) {
        account_id -> Text,
        role -> Text,
        source -> Text,
        granted_at -> Timestamp,
        expires_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    audit_events (id) {
        id -> BigInt,
        at -> Timestamp,
        actor -> Text,
        action -> Text,
        outcome -> Text,
        account_id -> Nullable<Text>,
        connection -> Nullable<Text>,
        details -> Text,
        request_id -> Nullable<Text>,
    }
}

diesel::joinable!(identities -> accounts (account_id));
diesel::joinable!(account_roles -> accounts (account_id));
diesel::allow_tables_to_appear_in_same_query!(
    accounts,
    identities,
    account_roles,
    audit_events,
    sweep_runs,
    sweep_locks,
    session_revocations
);

diesel::table! {
    sweep_runs (id) {
        id -> BigInt,
        connection -> Text,
        started_at -> Timestamp,
        finished_at -> Timestamp,
        outcome -> Text,
        reason -> Nullable<Text>,
        seen -> BigInt,
        missing -> BigInt,
        disabled -> BigInt,
        reactivated -> BigInt,
        purged -> BigInt,
        deprovision_seconds_sum -> BigInt,
    }
}

diesel::table! {
    sweep_locks (connection) {
        connection -> Text,
        holder -> Text,
        expires_at -> Timestamp,
    }
}

diesel::table! {
    session_revocations (id) {
        id -> BigInt,
        account_id -> Text,
        at -> Timestamp,
        epoch -> BigInt,
        revoke -> Bool,
    }
}

diesel::table! {
    username_quarantine (name_hash) {
        name_hash -> Text,
        account_id -> Text,
        held_until -> Timestamp,
        created_at -> Timestamp,
    }
}

diesel::table! {
    generated_keys (name) {
        name -> Text,
        value -> Text,
        created_at -> Timestamp,
    }
}
