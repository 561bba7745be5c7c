use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The secrets a job's or a queue's requests are signed with, each sealed as
/// secret headers are (see `crate::secret::signing`); NULL, as every row
/// before, signs nothing.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared("ALTER TABLE jobs ADD COLUMN signing TEXT")
            .await?;
        db.execute_unprepared("ALTER TABLE queues ADD COLUMN signing TEXT")
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared("ALTER TABLE jobs DROP COLUMN signing")
            .await?;
        db.execute_unprepared("ALTER TABLE queues DROP COLUMN signing")
            .await?;
        Ok(())
    }
}
