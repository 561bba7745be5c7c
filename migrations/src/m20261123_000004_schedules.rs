use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Schedules: a timetable and the job each run submits. A run is an ordinary job
/// that carries the schedule's id and, when the timetable made it due, its due
/// time (`fire_at`); its events carry the schedule's id too, so watchers can
/// follow a schedule.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Schedules::Table)
                    .if_not_exists()
                    .col(string(Schedules::Id).primary_key())
                    .col(text(Schedules::Description))
                    // `cron`, `interval` or `once`, with its one matching column.
                    .col(string(Schedules::Kind))
                    .col(string_null(Schedules::Cron))
                    .col(big_integer_null(Schedules::IntervalMs))
                    .col(big_integer_null(Schedules::OnceAt))
                    .col(string(Schedules::TimeZone))
                    .col(big_integer_null(Schedules::StartAt))
                    .col(big_integer_null(Schedules::EndAt))
                    .col(big_integer(Schedules::CatchupWindowMs))
                    // `allow` or `skip`: what a due time does while a run is unfinished.
                    .col(string(Schedules::Overlap))
                    .col(big_integer(Schedules::SkippedCount))
                    .col(boolean(Schedules::Paused))
                    // The next due time; NULL while paused or when none is left.
                    .col(big_integer_null(Schedules::NextFireAt))
                    .col(big_integer(Schedules::RunCount))
                    .col(big_integer_null(Schedules::LastFireAt))
                    // The job template, in the jobs table's terms.
                    .col(string(Schedules::Queue))
                    .col(integer(Schedules::Priority))
                    .col(string(Schedules::Method))
                    .col(text(Schedules::Url))
                    .col(text(Schedules::Headers))
                    .col(text(Schedules::Params))
                    .col(string_null(Schedules::BodyKind))
                    .col(blob_null(Schedules::Body))
                    .col(big_integer(Schedules::TimeoutMs))
                    .col(integer(Schedules::MaxAttempts))
                    .col(string(Schedules::BackoffStrategy))
                    .col(big_integer(Schedules::BackoffBaseMs))
                    .col(big_integer(Schedules::BackoffMaxMs))
                    .col(big_integer(Schedules::TtlMs))
                    .col(text(Schedules::Tags))
                    // Which job settings the template left to its queue's defaults.
                    .col(integer(Schedules::Inherit))
                    .col(big_integer(Schedules::CreatedAt))
                    .col(big_integer(Schedules::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        // SQLite takes one column per ALTER TABLE.
        for (table, column) in [
            (Jobs::Table.into_iden(), Jobs::ScheduleId.into_iden()),
            (
                JobEvents::Table.into_iden(),
                JobEvents::ScheduleId.into_iden(),
            ),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(table)
                        .add_column(string_null(column))
                        .to_owned(),
                )
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(Jobs::Table)
                    .add_column(big_integer_null(Jobs::FireAt))
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        for statement in [
            // The writer's next wake-up: the earliest due schedule.
            "CREATE INDEX IF NOT EXISTS schedules_due ON schedules (next_fire_at) \
             WHERE next_fire_at IS NOT NULL",
            // A schedule's runs, newest first, and every schedule's.
            "CREATE INDEX IF NOT EXISTS jobs_schedule ON jobs (schedule_id, id) \
             WHERE schedule_id IS NOT NULL",
            "CREATE INDEX IF NOT EXISTS jobs_scheduled ON jobs (id) \
             WHERE schedule_id IS NOT NULL",
            // A schedule's unfinished runs, for its overlap policy: small, whatever
            // the number of finished runs kept.
            "CREATE INDEX IF NOT EXISTS jobs_schedule_unfinished ON jobs (schedule_id) \
             WHERE schedule_id IS NOT NULL AND status IN ('queued', 'running')",
        ] {
            db.execute_unprepared(statement).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for statement in [
            "DROP INDEX IF EXISTS jobs_schedule_unfinished",
            "DROP INDEX IF EXISTS jobs_scheduled",
            "DROP INDEX IF EXISTS jobs_schedule",
        ] {
            db.execute_unprepared(statement).await?;
        }
        for (table, column) in [
            (Jobs::Table.into_iden(), Jobs::FireAt.into_iden()),
            (Jobs::Table.into_iden(), Jobs::ScheduleId.into_iden()),
            (
                JobEvents::Table.into_iden(),
                JobEvents::ScheduleId.into_iden(),
            ),
        ] {
            manager
                .alter_table(Table::alter().table(table).drop_column(column).to_owned())
                .await?;
        }
        manager
            .drop_table(Table::drop().table(Schedules::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Schedules {
    Table,
    Id,
    Description,
    Kind,
    Cron,
    IntervalMs,
    OnceAt,
    TimeZone,
    StartAt,
    EndAt,
    CatchupWindowMs,
    Overlap,
    SkippedCount,
    Paused,
    NextFireAt,
    RunCount,
    LastFireAt,
    Queue,
    Priority,
    Method,
    Url,
    Headers,
    Params,
    BodyKind,
    Body,
    TimeoutMs,
    MaxAttempts,
    BackoffStrategy,
    BackoffBaseMs,
    BackoffMaxMs,
    TtlMs,
    Tags,
    Inherit,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Jobs {
    Table,
    ScheduleId,
    FireAt,
}

#[derive(DeriveIden)]
enum JobEvents {
    Table,
    ScheduleId,
}
