use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The audit log: one row per change a call asked of the service (see
/// `proto/jobqueue/v1/audit.proto`), written in the transaction of the change.
/// Ids are `a` and a ULID, so they sort as written: entries are read by
/// namespace, newest first, and removed by age through the primary key (a ULID
/// starts with its time), with no index of their own to keep up.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AuditEntries::Table)
                    .if_not_exists()
                    .col(string(AuditEntries::Id).primary_key())
                    .col(big_integer(AuditEntries::At))
                    .col(string(AuditEntries::Namespace))
                    .col(string_null(AuditEntries::KeyId))
                    .col(string_null(AuditEntries::Peer))
                    .col(string(AuditEntries::Action))
                    .col(string(AuditEntries::Object))
                    .col(string(AuditEntries::Outcome))
                    .col(text_null(AuditEntries::Detail))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("audit_entries_namespace")
                    .table(AuditEntries::Table)
                    .col(AuditEntries::Namespace)
                    .col(AuditEntries::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(AuditEntries::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum AuditEntries {
    Table,
    Id,
    At,
    Namespace,
    KeyId,
    Peer,
    Action,
    Object,
    Outcome,
    Detail,
}
