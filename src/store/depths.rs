//! What the metrics' gauges read from the database: every queue's unfinished jobs,
//! and the schedules by state. Each read goes through an index of unfinished jobs
//! (finished ones are never counted), so a scrape costs what is waiting, not what
//! is kept.

use sea_orm::{ConnectionTrait, TransactionTrait};

use super::job_tables::states;
use super::{Store, StoreError, sql};

/// One queue's unfinished jobs at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueDepth {
    pub queue: String,
    /// Queued and due.
    pub waiting: i64,
    /// Queued, due later.
    pub scheduled: i64,
    pub running: i64,
    /// When the longest-waiting due job became due.
    pub oldest_waiting_since: Option<i64>,
}

/// Schedules by state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScheduleCounts {
    pub active: i64,
    pub paused: i64,
    /// No due time left.
    pub completed: i64,
}

impl Store {
    /// Every queue, in name order, with its unfinished jobs at `now` (zeros for a
    /// queue that holds none).
    pub async fn queue_depths(&self, now: i64) -> Result<Vec<QueueDepth>, StoreError> {
        let backend = self.backend();
        let txn = self.reader.begin().await?;
        let mut depths: Vec<QueueDepth> = txn
            .query_all_raw(sql(
                backend,
                "SELECT name FROM queues ORDER BY name",
                vec![],
            ))
            .await?
            .into_iter()
            .map(|row| {
                Ok(QueueDepth {
                    queue: row.try_get("", "name")?,
                    ..QueueDepth::default()
                })
            })
            .collect::<Result<_, StoreError>>()?;
        let queued = txn
            .query_all_raw(sql(
                backend,
                &format!(
                    "SELECT queue, COUNT(*) AS n, \
                     SUM(CASE WHEN run_at > ? THEN 1 ELSE 0 END) AS later, \
                     MIN(CASE WHEN run_at <= ? THEN run_at END) AS oldest \
                     FROM {} WHERE status = 'queued' GROUP BY queue",
                    states(backend)
                ),
                vec![now.into(), now.into()],
            ))
            .await?;
        let running = txn
            .query_all_raw(sql(
                backend,
                &format!(
                    "SELECT queue, COUNT(*) AS n FROM {} WHERE status = 'running' GROUP BY queue",
                    states(backend)
                ),
                vec![],
            ))
            .await?;
        txn.commit().await?;
        for row in queued {
            let depth = depth_of(&mut depths, row.try_get("", "queue")?);
            let n: i64 = row.try_get("", "n")?;
            let later = row.try_get::<Option<i64>>("", "later")?.unwrap_or(0);
            depth.scheduled = later;
            depth.waiting = n - later;
            depth.oldest_waiting_since = row.try_get("", "oldest")?;
        }
        for row in running {
            depth_of(&mut depths, row.try_get("", "queue")?).running = row.try_get("", "n")?;
        }
        Ok(depths)
    }

    /// Schedules by state.
    pub async fn schedule_counts(&self) -> Result<ScheduleCounts, StoreError> {
        let row = self
            .reader
            .query_one_raw(sql(
                self.backend(),
                "SELECT \
                 CAST(COALESCE(SUM(CASE WHEN paused THEN 1 ELSE 0 END), 0) AS BIGINT) AS paused, \
                 CAST(COALESCE(SUM(CASE WHEN NOT paused AND next_fire_at IS NULL THEN 1 ELSE 0 END), 0) AS BIGINT) AS completed, \
                 CAST(COUNT(*) AS BIGINT) AS all_of_them FROM schedules",
                vec![],
            ))
            .await?;
        let Some(row) = row else {
            return Ok(ScheduleCounts::default());
        };
        let paused: i64 = row.try_get("", "paused")?;
        let completed: i64 = row.try_get("", "completed")?;
        let all: i64 = row.try_get("", "all_of_them")?;
        Ok(ScheduleCounts {
            active: all - paused - completed,
            paused,
            completed,
        })
    }
}

/// The entry of `queue` in `depths` (in name order), added when a job's queue is
/// not listed (one made on use by a commit after the list was read).
fn depth_of(depths: &mut Vec<QueueDepth>, queue: String) -> &mut QueueDepth {
    let i = match depths.binary_search_by(|d| d.queue.cmp(&queue)) {
        Ok(i) => i,
        Err(i) => {
            depths.insert(
                i,
                QueueDepth {
                    queue,
                    ..QueueDepth::default()
                },
            );
            i
        }
    };
    &mut depths[i]
}
