//! Bans: sources whose packets the kernel drops before the rules until their ban ends, kept
//! in the attachment's pinned LPM tries (see `net_common::ban`).
//!
//! ```no_run
//! use std::time::Duration;
//! use netxdp::{bans::BanTable, filter::spec::parse_prefix, pins::PinDir};
//!
//! let mut bans = BanTable::from_pins(&PinDir::new(&"eth0".parse()?))?;
//! bans.add(parse_prefix("198.51.100.0/24")?.0, Duration::from_secs(30))?;
//! # Ok::<(), anyhow::Error>(())
//! ```

use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use aya::{
    Ebpf,
    maps::{Array, Map, MapData, lpm_trie::Key, lpm_trie::LpmTrie},
};
use net_common::{
    ban::{BanEntry, MAX_BANS},
    names,
    rule::{Family, Prefix},
};
use serde::Serialize;

use crate::{
    clock::coarse_monotonic_ns as now_ns, filter::spec::prefix_text, lock::IfaceLock, pins::PinDir,
};

/// One ban in force.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ban {
    pub prefix: Prefix,
    /// CLOCK_MONOTONIC_COARSE nanoseconds at which it ends: the kernel program's clock.
    pub expires_ns: u64,
}

/// An attachment's bans.
pub struct BanTable {
    v4: LpmTrie<MapData, [u8; 4], BanEntry>,
    v6: LpmTrie<MapData, [u8; 16], BanEntry>,
    count: Array<MapData, u32>,
    /// Held while this value lives, on pinned maps: one writer per interface at a time.
    _lock: Option<IfaceLock>,
}

impl BanTable {
    /// The bans of a pinned attachment, locked against other netxdp processes.
    pub fn from_pins(pins: &PinDir) -> Result<Self> {
        let lock = IfaceLock::for_changes(pins)?;
        Self::open(|name| pins.open_map(name), Some(lock))
    }

    /// The bans of a pinned attachment, for reading only: no lock.
    pub fn read_pins(pins: &PinDir) -> Result<Self> {
        Self::open(|name| pins.open_map(name), None)
    }

    /// The bans of an object this process loaded; the maps leave the object.
    pub fn take_from(ebpf: &mut Ebpf) -> Result<Self> {
        let mut take = |name: &str| match ebpf.take_map(name) {
            Some(Map::LpmTrie(data) | Map::Array(data)) => Ok(data),
            _ => bail!("the object has no {name} map"),
        };
        Self::open(&mut take, None)
    }

    fn open(
        mut open: impl FnMut(&str) -> Result<MapData>,
        lock: Option<IfaceLock>,
    ) -> Result<Self> {
        Ok(Self {
            v4: Map::LpmTrie(open(names::BANS_V4_MAP)?).try_into()?,
            v6: Map::LpmTrie(open(names::BANS_V6_MAP)?).try_into()?,
            count: Map::Array(open(names::BAN_COUNT_MAP)?).try_into()?,
            _lock: lock,
        })
    }

    /// Bans `prefix` for `duration` from now (a ban already there is replaced). Bans that
    /// have ended are removed first, so that they take no room.
    pub fn add(&mut self, prefix: Prefix, duration: Duration) -> Result<Ban> {
        Ok(self.add_all(&[prefix], duration)?[0])
    }

    /// Bans every one of `prefixes` for `duration` from now, as [`BanTable::add`] does one.
    pub fn add_all(&mut self, prefixes: &[Prefix], duration: Duration) -> Result<Vec<Ban>> {
        let now = now_ns();
        self.remove_ended(now)?;
        let expires_ns = now.saturating_add(duration.as_nanos().min(u64::MAX.into()) as u64);
        let entry = BanEntry { expires_ns };
        let mut added = Vec::with_capacity(prefixes.len());
        for &prefix in prefixes {
            let inserted = match prefix.family() {
                Family::Ipv4 => self.v4.insert(&v4_key(&prefix), entry, 0),
                Family::Ipv6 => self
                    .v6
                    .insert(&Key::new(prefix.len.into(), prefix.addr), entry, 0),
                Family::Any => bail!("a ban names an IPv4 or IPv6 address or prefix, not `any`"),
            };
            let inserted = inserted.with_context(|| {
                format!(
                    "banning {} (each family holds {MAX_BANS} bans; `netxdp bans` lists them)",
                    prefix_text(&prefix)
                )
            });
            if let Err(error) = inserted {
                self.recount()?;
                return Err(error);
            }
            added.push(Ban { prefix, expires_ns });
        }
        self.recount()?;
        Ok(added)
    }

    /// Lifts every ban.
    pub fn clear(&mut self) -> Result<()> {
        for ban in self.all()? {
            self.delete(ban.prefix);
        }
        self.recount()
    }

