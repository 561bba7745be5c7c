use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Templates: named, versioned calls with references to an input, the settings
/// their jobs run with, and the contract they keep. A version never changes once
/// created; deactivating one stops new uses of it.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Templates::Table)
                    .if_not_exists()
                    .col(string(Templates::Name))
                    .col(integer(Templates::Version))
                    .col(text(Templates::Description))
                    // JSON: the call with its references, and its job's settings.
                    .col(text(Templates::Call))
                    .col(text(Templates::Job))
                    // `name/version` of the contract it keeps.
                    .col(string_null(Templates::Contract))
                    .col(boolean(Templates::Active))
                    .col(big_integer(Templates::CreatedAt))
                    .col(big_integer_null(Templates::DeactivatedAt))
                    .primary_key(Index::create().col(Templates::Name).col(Templates::Version))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Templates::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Templates {
    Table,
    Name,
    Version,
    Description,
    Call,
    Job,
    Contract,
    Active,
    CreatedAt,
    DeactivatedAt,
}
