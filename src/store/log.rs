//! The event log: every committed status change, in cursor order, for watchers to
//! read and resume from.
//!
//! A transaction's changes are stored together: a row of `event_pages` holds up to
//! [`CHANGES_PER_PAGE`] of them, encoded as one JSON array, and is keyed by the
//! cursor of its last change. A job's life is three changes, so a row per change cost
//! three rows and six index entries per job, each row copying the job's queue and
//! tags; a page costs a fraction of one row. Watchers read pages and filter in
//! memory, which is what the log's reads did anyway (only the job id had an index).
//!
//! Cursors: `event_log.head` counts every change ever logged. A transaction draws its
//! cursors by adding to it, which holds that row until the transaction ends: on
//! PostgreSQL, replicas that log changes take turns from there to their commit, so
//! cursors grow in commit order and a reader never sees a later cursor before an
//! earlier one. Pruning removes whole pages from the oldest end and records how far
//! it went in `event_log.pruned_through`.

use sea_orm::{ConnectionTrait, DbBackend, Value};
use serde::Deserialize;

use super::{StoreError, placeholders, sql};
use crate::job::Status;

/// Most changes stored in one row.
pub const CHANGES_PER_PAGE: usize = 2000;
/// Rows per INSERT statement.
const PAGES_PER_STATEMENT: usize = 64;

/// One committed status change of one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The cursor: resume after it to get every later change.
    pub seq: i64,
    pub job_id: String,
    pub status: Status,
    pub attempt: i32,
    pub at: i64,
    pub queue: String,
    pub tags: Vec<String>,
    pub status_code: Option<i32>,
    pub error_class: Option<String>,
    pub next_attempt_at: Option<i64>,
    pub schedule_id: Option<String>,
}

/// One change as stored: its fields in a fixed order, the cursor left out (it
/// follows from the page's).
type Stored = (
    String,
    String,
    i32,
    i64,
    String,
    Vec<String>,
    Option<i32>,
    Option<String>,
    Option<i64>,
    Option<String>,
);

/// Encodes changes as the JSON array a page stores.
fn encode(events: &[Event]) -> String {
    let rows: Vec<_> = events
        .iter()
        .map(|e| {
            (
                &e.job_id,
                e.status.as_str(),
                e.attempt,
                e.at,
                &e.queue,
                &e.tags,
                e.status_code,
                &e.error_class,
                e.next_attempt_at,
                &e.schedule_id,
            )
        })
        .collect();
    // Strings, numbers and options only: serializing cannot fail.
    serde_json::to_string(&rows).unwrap_or_default()
}

/// Reads back a page whose last change has cursor `last`.
fn decode(last: i64, changes: &str) -> Result<Vec<Event>, StoreError> {
    let corrupt = |why: String| StoreError::Corrupt(format!("event page {last}: {why}"));
    let mut de = serde_json::Deserializer::from_str(changes);
    let rows = Vec::<Stored>::deserialize(&mut de).map_err(|e| corrupt(e.to_string()))?;
    let first = last - rows.len() as i64 + 1;
    rows.into_iter()
        .enumerate()
        .map(|(n, row)| {
            let (
                job_id,
                status,
                attempt,
                at,
                queue,
                tags,
                status_code,
                error_class,
                next_attempt_at,
                schedule_id,
            ) = row;
            Ok(Event {
                seq: first + n as i64,
                status: Status::parse(&status)
                    .ok_or_else(|| corrupt(format!("status {status}")))?,
                job_id,
                attempt,
                at,
                queue,
                tags,
                status_code,
                error_class,
                next_attempt_at,
                schedule_id,
            })
        })
        .collect()
}

