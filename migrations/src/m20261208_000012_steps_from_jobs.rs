use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// A chain's steps stand where their jobs stand: `chain_steps` keeps only notes
/// of steps that ended without a job to say so (skipped, failed before their
/// call, canceled with their chain), and outputs are read from the jobs'
/// attempts instead of copied. Jobs are found by chain through a partial index
/// that plain jobs stay out of.
///
/// Upgrading: a job a step no longer points at (its chain was run again) is
/// detached from its step; rows of steps waiting, started, or succeeded with
/// their job still there are dropped, since their jobs now say as much.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared(
            "CREATE INDEX IF NOT EXISTS jobs_chain_id ON jobs (chain_id) \
             WHERE chain_id IS NOT NULL",
        )
        .await?;
        db.execute_unprepared(
            "UPDATE jobs SET step_id = NULL WHERE chain_id IS NOT NULL AND step_id IS NOT NULL \
             AND EXISTS (SELECT 1 FROM chain_steps s WHERE s.chain_id = jobs.chain_id \
             AND s.step_id = jobs.step_id AND (s.job_id IS NULL OR s.job_id <> jobs.id))",
        )
        .await?;
        db.execute_unprepared(
            "DELETE FROM chain_steps WHERE status IN ('waiting', 'started') \
             OR (status = 'succeeded' AND EXISTS \
             (SELECT 1 FROM jobs j WHERE j.id = chain_steps.job_id))",
        )
        .await?;
        manager
            .drop_index(
                Index::drop()
                    .name("chain_steps_job_id")
                    .table(ChainSteps::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(ChainSteps::Table)
                    .drop_column(ChainSteps::Output)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(ChainSteps::Table)
                    .add_column(text_null(ChainSteps::Output))
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
        manager
            .get_connection()
            .execute_unprepared("DROP INDEX IF EXISTS jobs_chain_id")
            .await?;
        Ok(())
    }
}

#[derive(DeriveIden)]
enum ChainSteps {
    Table,
    JobId,
    Output,
}
