//! Each queue's destinations (see `RuleList::admits`), as the writer last loaded
//! its queues: the writer hands them to each call, and the API checks a submit's
//! URL against them before the job is stored. Most services set none: then a
//! look costs one relaxed load, not a lock every submit and dispatch would share.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use super::address::RuleList;

#[derive(Debug, Clone, Default)]
pub struct QueueDestinations {
    /// Whether any queue has destinations.
    any: Arc<AtomicBool>,
    map: Arc<RwLock<HashMap<String, Arc<RuleList>>>>,
}

impl QueueDestinations {
    /// The destinations of `queue` (as stored), when it has some.
    pub fn of(&self, queue: &str) -> Option<Arc<RuleList>> {
        if !self.any.load(Ordering::Relaxed) {
            return None;
        }
        let map = self.map.read().unwrap_or_else(|p| p.into_inner());
        map.get(queue).cloned()
    }

    /// One queue's, as just stored.
    pub fn set(&self, queue: &str, text: Option<&str>) {
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        match text {
            Some(text) => {
                let rules = RuleList::parse(text).unwrap_or_default();
                map.insert(queue.to_string(), Arc::new(rules));
            }
            None => {
                map.remove(queue);
            }
        }
        self.any.store(!map.is_empty(), Ordering::Relaxed);
    }

    /// Every queue's, from their stored settings (a malformed one, which the API
    /// never stores, holds its queue to nothing).
    pub fn load<'a>(&self, queues: impl Iterator<Item = (&'a str, Option<&'a str>)>) {
        let loaded: HashMap<String, Arc<RuleList>> = queues
            .filter_map(|(name, text)| {
                let rules = RuleList::parse(text?).unwrap_or_default();
                Some((name.to_string(), Arc::new(rules)))
            })
            .collect();
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        *map = loaded;
        self.any.store(!map.is_empty(), Ordering::Relaxed);
    }
}
