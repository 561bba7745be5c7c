use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Jobs::Table)
                    .if_not_exists()
                    .col(string(Jobs::Id).primary_key())
                    .col(string(Jobs::Queue))
                    .col(string(Jobs::Status))
                    .col(integer(Jobs::Priority))
                    .col(integer(Jobs::Attempt))
                    .col(integer(Jobs::MaxAttempts))
                    .col(integer(Jobs::RetryBase))
                    .col(string(Jobs::Method))
                    .col(text(Jobs::Url))
                    .col(text(Jobs::Headers))
                    .col(text(Jobs::Params))
                    .col(string_null(Jobs::BodyKind))
                    .col(blob_null(Jobs::Body))
                    .col(big_integer(Jobs::TimeoutMs))
                    .col(string(Jobs::BackoffStrategy))
                    .col(big_integer(Jobs::BackoffBaseMs))
                    .col(big_integer(Jobs::BackoffMaxMs))
                    .col(big_integer(Jobs::TtlMs))
                    .col(text(Jobs::Tags))
                    .col(string_null(Jobs::IdempotencyKey))
                    .col(big_integer(Jobs::CreatedAt))
                    .col(big_integer(Jobs::ScheduledAt))
                    .col(big_integer(Jobs::RunAt))
                    .col(big_integer_null(Jobs::StartedAt))
                    .col(big_integer_null(Jobs::FinishedAt))
                    .col(big_integer_null(Jobs::LeaseExpiresAt))
                    .col(big_integer_null(Jobs::ExpiresAt))
                    .col(integer_null(Jobs::LastStatusCode))
                    .col(string_null(Jobs::LastErrorClass))
                    .to_owned(),
            )
            .await?;
        // Partial indexes, so a job's index entries change only when it enters or
        // leaves the state the index serves. Both engines accept this SQL as is.
        let db = manager.get_connection();
        for index in [
            // The claim: due queued jobs, highest priority first, then in due order.
            "CREATE INDEX IF NOT EXISTS jobs_claim ON jobs (priority DESC, run_at, id) \
             WHERE status = 'queued'",
            // The rescuer looks for running jobs whose lease ran out.
            "CREATE INDEX IF NOT EXISTS jobs_lease ON jobs (lease_expires_at) WHERE status = 'running'",
            // The cleaner removes finished jobs whose ttl ran out.
            "CREATE INDEX IF NOT EXISTS jobs_expiry ON jobs (expires_at) WHERE expires_at IS NOT NULL",
            // One job per idempotency key; most jobs have none and stay out of it.
            "CREATE UNIQUE INDEX IF NOT EXISTS jobs_idempotency_key ON jobs (idempotency_key) \
             WHERE idempotency_key IS NOT NULL",
        ] {
            db.execute_unprepared(index).await?;
        }
        manager
            .create_index(
                Index::create()
                    .name("jobs_queue")
                    .table(Jobs::Table)
                    .col(Jobs::Queue)
                    .col(Jobs::Id)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(JobTags::Table)
                    .if_not_exists()
                    .col(string(JobTags::Tag))
                    .col(string(JobTags::JobId))
                    .primary_key(Index::create().col(JobTags::Tag).col(JobTags::JobId))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("job_tags_job")
                    .table(JobTags::Table)
                    .col(JobTags::JobId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Attempts::Table)
                    .if_not_exists()
                    .col(string(Attempts::JobId))
                    .col(integer(Attempts::Number))
                    .col(big_integer(Attempts::StartedAt))
                    .col(big_integer(Attempts::FinishedAt))
                    .col(big_integer(Attempts::DurationMs))
                    .col(integer_null(Attempts::StatusCode))
                    .col(text_null(Attempts::Headers))
                    .col(blob_null(Attempts::Body))
                    .col(big_integer(Attempts::BodySize))
                    .col(boolean(Attempts::Truncated))
                    .col(string_null(Attempts::ErrorClass))
                    .col(text_null(Attempts::ErrorMessage))
                    .primary_key(Index::create().col(Attempts::JobId).col(Attempts::Number))
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Attempts::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(JobTags::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Jobs::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Jobs {
    Table,
    Id,
    Queue,
    Status,
    Priority,
    Attempt,
    MaxAttempts,
    RetryBase,
    Method,
    Url,
    Headers,
    Params,
    BodyKind,
    Body,
    TimeoutMs,
    BackoffStrategy,
    BackoffBaseMs,
    BackoffMaxMs,
    TtlMs,
    Tags,
    IdempotencyKey,
    CreatedAt,
    ScheduledAt,
    RunAt,
    StartedAt,
    FinishedAt,
    LeaseExpiresAt,
    ExpiresAt,
    LastStatusCode,
    LastErrorClass,
}

#[derive(DeriveIden)]
enum JobTags {
    Table,
    Tag,
    JobId,
}

#[derive(DeriveIden)]
enum Attempts {
    Table,
    JobId,
    Number,
    StartedAt,
    FinishedAt,
    DurationMs,
    StatusCode,
    Headers,
    Body,
    BodySize,
    Truncated,
    ErrorClass,
    ErrorMessage,
}
