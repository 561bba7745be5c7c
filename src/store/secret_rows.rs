//! The rows that keep sealed values (secret headers, signing secrets), read and rewritten a page at a time by
//! `jobqueue secrets rekey` (beside a running service: each row is replaced only
//! if it still reads as it was read).

use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::job_tables::definitions;
use super::{Store, StoreError, jobs, queues, schedules, sql};

/// A column of sealed values: a call's headers, or signing secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealedColumn {
    JobHeaders,
    ScheduleHeaders,
    JobSigning,
    QueueSigning,
}

impl SealedColumn {
    pub const ALL: [SealedColumn; 4] = [
        SealedColumn::JobHeaders,
        SealedColumn::ScheduleHeaders,
        SealedColumn::JobSigning,
        SealedColumn::QueueSigning,
    ];
}

impl Store {
    /// Up to `limit` rows after the id `after` that hold `column`: (id, value).
    pub async fn sealed_page(
        &self,
        column: SealedColumn,
        after: &str,
        limit: u64,
    ) -> Result<Vec<(String, String)>, StoreError> {
        Ok(match column {
            SealedColumn::JobHeaders | SealedColumn::JobSigning => {
                let held = if column == SealedColumn::JobHeaders {
                    jobs::Column::Headers
                } else {
                    jobs::Column::Signing
                };
                jobs::Entity::find()
                    .select_only()
                    .columns([jobs::Column::Id, held])
                    .filter(jobs::Column::Id.gt(after))
                    .filter(held.is_not_null())
                    .filter(held.ne("{}"))
                    .order_by_asc(jobs::Column::Id)
                    .limit(limit)
                    .into_tuple()
                    .all(&self.reader)
                    .await?
            }
            SealedColumn::ScheduleHeaders => {
                schedules::Entity::find()
                    .select_only()
                    .columns([schedules::Column::Id, schedules::Column::Headers])
                    .filter(schedules::Column::Id.gt(after))
                    .filter(schedules::Column::Headers.ne("{}"))
                    .order_by_asc(schedules::Column::Id)
                    .limit(limit)
                    .into_tuple()
                    .all(&self.reader)
                    .await?
            }
            SealedColumn::QueueSigning => {
                queues::Entity::find()
                    .select_only()
                    .columns([queues::Column::Name, queues::Column::Signing])
                    .filter(queues::Column::Name.gt(after))
                    .filter(queues::Column::Signing.is_not_null())
                    .order_by_asc(queues::Column::Name)
                    .limit(limit)
                    .into_tuple()
                    .all(&self.reader)
                    .await?
            }
        })
    }

    /// Replaces each row's value of `column`, `(id, old, new)`, if it still reads
    /// `old`: how many did (a row changed meanwhile is left for the next pass).
    pub async fn replace_sealed(
        &self,
        column: SealedColumn,
        rows: &[(String, String, String)],
    ) -> Result<u64, StoreError> {
        let writer = self.open_writer().await?;
        let mut replaced = 0;
        for (id, old, new) in rows {
            let result = match column {
                SealedColumn::JobHeaders | SealedColumn::JobSigning => {
                    // The definitions' table: `jobs` may be a view (see job_tables).
                    let held = if column == SealedColumn::JobHeaders {
                        "headers"
                    } else {
                        "signing"
                    };
                    let text = format!(
                        "UPDATE {} SET {held} = ? WHERE id = ? AND {held} = ?",
                        definitions(self.backend)
                    );
                    writer
                        .execute_raw(sql(
                            self.backend,
                            &text,
                            vec![new.as_str().into(), id.as_str().into(), old.as_str().into()],
                        ))
                        .await?
                        .rows_affected()
                }
                SealedColumn::ScheduleHeaders => {
                    schedules::Entity::update_many()
                        .col_expr(schedules::Column::Headers, Expr::value(new))
                        .filter(schedules::Column::Id.eq(id))
                        .filter(schedules::Column::Headers.eq(old))
                        .exec(&writer)
                        .await?
                        .rows_affected
                }
                SealedColumn::QueueSigning => {
                    queues::Entity::update_many()
                        .col_expr(queues::Column::Signing, Expr::value(new))
                        .filter(queues::Column::Name.eq(id))
                        .filter(queues::Column::Signing.eq(old))
                        .exec(&writer)
                        .await?
                        .rows_affected
                }
            };
            replaced += result;
        }
        writer.close().await?;
        Ok(replaced)
    }
}