    /// Lifts the ban on exactly `prefix`; whether there was one.
    pub fn remove(&mut self, prefix: Prefix) -> Result<bool> {
        let found = self.delete(prefix);
        self.recount()?;
        Ok(found)
    }

    /// Deletes `prefix`'s entry, leaving the count to the caller; whether there was one.
    fn delete(&mut self, prefix: Prefix) -> bool {
        match prefix.family() {
            Family::Ipv4 => self.v4.remove(&v4_key(&prefix)).is_ok(),
            Family::Ipv6 => self
                .v6
                .remove(&Key::new(prefix.len.into(), prefix.addr))
                .is_ok(),
            Family::Any => false,
        }
    }

    /// How many bans are in force on the attachment pinned at `pins`, for `status` and
    /// `serve`.
    pub fn in_force(pins: &PinDir) -> Result<usize> {
        Ok(Self::read_pins(pins)?.list()?.len())
    }

    /// Every ban, ended ones included, IPv4 first.
    fn all(&self) -> Result<Vec<Ban>> {
        let mut bans = Vec::new();
        for entry in self.v4.iter() {
            let (key, entry) = entry.context("reading BANS_V4")?;
            let data = key.data();
            let mut addr = [0; 16];
            addr[..4].copy_from_slice(&data);
            bans.push(Ban {
                prefix: Prefix::new(Family::Ipv4, addr, key.prefix_len() as u8),
                expires_ns: entry.expires_ns,
            });
        }
        for entry in self.v6.iter() {
            let (key, entry) = entry.context("reading BANS_V6")?;
            bans.push(Ban {
                prefix: Prefix::new(Family::Ipv6, key.data(), key.prefix_len() as u8),
                expires_ns: entry.expires_ns,
            });
        }
        Ok(bans)
    }

    /// The bans in force now.
    pub fn list(&self) -> Result<Vec<Ban>> {
        let now = now_ns();
        Ok(self
            .all()?
            .into_iter()
            .filter(|ban| ban.expires_ns > now)
            .collect())
    }

    fn remove_ended(&mut self, now: u64) -> Result<()> {
        for ban in self.all()? {
            if ban.expires_ns <= now {
                self.delete(ban.prefix);
            }
        }
        Ok(())
    }

    /// Writes how many entries the tries hold, which spares the kernel its lookups at 0.
    /// Limits ban sources from the kernel too, which makes a count of 0 non-zero after writing
    /// its entry: a 0 written here is checked against the tries once more, so that a ban the
    /// kernel made meanwhile is never left unlooked-for. (Any other count does as well as the
    /// exact one: the kernel only asks whether it is 0.)
    fn recount(&mut self) -> Result<()> {
        let entries = |table: &Self| (table.v4.keys().count() + table.v6.keys().count()) as u32;
        let count = entries(self);
        self.count.set(0, count, 0).context("writing BAN_COUNT")?;
        if count == 0 {
            let count = entries(self);
            if count != 0 {
                self.count.set(0, count, 0).context("writing BAN_COUNT")?;
            }
        }
        Ok(())
    }
}

fn v4_key(prefix: &Prefix) -> Key<[u8; 4]> {
    let addr = prefix.addr;
    Key::new(prefix.len.into(), [addr[0], addr[1], addr[2], addr[3]])
}

/// `netxdp bans --json`.
#[derive(Debug, Serialize)]
pub struct BansRecord {
    pub schema: &'static str,
    pub iface: String,
    pub bans: Vec<BanRecord>,
}

#[derive(Debug, Serialize)]
pub struct BanRecord {
    pub prefix: String,
    /// Seconds until the ban ends.
    pub expires_in_secs: f64,
}

pub const BANS_SCHEMA: &str = "netxdp.bans/v1";

impl BansRecord {
    pub fn new(iface: &str, bans: &[Ban]) -> Self {
        let now = now_ns();
        Self {
            schema: BANS_SCHEMA,
            iface: iface.to_owned(),
            bans: bans
                .iter()
                .map(|ban| BanRecord {
                    prefix: prefix_text(&ban.prefix),
                    expires_in_secs: ban.expires_ns.saturating_sub(now) as f64 / 1e9,
                })
                .collect(),
        }
    }

    pub fn to_text(&self) -> String {
        if self.bans.is_empty() {
            return format!("{}: no bans\n", self.iface);
        }
        let mut out = format!(
            "{}: {} ban(s)\n{:<44} {:>12}\n",
            self.iface,
            self.bans.len(),
            "PREFIX",
            "ENDS IN"
        );
        for ban in &self.bans {
            out.push_str(&format!(
                "{:<44} {:>11.0}s\n",
                ban.prefix, ban.expires_in_secs
            ));
        }
        out
    }
}
