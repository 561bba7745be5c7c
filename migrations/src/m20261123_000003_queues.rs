use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Named queues: each has a row (made by configuration or on first use) with its
/// limits, its job defaults, whether it is paused, and its rate limiter's bucket, so
/// every process sharing the database applies the same settings.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Queues::Table)
                    .if_not_exists()
                    .col(string(Queues::Name).primary_key())
                    .col(boolean(Queues::Paused))
                    .col(integer_null(Queues::MaxConcurrency))
                    .col(double_null(Queues::RatePerSecond))
                    .col(integer_null(Queues::RateBurst))
                    // The token bucket: tokens left at `tokens_at`.
                    .col(double(Queues::Tokens))
                    .col(big_integer(Queues::TokensAt))
                    .col(big_integer_null(Queues::DefaultTimeoutMs))
                    .col(integer_null(Queues::DefaultMaxAttempts))
                    .col(string_null(Queues::DefaultBackoffStrategy))
                    .col(big_integer_null(Queues::DefaultBackoffBaseMs))
                    .col(big_integer_null(Queues::DefaultBackoffMaxMs))
                    .col(big_integer_null(Queues::DefaultTtlMs))
                    .col(big_integer(Queues::CreatedAt))
                    .col(big_integer(Queues::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        for statement in [
            // Claims go queue by queue now, so the claim index leads with the queue.
            "DROP INDEX IF EXISTS jobs_claim",
            "CREATE INDEX IF NOT EXISTS jobs_claim ON jobs (queue, priority DESC, run_at, id) \
             WHERE status = 'queued'",
            // Dispatches over the last minute. By time first, so each commit appends
            // to one end of it (a queue first would touch a page per queue).
            "CREATE INDEX IF NOT EXISTS job_events_dispatch ON job_events (at, queue) \
             WHERE status = 'running'",
        ] {
            db.execute_unprepared(statement).await?;
        }
        // Every queue in use has a row, `default` included; jobs submitted before
        // queues had rows get theirs here.
        db.execute_unprepared(
            "INSERT INTO queues (name, paused, tokens, tokens_at, created_at, updated_at) \
             SELECT DISTINCT queue, FALSE, 0, 0, 0, 0 FROM jobs \
             WHERE queue NOT IN (SELECT name FROM queues)",
        )
        .await?;
        db.execute_unprepared(
            "INSERT INTO queues (name, paused, tokens, tokens_at, created_at, updated_at) \
             SELECT 'default', FALSE, 0, 0, 0, 0 \
             WHERE NOT EXISTS (SELECT 1 FROM queues WHERE name = 'default')",
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for statement in [
            "DROP INDEX IF EXISTS job_events_dispatch",
            "DROP INDEX IF EXISTS jobs_claim",
            "CREATE INDEX IF NOT EXISTS jobs_claim ON jobs (priority DESC, run_at, id) \
             WHERE status = 'queued'",
        ] {
            db.execute_unprepared(statement).await?;
        }
        manager
            .drop_table(Table::drop().table(Queues::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Queues {
    Table,
    Name,
    Paused,
    MaxConcurrency,
    RatePerSecond,
    RateBurst,
    Tokens,
    TokensAt,
    DefaultTimeoutMs,
    DefaultMaxAttempts,
    DefaultBackoffStrategy,
    DefaultBackoffBaseMs,
    DefaultBackoffMaxMs,
    DefaultTtlMs,
    CreatedAt,
    UpdatedAt,
}
