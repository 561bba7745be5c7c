use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Contracts: named, versioned JSON Schema documents. A version never changes once
/// created; deactivating one stops new references to it.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Contracts::Table)
                    .if_not_exists()
                    .col(string(Contracts::Name))
                    .col(integer(Contracts::Version))
                    .col(text(Contracts::Description))
                    // JSON text; NULL when the contract says nothing of it.
                    .col(text_null(Contracts::InputSchema))
                    .col(text_null(Contracts::OutputSchema))
                    .col(boolean(Contracts::Active))
                    .col(big_integer(Contracts::CreatedAt))
                    .col(big_integer_null(Contracts::DeactivatedAt))
                    .primary_key(Index::create().col(Contracts::Name).col(Contracts::Version))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Contracts::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Contracts {
    Table,
    Name,
    Version,
    Description,
    InputSchema,
    OutputSchema,
    Active,
    CreatedAt,
    DeactivatedAt,
}