/// Appends changes to the log in the order given, setting each one's cursor. Drawing
/// the cursors and storing the pages is one round trip: on SQLite two statements in
/// one call, on PostgreSQL one statement (an UPDATE in a WITH).
pub async fn append(db: &impl ConnectionTrait, events: &mut [Event]) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let backend = db.get_database_backend();
    let total = events.len() as i64;
    // Each page with how many changes come after its last one, its size, its newest
    // time and its changes: its cursor is the new head less the first.
    let mut pages = Vec::with_capacity(events.len().div_ceil(CHANGES_PER_PAGE));
    let mut stored = 0;
    for page in events.chunks(CHANGES_PER_PAGE) {
        stored += page.len() as i64;
        let at = page.iter().map(|e| e.at).max().unwrap_or(0);
        pages.push((total - stored, page.len() as i64, at, encode(page)));
    }
    let mut chunks = pages.chunks(PAGES_PER_STATEMENT);
    let first = chunks.next().unwrap_or_default();
    let rows = vec![format!("({})", placeholders(4)); first.len()].join(", ");
    let text = match backend {
        DbBackend::Postgres => format!(
            "WITH h AS (UPDATE event_log SET head = head + ? WHERE id = 1 RETURNING head) \
             INSERT INTO event_pages (last, count, at, changes) \
             SELECT h.head - v.back, v.count, v.at, v.changes FROM h, (VALUES {rows}) \
             AS v (back, count, at, changes) RETURNING (SELECT head FROM h) AS head"
        ),
        _ => {
            let rows =
                vec!["((SELECT head FROM event_log WHERE id = 1) - ?, ?, ?, ?)"; first.len()]
                    .join(", ");
            format!(
                "UPDATE event_log SET head = head + ? WHERE id = 1 RETURNING head; \
                 INSERT INTO event_pages (last, count, at, changes) VALUES {rows}"
            )
        }
    };
    let mut values = vec![Value::from(total)];
    for (back, count, at, changes) in first {
        values.extend([
            Value::from(*back),
            (*count).into(),
            (*at).into(),
            changes.as_str().into(),
        ]);
    }
    let drawn = db.query_all_raw(sql(backend, &text, values)).await?;
    let mut head = None;
    for row in drawn {
        let value: i64 = row.try_get("", "head")?;
        head = Some(head.map_or(value, |h: i64| h.max(value)));
    }
    let head = head.ok_or_else(|| StoreError::Corrupt("event_log has no row".into()))?;
    let mut seq = head - total;
    for event in events.iter_mut() {
        seq += 1;
        event.seq = seq;
    }
    // More pages than one statement takes (a turn of over 128,000 changes): the rest
    // with their cursors known.
    for chunk in chunks {
        let mut values: Vec<Value> = Vec::with_capacity(chunk.len() * 4);
        for (back, count, at, changes) in chunk {
            values.extend([
                Value::from(head - back),
                (*count).into(),
                (*at).into(),
                changes.as_str().into(),
            ]);
        }
        let rows = vec![format!("({})", placeholders(4)); chunk.len()].join(", ");
        let text = format!("INSERT INTO event_pages (last, count, at, changes) VALUES {rows}");
        db.execute_raw(sql(backend, &text, values)).await?;
    }
    Ok(())
}

/// The cursors the log can resume from: everything after `pruned_through`, up to
/// `head`, the newest.
pub async fn bounds(db: &impl ConnectionTrait) -> Result<(i64, i64), StoreError> {
    let row = db
        .query_one_raw(sql(
            db.get_database_backend(),
            "SELECT pruned_through, head FROM event_log WHERE id = 1",
            vec![],
        ))
        .await?;
    Ok(match row {
        Some(row) => (
            row.try_get::<i64>("", "pruned_through")?,
            row.try_get::<i64>("", "head")?,
        ),
        None => (0, 0),
    })
}

/// Pages read per query while looking for matching changes.
const PAGES_PER_READ: u64 = 16;

/// Up to `limit` changes after cursor `after` that `wanted` keeps, oldest first.
pub async fn after(
    db: &impl ConnectionTrait,
    after: i64,
    wanted: impl Fn(&Event) -> bool,
    limit: u64,
) -> Result<Vec<Event>, StoreError> {
    let mut found = Vec::new();
    let mut from = after;
    loop {
        let rows = db
            .query_all_raw(sql(
                db.get_database_backend(),
                "SELECT last, changes FROM event_pages WHERE last > ? ORDER BY last LIMIT ?",
                vec![from.into(), (PAGES_PER_READ as i64).into()],
            ))
            .await?;
        let pages = rows.len() as u64;
        for row in rows {
            let last: i64 = row.try_get("", "last")?;
            let changes: String = row.try_get("", "changes")?;
            for event in decode(last, &changes)? {
                if event.seq > after && wanted(&event) {
                    found.push(event);
                    if found.len() as u64 == limit {
                        return Ok(found);
                    }
                }
            }
            from = last;
        }
        if pages < PAGES_PER_READ {
            return Ok(found);
        }
    }
}

