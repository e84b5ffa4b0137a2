//! A small cache of links by public id, for the public link page (the hottest read).
//!
//! Entries expire after [`TTL`], so a change made through another process sharing
//! the database (the CLI, a node without a cluster bus) is seen within that time;
//! every link update or delete through this node clears the cache at once, and so
//! does one announced by another node of a cluster, whose nodes cache longer while
//! their bus is connected ([`LinkCache::set_ttl`]). Only links that exist are
//! cached, so ids that were never valid cannot fill it.

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::link;

/// How long a link read stays cached on a single node (see `Store::set_link_cache_ttl`).
pub const TTL: Duration = Duration::from_secs(2);
const CAPACITY: usize = 10_000;

#[derive(Debug)]
pub(super) struct LinkCache {
    entries: RwLock<HashMap<String, (link::Model, Instant)>>,
    /// Bumped by every clear: a row read before a write must not be cached after it.
    generation: AtomicU64,
    /// How long an entry lives, in milliseconds ([`TTL`] unless set).
    ttl_ms: AtomicU64,
}

impl Default for LinkCache {
    fn default() -> Self {
        Self {
            entries: RwLock::default(),
            generation: AtomicU64::new(0),
            ttl_ms: AtomicU64::new(millis(TTL)),
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl LinkCache {
    fn ttl(&self) -> Duration {
        Duration::from_millis(self.ttl_ms.load(Ordering::Relaxed))
    }

    /// Changes how long entries live, and drops every entry (a shorter life means
    /// changes may have been missed).
    pub(super) fn set_ttl(&self, ttl: Duration) {
        self.ttl_ms.store(millis(ttl), Ordering::Relaxed);
        self.clear();
    }

    pub(super) fn get(&self, public_id: &str) -> Option<link::Model> {
        let ttl = self.ttl();
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        entries
            .get(public_id)
            .filter(|(_, at)| at.elapsed() < ttl)
            .map(|(link, _)| link.clone())
    }

    /// The generation to pass to [`LinkCache::put`]; read it before querying the database.
    pub(super) fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Caches `link`, unless the cache was cleared since `generation` was read.
    pub(super) fn put(&self, link: &link::Model, generation: u64) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        if self.generation.load(Ordering::SeqCst) != generation {
            return;
        }
        if entries.len() >= CAPACITY {
            let ttl = self.ttl();
            entries.retain(|_, (_, at)| at.elapsed() < ttl);
            if entries.len() >= CAPACITY {
                entries.clear();
            }
        }
        entries.insert(link.public_id.clone(), (link.clone(), Instant::now()));
    }

    pub(super) fn clear(&self) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        self.generation.fetch_add(1, Ordering::SeqCst);
        entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(id: &str, title: &str) -> link::Model {
        let now = chrono::Utc::now();
        link::Model {
            pk: 1,
            public_id: id.into(),
            owner_id: 1,
            title: title.into(),
            description: None,
            schedule_start: None,
            schedule_end: None,
            schedule_tz: None,
            schedule_rrule: None,
            guests_need_approval: true,
            members_need_approval: false,
            max_participants: 32,
            created_at: now,
            updated_at: now,
            revoked_at: None,
        }
    }

    #[test]
    fn a_row_read_before_a_write_is_not_cached_after_it() {
        let cache = LinkCache::default();
        let before = cache.generation();
        cache.clear(); // a write happened while the reader was querying
        cache.put(&link("abc", "stale"), before);
        assert!(cache.get("abc").is_none());
        cache.put(&link("abc", "fresh"), cache.generation());
        assert_eq!(cache.get("abc").unwrap().title, "fresh");
        cache.clear();
        assert!(cache.get("abc").is_none(), "writes clear the cache");
    }
}
