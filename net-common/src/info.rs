//! How netxdp attached to an interface, kept in a pinned map beside the program so that
//! `netxdp status` can explain an attachment without any state outside bpffs.

/// XDP attach mode, as `ip link` shows it (`xdp` for native, `xdpgeneric` for skb).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    /// Native (driver) mode.
    Native = 1,
    /// Generic (skb) mode.
    Skb = 2,
}

impl AttachMode {
    pub fn from_raw(raw: u32) -> Option<Self> {
        match raw {
            1 => Some(Self::Native),
            2 => Some(Self::Skb),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Native => "native",
            Self::Skb => "skb",
        }
    }
}

/// The layout of netxdp's pinned maps: raised whenever a pinned map's type, key, value or
/// meaning changes, so that a netxdp never reuses maps another layout made (`attach
/// --upgrade` re-creates them).
///
/// 1. Before the version was recorded (the record holds 0).
/// 2. The version recorded in [`AttachInfo::layout`].
/// 3. A capture holds a lease ([`crate::capture::CaptureConfig::expires_ns`]).
/// 4. Bans: `STATS` counts drops by ban, and the ban tables are pinned.
/// 5. Limits: `RULES` holds each rule's [`crate::limit::Limit`], `RULE_COUNTERS` counts limit
///    drops and bans, `STATS` drops by limit, and the limit table is pinned.
pub const LAYOUT_VERSION: u32 = 5;

/// The single value of the `INFO` array map. Written by the loader at attach; never read
/// by the kernel program. Its size and the place of [`AttachInfo::layout`] never change, so
/// that every netxdp can read which layout made an attachment's maps.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AttachInfo {
    /// Interface index the program is attached to.
    pub ifindex: u32,
    /// [`AttachMode`] as its `u32` value; 0 until the loader has written the record.
    pub mode: u32,
    /// Wall-clock attach time, seconds since the Unix epoch.
    pub attached_at_unix: u64,
    /// Flows the flow table holds; 0 when flow tracking is off.
    pub flow_table_size: u32,
    /// The [`LAYOUT_VERSION`] of the netxdp that made the maps.
    pub layout: u32,
}

impl AttachInfo {
    pub fn mode(&self) -> Option<AttachMode> {
        AttachMode::from_raw(self.mode)
    }

    /// The layout of the maps this record describes (records before versions hold 0).
    pub fn layout_version(&self) -> u32 {
        self.layout.max(1)
    }
}

#[cfg(feature = "user")]
// SAFETY: plain `#[repr(C)]` integers with no padding (4 + 4 + 8 + 4 + 4 bytes).
unsafe impl aya::Pod for AttachInfo {}