/// Forgets whole pages older than `before`, at most `limit` of them, and records how
/// far the log has been pruned so older cursors are refused. Reads from the oldest
/// end only, so a pass over a log with nothing to forget reads one row.
pub async fn prune(
    db: &impl ConnectionTrait,
    before: i64,
    limit: usize,
) -> Result<u64, StoreError> {
    let backend = db.get_database_backend();
    let oldest = |n: usize| {
        sql(
            backend,
            "SELECT last, at FROM event_pages ORDER BY last LIMIT ?",
            vec![(n as i64).into()],
        )
    };
    let mut through = None;
    for rows in [1, limit.max(1)] {
        through = None;
        let pages = db.query_all_raw(oldest(rows)).await?;
        for page in &pages {
            if page.try_get::<i64>("", "at")? >= before {
                break;
            }
            through = Some(page.try_get::<i64>("", "last")?);
        }
        if through.is_none() || pages.len() < rows {
            break;
        }
    }
    let Some(last) = through else {
        return Ok(0);
    };
    let removed = db
        .execute_raw(sql(
            backend,
            "DELETE FROM event_pages WHERE last <= ?",
            vec![last.into()],
        ))
        .await?
        .rows_affected();
    db.execute_raw(sql(
        backend,
        "UPDATE event_log SET pruned_through = ? WHERE id = 1 AND pruned_through < ?",
        vec![last.into(), last.into()],
    ))
    .await?;
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: i64) -> Event {
        Event {
            seq: 0,
            job_id: format!("j_{n}"),
            status: Status::Succeeded,
            attempt: 1,
            at: 1_700_000_000_000 + n,
            queue: "q\"uoted".into(),
            tags: vec!["a".into(), "b,c".into()],
            status_code: Some(200),
            error_class: None,
            next_attempt_at: (n % 2 == 0).then_some(5),
            schedule_id: Some("s_1".into()),
        }
    }

    #[test]
    fn a_page_reads_back_what_was_written_with_its_cursors() {
        let mut events: Vec<Event> = (0..5).map(event).collect();
        for (n, e) in events.iter_mut().enumerate() {
            e.seq = 10 + n as i64;
        }
        let page = encode(&events);
        assert_eq!(decode(14, &page).unwrap(), events);
    }

    /// A turn's changes get consecutive cursors and read back in order, however many
    /// pages and statements they take.
    #[tokio::test]
    async fn appended_changes_read_back_in_order_across_pages_and_statements() {
        use migration::MigratorTrait;
        let db = sea_orm::Database::connect("sqlite::memory:").await.unwrap();
        migration::Migrator::up(&db, None).await.unwrap();
        let mut small: Vec<Event> = (0..5).map(event).collect();
        append(&db, &mut small).await.unwrap();
        assert_eq!(
            small.iter().map(|e| e.seq).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5]
        );
        // More than one statement's worth of pages.
        let many = CHANGES_PER_PAGE * PAGES_PER_STATEMENT + 3;
        let mut large: Vec<Event> = (0..many as i64).map(event).collect();
        append(&db, &mut large).await.unwrap();
        assert!(large.iter().enumerate().all(|(n, e)| e.seq == 6 + n as i64));
        assert_eq!(bounds(&db).await.unwrap(), (0, 5 + many as i64));
        let read = after(&db, 3, |_| true, u64::MAX).await.unwrap();
        assert_eq!(read.len(), 2 + many);
        assert_eq!(read[0], small[3]);
        assert_eq!(read.last(), large.last());
        assert!(read.windows(2).all(|w| w[1].seq == w[0].seq + 1));
        // A filter skips, a limit stops.
        let one = after(&db, 0, |e| e.job_id == "j_7", 10).await.unwrap();
        assert_eq!(one.iter().map(|e| e.seq).collect::<Vec<_>>(), [13]);
        assert_eq!(after(&db, 0, |_| true, 4).await.unwrap().len(), 4);
    }

    #[test]
    fn a_damaged_page_is_reported_with_its_cursor() {
        let error = decode(7, "[[\"j_1\", \"nonsense\"]]").unwrap_err();
        assert!(error.to_string().contains("event page 7"), "{error}");
        let error = decode(8, &encode(&[event(1)]).replace("succeeded", "lost")).unwrap_err();
        assert!(error.to_string().contains("status lost"), "{error}");
    }
}
