//! Each queue's destinations (see `RuleList::admits`), as the writer last loaded
//! its queues: the writer hands them to each call, and the API checks a submit's
//! URL against them before the job is stored.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use super::address::RuleList;

#[derive(Debug, Clone, Default)]
pub struct QueueDestinations(Arc<RwLock<HashMap<String, Arc<RuleList>>>>);

impl QueueDestinations {
    /// The destinations of `queue` (as stored), when it has some.
    pub fn of(&self, queue: &str) -> Option<Arc<RuleList>> {
        let map = self.0.read().unwrap_or_else(|p| p.into_inner());
        if map.is_empty() {
            return None;
        }
        map.get(queue).cloned()
    }

    /// One queue's, as just stored.
    pub fn set(&self, queue: &str, text: Option<&str>) {
        let mut map = self.0.write().unwrap_or_else(|p| p.into_inner());
        match text {
            Some(text) => {
                let rules = RuleList::parse(text).unwrap_or_default();
                map.insert(queue.to_string(), Arc::new(rules));
            }
            None => {
                map.remove(queue);
            }
        }
    }

    /// Every queue's, from their stored settings (a malformed one, which the API
    /// never stores, holds its queue to nothing).
    pub fn load<'a>(&self, queues: impl Iterator<Item = (&'a str, Option<&'a str>)>) {
        let map: HashMap<String, Arc<RuleList>> = queues
            .filter_map(|(name, text)| {
                let rules = RuleList::parse(text?).unwrap_or_default();
                Some((name.to_string(), Arc::new(rules)))
            })
            .collect();
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = map;
    }
}
