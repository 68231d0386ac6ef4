//! One integration test binary (one link step), one file per feature.

mod assertion;
mod backchannel;
mod bad_input;
mod cli;
mod concurrency;
mod demo;
mod direct;
mod helpers;
mod live_roles;
mod login_service;
mod login_state;
mod logout;
mod near_cache;
mod nginx;
mod oidc_flow;
mod oidc_login;
mod operator;
mod private_redis;
mod rate_limits;
mod replicas;
mod revocations;
mod saml;
mod session_store;
mod sweeper;
mod usernames;
