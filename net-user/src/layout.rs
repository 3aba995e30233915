//! The layout of an attachment's pinned maps, checked before netxdp reuses them.
//!
//! The loader reuses a pinned map by its name alone, and the program would then read values
//! of another shape, or of another meaning, as its own. So before an attach reuses pins, and
//! before a rule change writes them, every pinned map's type, key size, value size, entries
//! and flags are compared with what this netxdp's object declares, and the layout version
//! the attach record holds with [`LAYOUT_VERSION`].

use std::{collections::BTreeMap, fmt, sync::OnceLock};

use anyhow::{Context as _, Result, anyhow};
use aya::maps::{Array, MapData, MapInfo};
use aya_obj::maps::PinningType;
use net_common::{
    info::{AttachInfo, LAYOUT_VERSION},
    names,
};

use crate::{pins::PinDir, program};

/// Maps every attach makes afresh, at the size asked for: never reused, so never checked.
const MADE_AT_EACH_ATTACH: [&str; 2] = [names::FLOWS_MAP, names::SOURCES_MAP];

/// A map's type and sizes, as the kernel reports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    pub map_type: u32,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub flags: u32,
}

/// One pinned map whose shape is not this netxdp's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch {
    pub map: String,
    pub pinned: Shape,
    pub expected: Shape,
}

/// Pinned maps of another layout than this netxdp's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stale {
    pub iface: String,
    /// The layout the attach record names; `None` without a readable record.
    pub recorded: Option<u32>,
    pub mismatches: Vec<Mismatch>,
}

impl fmt::Display for Stale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let iface = &self.iface;
        let recorded = self
            .recorded
            .map_or_else(|| "an unknown layout".to_owned(), |v| format!("layout {v}"));
        write!(
            f,
            "the maps pinned for {iface} were made by a netxdp of another layout ({recorded}; \
             this netxdp's is layout {LAYOUT_VERSION})"
        )?;
        for (index, mismatch) in self.mismatches.iter().enumerate() {
            let (pinned, expected) = (mismatch.pinned, mismatch.expected);
            let differs = [
                ("type", pinned.map_type, expected.map_type),
                ("key bytes", pinned.key_size, expected.key_size),
                ("value bytes", pinned.value_size, expected.value_size),
                ("entries", pinned.max_entries, expected.max_entries),
                ("flags", pinned.flags, expected.flags),
            ]
            .into_iter()
            .filter(|(_, pinned, expected)| pinned != expected)
            .map(|(what, pinned, expected)| format!("{what} {pinned}, not {expected}"))
            .collect::<Vec<_>>()
            .join(", ");
            let lead = if index == 0 { ": " } else { "; " };
            write!(f, "{lead}{} has {differs}", mismatch.map)?;
        }
        write!(
            f,
            ". `netxdp attach {iface} --upgrade` re-creates them and carries the rules and \
             policy over (counters restart at 0)"
        )
    }
}

impl std::error::Error for Stale {}

/// Every map this netxdp's object pins, by name, as it declares it.
pub fn expected() -> Result<&'static BTreeMap<String, Shape>> {
    static EXPECTED: OnceLock<BTreeMap<String, Shape>> = OnceLock::new();
    if let Some(shapes) = EXPECTED.get() {
        return Ok(shapes);
    }
    let object = aya_obj::Object::parse(program::OBJECT)
        .map_err(|error| anyhow!("parsing the embedded XDP object: {error}"))?;
    let shapes = object
        .maps
        .iter()
        .filter(|(_, map)| map.pinning() == PinningType::ByName)
        .map(|(name, map)| {
            let shape = Shape {
                map_type: map.map_type(),
                key_size: map.key_size(),
                value_size: map.value_size(),
                max_entries: map.max_entries(),
                flags: map.map_flags(),
            };
            (name.to_owned(), shape)
        })
        .collect();
    Ok(EXPECTED.get_or_init(|| shapes))
}

/// The shape of a pinned map.
fn pinned_shape(path: &std::path::Path) -> Result<Shape> {
    let info = MapInfo::from_pin(path).with_context(|| format!("opening {}", path.display()))?;
    Ok(Shape {
        map_type: info
            .map_type()
            .with_context(|| format!("the type of {}", path.display()))? as u32,
        key_size: info.key_size(),
        value_size: info.value_size(),
        max_entries: info.max_entries(),
        flags: info.map_flags(),
    })
}

/// The layout the attach record of `pins` names, if it is there and readable.
pub fn recorded(pins: &PinDir) -> Option<u32> {
    let map = pins.open_map(names::INFO_MAP).ok()?;
    let info: Array<MapData, AttachInfo> = Array::try_from(aya::maps::Map::Array(map)).ok()?;
    info.get(&0, 0).ok().map(|record| record.layout_version())
}

/// Compares the maps pinned for `pins` with this netxdp's: `None` when there are none, or
/// when every one is of this layout.
pub fn check(pins: &PinDir) -> Result<Option<Stale>> {
    let mut pinned_any = false;
    let mut mismatches = Vec::new();
    for (name, expected) in expected()? {
        let path = pins.dir().join(name);
        if MADE_AT_EACH_ATTACH.contains(&name.as_str()) || !path.exists() {
            continue;
        }
        pinned_any = true;
        let pinned = pinned_shape(&path)?;
        if pinned != *expected {
            mismatches.push(Mismatch {
                map: name.clone(),
                pinned,
                expected: *expected,
            });
        }
    }
    if !pinned_any {
        return Ok(None);
    }
    let recorded = recorded(pins);
    if recorded == Some(LAYOUT_VERSION) && mismatches.is_empty() {
        return Ok(None);
    }
    Ok(Some(Stale {
        iface: pins.iface().to_string(),
        recorded,
        mismatches,
    }))
}

/// Fails with the way out when the maps pinned for `pins` are not of this layout.
pub fn require_current(pins: &PinDir) -> Result<()> {
    match check(pins)? {
        None => Ok(()),
        Some(stale) => Err(stale.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_object_declares_every_pinned_map_the_loader_names() {
        let shapes = expected().expect("the embedded object parses");
        for name in names::FILTER_MAPS.iter().chain(&[
            names::INFO_MAP,
            names::STATS_MAP,
            names::CAPTURE_MAP,
        ]) {
            assert!(shapes.contains_key(*name), "{name} is not pinned by name");
        }
        assert_eq!(
            shapes[names::INFO_MAP].value_size as usize,
            size_of::<AttachInfo>(),
            "the attach record keeps its size across layouts"
        );
    }

    #[test]
    fn a_stale_layout_names_each_difference_and_the_way_out() {
        let shape = Shape {
            map_type: 2,
            key_size: 4,
            value_size: 48,
            max_entries: 1024,
            flags: 0,
        };
        let stale = Stale {
            iface: "eth0".into(),
            recorded: Some(1),
            mismatches: vec![Mismatch {
                map: "TREE_NODES".into(),
                pinned: Shape {
                    value_size: 40,
                    ..shape
                },
                expected: shape,
            }],
        };
        assert_eq!(
            stale.to_string(),
            format!(
                "the maps pinned for eth0 were made by a netxdp of another layout (layout 1; \
                 this netxdp's is layout {LAYOUT_VERSION}): TREE_NODES has value bytes 40, not \
                 48. `netxdp attach eth0 --upgrade` re-creates them and carries the rules and \
                 policy over (counters restart at 0)"
            )
        );
    }
}
