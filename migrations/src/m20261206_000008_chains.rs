use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Chains: several calls run as one, each step's call an ordinary job. A chain
/// keeps its steps as submitted (with the contract versions pinned) and where each
/// step stands; a step's job names its chain and step, and the contract whose
/// output schema its response must fit.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Chains::Table)
                    .if_not_exists()
                    .col(string(Chains::Id).primary_key())
                    .col(string(Chains::Status))
                    // JSON: the chain's input, and its steps as checked at submit.
                    .col(text(Chains::Input))
                    .col(text(Chains::Definition))
                    // JSON array of tags.
                    .col(text(Chains::Tags))
                    .col(string_null(Chains::IdempotencyKey))
                    .col(big_integer(Chains::TtlMs))
                    .col(big_integer(Chains::CreatedAt))
                    .col(big_integer(Chains::UpdatedAt))
                    .col(big_integer_null(Chains::FinishedAt))
                    .col(big_integer_null(Chains::ExpiresAt))
                    .col(string_null(Chains::ScheduleId))
                    .col(text_null(Chains::TraceContext))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("chains_idempotency_key")
                    .table(Chains::Table)
                    .col(Chains::IdempotencyKey)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("chains_expires_at")
                    .table(Chains::Table)
                    .col(Chains::ExpiresAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ChainSteps::Table)
                    .if_not_exists()
                    .col(string(ChainSteps::ChainId))
                    .col(string(ChainSteps::StepId))
                    .col(integer(ChainSteps::Position))
                    .col(string(ChainSteps::Status))
                    .col(string_null(ChainSteps::JobId))
                    // Why it was skipped, or why it failed before or after its call.
                    .col(text_null(ChainSteps::Reason))
                    .col(string_null(ChainSteps::ErrorClass))
                    // JSON {status, headers, body} of a step that succeeded.
                    .col(text_null(ChainSteps::Output))
                    .col(big_integer_null(ChainSteps::StartedAt))
                    .col(big_integer_null(ChainSteps::FinishedAt))
                    .primary_key(
                        Index::create()
                            .col(ChainSteps::ChainId)
                            .col(ChainSteps::StepId),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("chain_steps_job_id")
                    .table(ChainSteps::Table)
                    .col(ChainSteps::JobId)
                    .to_owned(),
            )
            .await?;
        // SQLite takes one column per ALTER TABLE.
        for column in ["chain_id", "step_id", "contract"] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Jobs::Table)
                        .add_column(string_null(Alias::new(column)))
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in ["chain_id", "step_id", "contract"] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Jobs::Table)
                        .drop_column(Alias::new(column))
                        .to_owned(),
                )
                .await?;
        }
        manager
            .drop_table(Table::drop().table(ChainSteps::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Chains::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Jobs {
    Table,
}

#[derive(DeriveIden)]
enum Chains {
    Table,
    Id,
    Status,
    Input,
    Definition,
    Tags,
    IdempotencyKey,
    TtlMs,
    CreatedAt,
    UpdatedAt,
    FinishedAt,
    ExpiresAt,
    ScheduleId,
    TraceContext,
}

#[derive(DeriveIden)]
enum ChainSteps {
    Table,
    ChainId,
    StepId,
    Position,
    Status,
    JobId,
    Reason,
    ErrorClass,
    Output,
    StartedAt,
    FinishedAt,
}
