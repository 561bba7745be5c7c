use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The trace a job or a schedule was submitted in, when tracing is on: the W3C
/// `traceparent` of the span that accepted it, then a newline and its `tracestate`
/// when it has one. A job's attempts are its children, whichever replica runs them
/// and after any restart; a schedule's runs start traces of their own, linked to it.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite takes one column per ALTER TABLE.
        for table in [Jobs::Table.into_iden(), Schedules::Table.into_iden()] {
            manager
                .alter_table(
                    Table::alter()
                        .table(table)
                        .add_column(text_null(Alias::new("trace_context")))
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [Jobs::Table.into_iden(), Schedules::Table.into_iden()] {
            manager
                .alter_table(
                    Table::alter()
                        .table(table)
                        .drop_column(Alias::new("trace_context"))
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Jobs {
    Table,
}

#[derive(DeriveIden)]
enum Schedules {
    Table,
}
