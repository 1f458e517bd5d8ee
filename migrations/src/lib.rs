//! The copr-pools schema, one migration per file. A migration that has landed on `main` is never
//! edited: change the schema with a new file.
//!
//! Both backends run the same steps: SQLite (the embedded default) and PostgreSQL. Engine times
//! that the allocation logic compares are epoch milliseconds (`*_ms`, BIGINT); times that people
//! read are timestamps with time zone.

pub use sea_orm_migration::prelude::*;

mod m20261128_000001_identity_and_audit;
mod m20261128_000002_engine;
mod m20261128_000003_credentials;
mod m20261128_000004_requests_and_usage;
mod m20261128_000005_routing_service;
mod m20261128_000006_pool_history;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261128_000001_identity_and_audit::Migration),
            Box::new(m20261128_000002_engine::Migration),
            Box::new(m20261128_000003_credentials::Migration),
            Box::new(m20261128_000004_requests_and_usage::Migration),
            Box::new(m20261128_000005_routing_service::Migration),
            Box::new(m20261128_000006_pool_history::Migration),
        ]
    }
}
