//! Writing one generation of the filter's tables, map by map: what the generation holds and
//! the new set does not is deleted, then what differs is written (everything, when what the
//! generation holds is not known).
//!
//! Nothing reads the inactive generation until the flip, so its maps are written at once, one
//! part per map, on as many threads as there are CPUs: a large commit costs the kernel per
//! element (a trie allocates a node for every entry written), and that divides among CPUs.
//! Arrays and hash maps are written and deleted from in batches (see [`bpf_batch`]); LPM
//! tries have no batch operations and take one system call per entry.

use std::{
    os::fd::AsFd as _,
    sync::{Mutex, PoisonError},
};

use aya::{
    Pod,
    maps::{HashMap as BpfHashMap, IterableMap, MapData, MapError, lpm_trie, lpm_trie::LpmTrie},
    sys::SyscallError,
};
use foldhash::{HashMap, HashSet};
use net_common::{
    filter::{ADDR_DST, ADDR_SRC, RuleBitmap},
    rule::Prefix,
};

use super::{
    compile::Tables,
    stages::{PauseAt, pause},
    write_error::{Doing, MapWriteError},
};
use crate::bpf_batch;

/// What every part of a commit writes toward.
#[derive(Clone, Copy)]
pub struct Target<'a> {
    /// The inactive generation, being written.
    pub generation: u32,
    /// What it holds, when known (see `FilterMaps::held_tables`).
    pub held: Option<&'a Tables>,
    /// What it is to hold.
    pub tables: &'a Tables,
    pub pause_at: PauseAt,
    /// Whose maps these are, for advice in errors.
    pub iface: Option<&'a str>,
}

/// One map's part of a commit.
pub type Part<'a> = Box<dyn FnOnce() -> Result<(), MapWriteError> + Send + 'a>;

/// Runs `parts` at once, on up to as many threads as there are CPUs. Every part runs even
/// when another fails (they all write the inactive generation, which nothing reads); the
/// first error is returned.
pub fn run(parts: Vec<Part<'_>>) -> Result<(), MapWriteError> {
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(parts.len());
    // Taken from the end: the caller lists the costliest first.
    let queue = Mutex::new(parts.into_iter().rev().collect::<Vec<_>>());
    let work = || -> Result<(), MapWriteError> {
        let mut first_error = None;
        loop {
            let part = queue.lock().unwrap_or_else(PoisonError::into_inner).pop();
            let Some(part) = part else {
                return first_error.map_or(Ok(()), Err);
            };
            if let Err(error) = part() {
                first_error.get_or_insert(error);
            }
        }
    };
    std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..threads).map(|_| scope.spawn(work)).collect();
        let mut result = work();
        for helper in helpers {
            // A part that panicked has already printed why; the commit cannot go on.
            let helped = helper
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            result = result.and(helped);
        }
        result
    })
}

/// The part of an LPM trie: its prefixes of one address field and family (`pick`), keyed
/// as `key` makes them; `mine` tells the generation's keys from the other's.
pub fn trie_part<'a, K: Pod + Send>(
    trie: &'a mut LpmTrie<MapData, K, RuleBitmap>,
    name: &'static str,
    target: Target<'a>,
    pick: fn(&Tables) -> &Vec<(Prefix, RuleBitmap)>,
    key: fn(u32, &[u8; 16]) -> K,
    mine: fn(&K, u32) -> bool,
) -> Part<'a> {
    Box::new(move || {
        let generation = target.generation;
        let trie_key = |prefix: &Prefix| {
            // The generation byte comes first in the key, and counts in the prefix length.
            lpm_trie::Key::new(8 + u32::from(prefix.len), key(generation, &prefix.addr))
        };
        pause(target.pause_at, &format!("clear {name}"));
        let wanted = pick(target.tables);
        let cleared = match target.held {
            Some(held) => stale(pick(held), wanted)
                .into_iter()
                .try_for_each(|prefix| trie.remove(&trie_key(prefix))),
            None => clear_trie(trie, |key| mine(key, generation)),
        };
        cleared.map_err(|source| failed(name, Doing::Clear, capacity(trie), target, source))?;
        pause(target.pause_at, &format!("write {name}"));
        let written = changed(target.held.map(|held| pick(held).as_slice()), wanted)
            .into_iter()
            .try_for_each(|(prefix, bitmap)| trie.insert(&trie_key(prefix), bitmap, 0));
        written.map_err(|source| failed(name, Doing::Write, capacity(trie), target, source))
    })
}

