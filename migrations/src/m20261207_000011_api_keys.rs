use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// API keys: each one's id, namespace and scopes, and the SHA-256 of its secret
/// (never the secret). `source` says whether it came from the keys file or from
/// `KeyService`; a revoked key keeps its row, with when it was revoked.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ApiKeys::Table)
                    .if_not_exists()
                    .col(string(ApiKeys::Id).primary_key())
                    .col(string(ApiKeys::Namespace))
                    // Space-separated scope names.
                    .col(text(ApiKeys::Scopes))
                    // Hex SHA-256 of the secret.
                    .col(string(ApiKeys::SecretHash))
                    .col(text(ApiKeys::Description))
                    .col(string(ApiKeys::Source))
                    .col(big_integer(ApiKeys::CreatedAt))
                    .col(big_integer(ApiKeys::ExpiresAt))
                    .col(big_integer_null(ApiKeys::RevokedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("api_keys_namespace")
                    .table(ApiKeys::Table)
                    .col(ApiKeys::Namespace)
                    .col(ApiKeys::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ApiKeys::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum ApiKeys {
    Table,
    Id,
    Namespace,
    Scopes,
    SecretHash,
    Description,
    Source,
    CreatedAt,
    ExpiresAt,
    RevokedAt,
}
