use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The log of status changes that watchers read and resume from. `seq` is the
/// cursor: it only grows (AUTOINCREMENT on SQLite, a sequence on PostgreSQL), so a
/// cursor is never reused after old events are pruned.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(JobEvents::Table)
                    .if_not_exists()
                    .col(big_integer(JobEvents::Seq).auto_increment().primary_key())
                    .col(string(JobEvents::JobId))
                    .col(string(JobEvents::Status))
                    .col(integer(JobEvents::Attempt))
                    .col(big_integer(JobEvents::At))
                    .col(string(JobEvents::Queue))
                    .col(text(JobEvents::Tags))
                    .col(integer_null(JobEvents::StatusCode))
                    .col(string_null(JobEvents::ErrorClass))
                    .col(big_integer_null(JobEvents::NextAttemptAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("job_events_job")
                    .table(JobEvents::Table)
                    .col(JobEvents::JobId)
                    .col(JobEvents::Seq)
                    .to_owned(),
            )
            .await?;
        // What the log has forgotten: cursors at or below `pruned_through` cannot
        // resume.
        manager
            .create_table(
                Table::create()
                    .table(EventLog::Table)
                    .if_not_exists()
                    .col(integer(EventLog::Id).primary_key())
                    .col(big_integer(EventLog::PrunedThrough))
                    .to_owned(),
            )
            .await?;
        manager
            .get_connection()
            .execute_unprepared("INSERT INTO event_log (id, pruned_through) VALUES (1, 0)")
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(EventLog::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(JobEvents::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum JobEvents {
    Table,
    Seq,
    JobId,
    Status,
    Attempt,
    At,
    Queue,
    Tags,
    StatusCode,
    ErrorClass,
    NextAttemptAt,
}

#[derive(DeriveIden)]
enum EventLog {
    Table,
    Id,
    PrunedThrough,
}
