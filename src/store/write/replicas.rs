//! What processes sharing one PostgreSQL database tell each other at commit: that
//! jobs changed, and which running jobs were canceled elsewhere.

use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend, Value};

use super::{SMALL_ROWS_PER_STATEMENT, backend};
use crate::store::{StoreError, placeholders, sql};

/// The PostgreSQL channel on which processes announce their commits.
pub const ANNOUNCE_CHANNEL: &str = "jobqueue";

/// Tells the other processes on this PostgreSQL database that this transaction
/// changed jobs (delivered when it commits), so their writers look for due work and
/// their watchers read the log now rather than at the next poll. `me` names this
/// process, so it can ignore its own word. Nothing to do on SQLite.
pub async fn announce(
    txn: &DatabaseTransaction,
    me: &str,
    canceled: &[String],
) -> Result<(), StoreError> {
    if backend(txn) == DbBackend::Postgres {
        txn.execute_raw(sql(
            backend(txn),
            "SELECT pg_notify(?, ?)",
            vec![
                ANNOUNCE_CHANNEL.into(),
                Announcement::write(me, canceled).into(),
            ],
        ))
        .await?;
    }
    Ok(())
}

/// What a process says when it commits: who it is, and the jobs it canceled, whose
/// calls may be running in another process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    pub from: String,
    pub canceled: Vec<String>,
    /// Too many cancels to list: every process checks its running calls.
    pub check_running: bool,
}

impl Announcement {
    /// Below PostgreSQL's 8,000-byte payload limit.
    const MAX_PAYLOAD: usize = 7_000;

    fn write(me: &str, canceled: &[String]) -> String {
        if canceled.is_empty() {
            return me.to_string();
        }
        let listed = format!("{me} {}", canceled.join(","));
        if listed.len() <= Self::MAX_PAYLOAD {
            listed
        } else {
            format!("{me} *")
        }
    }

    pub fn read(payload: &str) -> Announcement {
        let (from, rest) = payload.split_once(' ').unwrap_or((payload, ""));
        Announcement {
            from: from.to_string(),
            canceled: match rest {
                "" | "*" => Vec::new(),
                ids => ids.split(',').map(str::to_string).collect(),
            },
            check_running: rest == "*",
        }
    }
}

/// Which of these jobs (running here) someone else canceled.
pub async fn canceled_among(
    txn: &DatabaseTransaction,
    ids: &[&str],
) -> Result<Vec<String>, StoreError> {
    let mut canceled = Vec::new();
    for chunk in ids.chunks(SMALL_ROWS_PER_STATEMENT) {
        let text = format!(
            "SELECT id FROM jobs WHERE status = 'canceled' AND id IN ({})",
            placeholders(chunk.len())
        );
        let values = chunk.iter().map(|id| Value::from(*id)).collect();
        for row in txn.query_all_raw(sql(backend(txn), &text, values)).await? {
            canceled.push(row.try_get::<String>("", "id")?);
        }
    }
    Ok(canceled)
}

#[cfg(test)]
mod tests {
    use super::Announcement;

    #[test]
    fn an_announcement_carries_its_sender_and_cancels() {
        let plain = Announcement::read(&Announcement::write("A1", &[]));
        assert_eq!(
            plain,
            Announcement {
                from: "A1".into(),
                canceled: vec![],
                check_running: false
            }
        );
        let ids = vec!["j_1".to_string(), "j_2".to_string()];
        let listed = Announcement::read(&Announcement::write("A1", &ids));
        assert_eq!((listed.from.as_str(), listed.canceled), ("A1", ids));
        // Too many to list: the others check what runs there instead.
        let many: Vec<String> = (0..1000).map(|n| format!("j_{n:026}")).collect();
        let summary = Announcement::read(&Announcement::write("A1", &many));
        assert!(summary.check_running && summary.canceled.is_empty());
    }
}
