use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Each destination host's state, shared by every process: calls in flight, its
/// rate bucket, its circuit breaker, and the time it asked for with Retry-After.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("hosts")
                    .col(ColumnDef::new("host").string().not_null().primary_key())
                    .col(
                        ColumnDef::new("running")
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .col(ColumnDef::new("tokens").double().not_null())
                    .col(ColumnDef::new("tokens_at").big_integer().not_null())
                    .col(
                        ColumnDef::new("failures")
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .col(ColumnDef::new("open_until").big_integer().null())
                    .col(ColumnDef::new("probe").string().null())
                    .col(ColumnDef::new("slow_until").big_integer().null())
                    .col(ColumnDef::new("updated_at").big_integer().not_null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("hosts").to_owned())
            .await
    }
}
