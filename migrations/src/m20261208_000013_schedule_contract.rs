use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The contract a schedule's job keeps when a template made it (`name/version`, as
/// a job's `contract`): each run's job holds its response to the template's output
/// contract as a submitted one does. Schedules written before have none.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Schedules::Table)
                    .add_column(string_null(Schedules::Contract))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Schedules::Table)
                    .drop_column(Schedules::Contract)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum Schedules {
    Table,
    Contract,
}
