//! The one schema of jobqueue, for SQLite and PostgreSQL alike. Timestamps are
//! milliseconds since the Unix epoch in BIGINT columns, so both engines compare
//! and index them the same way.

pub use sea_orm_migration::prelude::*;

mod m20261123_000001_jobs;
mod m20261123_000002_job_events;
mod m20261123_000003_queues;
mod m20261123_000004_schedules;
mod m20261204_000005_compact_log;
mod m20261205_000006_trace_context;
mod m20261205_000007_contracts;
mod m20261206_000008_chains;
mod m20261206_000009_templates;
mod m20261207_000010_scheduled_chains;
mod m20261207_000011_api_keys;
mod m20261208_000012_steps_from_jobs;
mod m20261208_000013_schedule_contract;
mod m20261208_000014_audit_log;
mod m20261209_000015_namespaces;
mod m20261209_000016_queue_redirects;
mod m20261210_000017_signing;
mod m20261210_000018_hosts;
mod m20261210_000019_job_redirects;
mod m20261210_000020_queue_destinations;
mod m20261211_000021_job_states;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261123_000001_jobs::Migration),
            Box::new(m20261123_000002_job_events::Migration),
            Box::new(m20261123_000003_queues::Migration),
            Box::new(m20261123_000004_schedules::Migration),
            Box::new(m20261204_000005_compact_log::Migration),
            Box::new(m20261205_000006_trace_context::Migration),
            Box::new(m20261205_000007_contracts::Migration),
            Box::new(m20261206_000008_chains::Migration),
            Box::new(m20261206_000009_templates::Migration),
            Box::new(m20261207_000010_scheduled_chains::Migration),
            Box::new(m20261207_000011_api_keys::Migration),
            Box::new(m20261208_000012_steps_from_jobs::Migration),
            Box::new(m20261208_000013_schedule_contract::Migration),
            Box::new(m20261208_000014_audit_log::Migration),
            Box::new(m20261209_000015_namespaces::Migration),
            Box::new(m20261209_000016_queue_redirects::Migration),
            Box::new(m20261210_000017_signing::Migration),
            Box::new(m20261210_000018_hosts::Migration),
            Box::new(m20261210_000019_job_redirects::Migration),
            Box::new(m20261210_000020_queue_destinations::Migration),
            Box::new(m20261211_000021_job_states::Migration),
        ]
    }
}