/// The part of a hash map of bitmaps: the entries `entries` lists, keyed as `key` makes
/// them; `mine` tells the generation's keys from the other's.
pub fn hash_part<'a, E, K>(
    map: &'a BpfHashMap<MapData, K, RuleBitmap>,
    name: &'static str,
    target: Target<'a>,
    entries: fn(&Tables) -> Vec<(E, &RuleBitmap)>,
    key: fn(u32, &E) -> K,
    mine: fn(&K, u32) -> bool,
) -> Part<'a>
where
    E: Eq + std::hash::Hash + Send + 'a,
    K: Pod + Send + Sync,
{
    Box::new(move || {
        let generation = target.generation;
        let failed = |doing| move |source| failed(name, doing, capacity(map), target, source);
        let fd = map.map().fd().as_fd();
        pause(target.pause_at, &format!("clear {name}"));
        let wanted = entries(target.tables);
        let held = target.held.map(entries);
        let cleared = match &held {
            Some(held) => {
                let keys: Vec<K> = stale(held, &wanted)
                    .into_iter()
                    .map(|entry| key(generation, entry))
                    .collect();
                bpf_batch::delete(fd, &keys).map_err(batch_error(DELETE))
            }
            None => clear_hash(map, |key| mine(key, generation)),
        };
        cleared.map_err(failed(Doing::Clear))?;
        pause(target.pause_at, &format!("write {name}"));
        let written = changed(held.as_deref(), &wanted)
            .into_iter()
            .map(|(entry, bitmap)| (key(generation, entry), *bitmap));
        bpf_batch::update(fd, written)
            .map_err(batch_error(UPDATE))
            .map_err(failed(Doing::Write))
    })
}

/// The part of an array: `entries` lists (index, value) for what is to be written, which
/// `target` says.
pub fn array_part<'a, V: Pod>(
    map: &'a MapData,
    name: &'static str,
    target: Target<'a>,
    entries: impl FnOnce(Target<'a>) -> Vec<(u32, &'a V)> + Send + 'a,
) -> Part<'a> {
    Box::new(move || {
        pause(target.pause_at, &format!("write {name}"));
        bpf_batch::update(map.fd().as_fd(), entries(target))
            .map_err(batch_error(UPDATE))
            .map_err(|source| failed(name, Doing::Write, None, target, source))
    })
}

/// The entries of `wanted` that are not in `held` at the same index as they are.
pub fn changed_at<'a, T: PartialEq>(
    held: Option<&[T]>,
    wanted: &'a [T],
) -> impl Iterator<Item = (usize, &'a T)> {
    wanted
        .iter()
        .enumerate()
        .filter(move |(index, value)| !held.is_some_and(|held| held.get(*index) == Some(value)))
}

/// `source`, a kernel error on the map `name` (which holds `capacity` entries, if known),
/// told with what to do.
fn failed(
    name: &'static str,
    doing: Doing,
    capacity: Option<u32>,
    target: Target<'_>,
    source: MapError,
) -> MapWriteError {
    MapWriteError::new(name, doing, capacity, target.iface, source)
}

/// The most entries `map` holds, as the kernel says; `None` if it cannot say.
pub fn capacity<K: Pod, V>(map: &impl IterableMap<K, V>) -> Option<u32> {
    map.map().info().ok().map(|info| info.max_entries())
}

