use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Schedules that fire chains. A schedule keeps the chain as the client sees it
/// (`chain_spec`: the `ChainSpec` message, its versions pinned) and as each run
/// starts it (`chain`: JSON of the input and the steps as checked). A chain
/// records the due time it fired for, and is found by its schedule.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite takes one column per ALTER TABLE.
        manager
            .alter_table(
                Table::alter()
                    .table(Schedules::Table)
                    .add_column(blob_null(Schedules::ChainSpec))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Schedules::Table)
                    .add_column(text_null(Schedules::Chain))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Chains::Table)
                    .add_column(big_integer_null(Chains::FireAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("chains_schedule_id")
                    .table(Chains::Table)
                    .col(Chains::ScheduleId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("chains_schedule_id")
                    .table(Chains::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Chains::Table)
                    .drop_column(Chains::FireAt)
                    .to_owned(),
            )
            .await?;
        for column in [Schedules::Chain, Schedules::ChainSpec] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Schedules::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Schedules {
    Table,
    ChainSpec,
    Chain,
}

#[derive(DeriveIden)]
enum Chains {
    Table,
    FireAt,
    ScheduleId,
}
