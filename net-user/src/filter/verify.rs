//! Checking that the active generation holds exactly the set in force
//! ([`FilterMaps::verify`]).

use std::collections::BTreeMap;

use anyhow::{Result, ensure};
use aya::Pod;
use aya::maps::{HashMap as BpfHashMap, MapData, MapError, lpm_trie::LpmTrie};
use net_common::{
    filter::{RuleBitmap, ipv4_host_key, ipv4_key, ipv6_host_key, ipv6_key, port_bitmap_key},
    names,
    rule::Prefix,
};

use super::{
    compile::compile,
    generation::{host_entries, port_entries},
};

use super::maps::{FilterMaps, classifier_of};

impl FilterMaps {
    /// Checks that the active generation's tries, host tables and port bitmaps hold exactly
    /// the entries of the rule set in force, and nothing more: a commit that writes only
    /// what differs must leave what a whole rewrite would. The error names the first map that
    /// does not.
    pub fn verify(&self) -> Result<()> {
        let generation = self.active_generation()?;
        let config = self.config.get(&generation, 0)?;
        let byte = generation as u8;
        if config.next_rule_id == 0 {
            // Never committed (a commit always writes a next id): a fresh attachment's
            // zeroed tables, which classify as no rules; they must hold nothing.
            let empty = [
                (
                    names::SRC_V4_MAP,
                    trie_entries(&self.src_v4, byte)?.is_empty(),
                ),
                (
                    names::DST_V4_MAP,
                    trie_entries(&self.dst_v4, byte)?.is_empty(),
                ),
                (
                    names::SRC_V6_MAP,
                    trie_entries(&self.src_v6, byte)?.is_empty(),
                ),
                (
                    names::DST_V6_MAP,
                    trie_entries(&self.dst_v6, byte)?.is_empty(),
                ),
            ];
            for (name, empty) in empty {
                ensure!(
                    empty,
                    "{name} holds entries of a generation never committed"
                );
            }
            return Ok(());
        }
        let tables = compile(&self.load()?, classifier_of(&config));
        // A trie's entries as `tables` has them, keyed as `key` makes them.
        let trie = |table: &[(Prefix, RuleBitmap)], key: &dyn Fn(&[u8; 16]) -> Vec<u8>| {
            table
                .iter()
                .map(|(prefix, bitmap)| ((8 + u32::from(prefix.len), key(&prefix.addr)), *bitmap))
                .collect::<BTreeMap<(u32, Vec<u8>), RuleBitmap>>()
        };
        let v4 = |table| trie(table, &|addr| ipv4_key(generation, addr).to_vec());
        let v6 = |table| trie(table, &|addr| ipv6_key(generation, addr).to_vec());
        let tries = [
            (
                names::SRC_V4_MAP,
                trie_entries(&self.src_v4, byte)?,
                v4(&tables.src_v4),
            ),
            (
                names::DST_V4_MAP,
                trie_entries(&self.dst_v4, byte)?,
                v4(&tables.dst_v4),
            ),
            (
                names::SRC_V6_MAP,
                trie_entries(&self.src_v6, byte)?,
                v6(&tables.src_v6),
            ),
            (
                names::DST_V6_MAP,
                trie_entries(&self.dst_v6, byte)?,
                v6(&tables.dst_v6),
            ),
        ];
        for (name, held, wanted) in tries {
            ensure!(held == wanted, "{name} does not hold the set in force");
        }
        // The host entries `tables` has for hosts of `bits` bits, keyed as `key` makes them.
        let hosts = |bits, key: &dyn Fn(u32, &[u8; 16]) -> Vec<u8>| -> BTreeMap<_, _> {
            host_entries(&tables, bits)
                .into_iter()
                .map(|((field, addr), bitmap)| (key(field, &addr), *bitmap))
                .collect()
        };
        let held_v4 = hash_entries(&self.hosts_v4, |key| key[0] == byte, |key| key.to_vec())?;
        let wanted_v4 = hosts(32, &|field, addr| {
            ipv4_host_key(generation, field, addr).to_vec()
        });
        let held_v6 = hash_entries(&self.hosts_v6, |key| key[0] == byte, |key| key.to_vec())?;
        let wanted_v6 = hosts(128, &|field, addr| {
            ipv6_host_key(generation, field, addr).to_vec()
        });
        for (name, held, wanted) in [
            (names::HOSTS_V4_MAP, held_v4, wanted_v4),
            (names::HOSTS_V6_MAP, held_v6, wanted_v6),
        ] {
            ensure!(held == wanted, "{name} does not hold the set in force");
        }
        let ports: BTreeMap<u32, RuleBitmap> = port_entries(&tables)
            .into_iter()
            .map(|((field, interval), bitmap)| {
                (port_bitmap_key(generation, field, interval), *bitmap)
            })
            .collect();
        ensure!(
            hash_entries(
                &self.port_bitmaps,
                |key| key >> 31 == generation,
                |key| *key
            )? == ports,
            "{} does not hold the set in force",
            names::PORT_BITMAPS_MAP
        );
        Ok(())
    }
}

/// A trie's entries of the generation whose byte leads the key: (prefix length, key bytes).
fn trie_entries<K: Pod + AsRef<[u8]>>(
    trie: &LpmTrie<MapData, K, RuleBitmap>,
    generation: u8,
) -> Result<BTreeMap<(u32, Vec<u8>), RuleBitmap>, MapError> {
    let mut entries = BTreeMap::new();
    for entry in trie.iter() {
        let (key, bitmap) = entry?;
        let data = key.data();
        if data.as_ref()[0] == generation {
            entries.insert((key.prefix_len(), data.as_ref().to_vec()), bitmap);
        }
    }
    Ok(entries)
}

/// A hash map's entries that `keep` selects, keyed as `ordered` makes them.
fn hash_entries<K: Pod, O: Ord>(
    map: &BpfHashMap<MapData, K, RuleBitmap>,
    keep: impl Fn(&K) -> bool,
    ordered: impl Fn(&K) -> O,
) -> Result<BTreeMap<O, RuleBitmap>, MapError> {
    let mut entries = BTreeMap::new();
    for entry in map.iter() {
        let (key, bitmap) = entry?;
        if keep(&key) {
            entries.insert(ordered(&key), bitmap);
        }
    }
    Ok(entries)
}
