//! A small map whose entries are honoured for a fixed time after they were put: what the host
//! remembers of the store between reads (tenants' tokens, callback keys, accounts), so a busy
//! path costs no store read per request while a change made on another node still arrives
//! within the TTL.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct TtlCache<K, V> {
    ttl: Duration,
    /// Entries kept at most: the map starts over past it (an unbounded input, a stream of
    /// made-up tokens say, never grows it without end).
    max: usize,
    entries: Mutex<HashMap<K, (V, Instant)>>,
}

impl<K: Eq + Hash, V: Clone> TtlCache<K, V> {
    pub fn new(ttl: Duration, max: usize) -> Self {
        TtlCache {
            ttl,
            max: max.max(1),
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The value put under `key` within the TTL.
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(key)
            .filter(|(_, at)| at.elapsed() < self.ttl)
            .map(|(v, _)| v.clone())
    }

    pub fn put(&self, key: K, value: V) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= self.max && !entries.contains_key(&key) {
            entries.clear();
        }
        entries.insert(key, (value, Instant::now()));
    }

    /// Keeps only the entries `keep` says yes to (forgets what a change on this node made stale).
    pub fn retain(&self, mut keep: impl FnMut(&K, &V) -> bool) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.retain(|k, (v, _)| keep(k, v));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_honoured_within_its_ttl_only_and_the_map_stays_bounded() {
        let cache = TtlCache::new(Duration::from_millis(30), 2);
        cache.put("a".to_string(), 1);
        assert_eq!(cache.get("a"), Some(1));
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(cache.get("a"), None);
        cache.put("b".into(), 2);
        cache.put("c".into(), 3);
        cache.put("d".into(), 4);
        assert_eq!((cache.get("b"), cache.get("d")), (None, Some(4)));
        cache.retain(|k, _| k != "d");
        assert_eq!(cache.get("d"), None);
    }
}
