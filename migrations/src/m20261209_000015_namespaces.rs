use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The tables whose rows belong to a namespace and did not say so.
const OWNED: [&str; 6] = [
    "jobs",
    "queues",
    "schedules",
    "chains",
    "contracts",
    "templates",
];

/// Every object belongs to a namespace (see `crate::namespace` in the service):
/// a `namespace` column on each table of objects, `default` for every row
/// written before, so an existing database upgrades without rewriting a row and
/// everything in it lands in the namespace the open service acts in. Names (of
/// queues, schedules, contracts and templates) are stored qualified outside the
/// default namespace, where they are stored as they were. Idempotency keys are
/// unique per namespace. `namespace_buckets` holds the rate limiter of each
/// namespace given a rate (`JOBQUEUE_NAMESPACE_LIMITS`), as `queues` holds each
/// queue's.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for table in OWNED {
            db.execute_unprepared(&format!(
                "ALTER TABLE {table} ADD COLUMN namespace VARCHAR NOT NULL DEFAULT 'default'"
            ))
            .await?;
        }
        for statement in [
            "CREATE TABLE namespace_buckets (namespace VARCHAR NOT NULL PRIMARY KEY, \
             tokens DOUBLE PRECISION NOT NULL, tokens_at BIGINT NOT NULL)",
            "DROP INDEX IF EXISTS jobs_idempotency_key",
            "CREATE UNIQUE INDEX jobs_idempotency_key ON jobs (namespace, idempotency_key) \
             WHERE idempotency_key IS NOT NULL",
            "DROP INDEX IF EXISTS chains_idempotency_key",
            "CREATE UNIQUE INDEX chains_idempotency_key ON chains (namespace, idempotency_key) \
             WHERE idempotency_key IS NOT NULL",
        ] {
            db.execute_unprepared(statement).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for statement in [
            "DROP TABLE namespace_buckets",
            "DROP INDEX IF EXISTS jobs_idempotency_key",
            "CREATE UNIQUE INDEX jobs_idempotency_key ON jobs (idempotency_key) \
             WHERE idempotency_key IS NOT NULL",
            "DROP INDEX IF EXISTS chains_idempotency_key",
            "CREATE UNIQUE INDEX chains_idempotency_key ON chains (idempotency_key)",
        ] {
            db.execute_unprepared(statement).await?;
        }
        for table in OWNED {
            db.execute_unprepared(&format!("ALTER TABLE {table} DROP COLUMN namespace"))
                .await?;
        }
        Ok(())
    }
}
