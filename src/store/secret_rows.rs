//! The rows that keep secret headers, read and rewritten a page at a time by
//! `jobqueue secrets rekey` (beside a running service: each row is replaced only
//! if it still reads as it was read).

use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::{Store, StoreError, jobs, schedules};

/// A table whose rows keep a call's headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadersTable {
    Jobs,
    Schedules,
}

impl Store {
    /// Up to `limit` rows of `table` after the id `after`, with headers: (id, headers).
    pub async fn headers_page(
        &self,
        table: HeadersTable,
        after: &str,
        limit: u64,
    ) -> Result<Vec<(String, String)>, StoreError> {
        Ok(match table {
            HeadersTable::Jobs => {
                jobs::Entity::find()
                    .select_only()
                    .columns([jobs::Column::Id, jobs::Column::Headers])
                    .filter(jobs::Column::Id.gt(after))
                    .filter(jobs::Column::Headers.ne("{}"))
                    .order_by_asc(jobs::Column::Id)
                    .limit(limit)
                    .into_tuple()
                    .all(&self.reader)
                    .await?
            }
            HeadersTable::Schedules => {
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
        })
    }

    /// Replaces each row's headers, `(id, old, new)`, if they still read `old`:
    /// how many did (a row changed meanwhile is left for the next pass).
    pub async fn replace_headers(
        &self,
        table: HeadersTable,
        rows: &[(String, String, String)],
    ) -> Result<u64, StoreError> {
        let writer = self.open_writer().await?;
        let mut replaced = 0;
        for (id, old, new) in rows {
            let result = match table {
                HeadersTable::Jobs => {
                    jobs::Entity::update_many()
                        .col_expr(jobs::Column::Headers, Expr::value(new))
                        .filter(jobs::Column::Id.eq(id))
                        .filter(jobs::Column::Headers.eq(old))
                        .exec(&writer)
                        .await?
                }
                HeadersTable::Schedules => {
                    schedules::Entity::update_many()
                        .col_expr(schedules::Column::Headers, Expr::value(new))
                        .filter(schedules::Column::Id.eq(id))
                        .filter(schedules::Column::Headers.eq(old))
                        .exec(&writer)
                        .await?
                }
            };
            replaced += result.rows_affected;
        }
        writer.close().await?;
        Ok(replaced)
    }
}