/// The host entries of `tables` (prefixes of `bits` bits, both address fields): (field,
/// address) and bitmap.
pub fn host_entries(tables: &Tables, bits: u8) -> Vec<((u32, [u8; 16]), &RuleBitmap)> {
    let (src, dst) = if bits == 32 {
        (&tables.src_v4, &tables.dst_v4)
    } else {
        (&tables.src_v6, &tables.dst_v6)
    };
    [(ADDR_SRC, src), (ADDR_DST, dst)]
        .into_iter()
        .flat_map(|(field, table)| {
            table
                .iter()
                .filter(|(prefix, _)| prefix.len == bits)
                .map(move |(prefix, bitmap)| ((field, prefix.addr), bitmap))
        })
        .collect()
}

/// The port bitmaps of `tables`: (field, interval) and bitmap.
pub fn port_entries(tables: &Tables) -> Vec<((u32, u32), &RuleBitmap)> {
    tables
        .ports
        .iter()
        .enumerate()
        .flat_map(|(field, table)| {
            table
                .bitmaps
                .iter()
                .enumerate()
                .map(move |(interval, bitmap)| ((field as u32, interval as u32), bitmap))
        })
        .collect()
}

/// The keys of `held` that `wanted` lacks.
fn stale<'a, K: Eq + std::hash::Hash, V>(held: &'a [(K, V)], wanted: &[(K, V)]) -> Vec<&'a K> {
    let wanted: HashSet<&K> = wanted.iter().map(|(key, _)| key).collect();
    held.iter()
        .map(|(key, _)| key)
        .filter(|key| !wanted.contains(key))
        .collect()
}

/// The entries of `wanted` that `held` (all of them when `None`) does not hold as they are.
fn changed<'a, K: Eq + std::hash::Hash, V: PartialEq>(
    held: Option<&[(K, V)]>,
    wanted: &'a [(K, V)],
) -> Vec<&'a (K, V)> {
    let Some(held) = held else {
        return wanted.iter().collect();
    };
    let held: HashMap<&K, &V> = held.iter().map(|(key, value)| (key, value)).collect();
    wanted
        .iter()
        .filter(|(key, value)| held.get(key) != Some(&value))
        .collect()
}

/// Deletes the keys of `trie` that `stale` selects, listed key by key (a trie has no batch
/// operations).
fn clear_trie<K: Pod>(
    trie: &mut LpmTrie<MapData, K, RuleBitmap>,
    stale: impl Fn(&K) -> bool,
) -> Result<(), MapError> {
    let keys: Vec<lpm_trie::Key<K>> = trie.keys().collect::<Result<_, _>>()?;
    for key in keys.iter().filter(|key| stale(&key.data())) {
        trie.remove(key)?;
    }
    Ok(())
}

/// Deletes the keys of `map` that `stale` selects, listed and deleted in batches.
fn clear_hash<K: Pod>(
    map: &BpfHashMap<MapData, K, RuleBitmap>,
    stale: impl Fn(&K) -> bool,
) -> Result<(), MapError> {
    let fd = map.map().fd().as_fd();
    let mut keys = Vec::new();
    bpf_batch::for_each(fd, |key: &K, _: &RuleBitmap| {
        if stale(key) {
            keys.push(*key);
        }
    })
    .map_err(batch_error(LOOKUP))?;
    bpf_batch::delete(fd, &keys).map_err(batch_error(DELETE))
}

/// The system calls of [`bpf_batch`], as a [`MapError`] names them.
const LOOKUP: &str = "bpf_map_lookup_batch";
pub const UPDATE: &str = "bpf_map_update_batch";
const DELETE: &str = "bpf_map_delete_batch";

/// An error of the batched system call `call`, as aya reports the others.
pub fn batch_error(call: &'static str) -> impl FnOnce(std::io::Error) -> MapError {
    move |io_error| MapError::SyscallError(SyscallError { call, io_error })
}
