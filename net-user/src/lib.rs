//! netxdp's loader and CLI, as a library so that the integration tests drive the same code
//! the binary runs.
//!
//! - [`program`]: the embedded XDP object and how it is loaded.
//! - [`iface`]: interface names, checked as the kernel checks them.
//! - [`pins`]: where an attachment lives in bpffs.
//! - [`process`]: stdout that its reader may close, and Ctrl-C or SIGTERM.
//! - [`preflight`]: the checks that turn EPERM and ENOENT into advice.
//! - [`attach`]: attach, detach and inspect pinned attachments.
//! - [`last_apply`]: the outcome of the last `apply`, for `status` and `serve`.
//! - [`layout`]: the pinned maps' layout, checked before they are reused.
//! - [`bans`]: sources dropped before the rules until their ban ends.
//! - [`filter`]: rule sets, rules files, and the kernel's filter tables.
//! - [`flows`]: the flow table read back, and how `flows` shows it.
//! - [`capture`]: copying selected packets out of the kernel, and writing them as pcap(ng).
//! - [`clock`]: the kernel program's clock, read from userspace.
//! - [`counters`]: reading the per-CPU counter block and turning it into rates.
//! - [`report`]: how counters and attachments are shown, as text and as JSON.
//! - [`serve`]: the Prometheus exporter of `netxdp serve`.
//! - [`top`]: the live full-screen view of `netxdp top`.
//! - [`cli`] and [`commands`]: the command line; [`generate`]: its man pages and completions.
//!
//! `netns`, `traffic` and `flood` (namespaces, veth pairs, traffic and floods) serve `demo`,
//! the tests and the benchmarks; they are hidden from these docs, as no part of what the
//! library offers.

pub mod attach;
pub mod bans;
pub mod bpf_batch;
pub mod bpf_syscall;
pub mod capture;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod counters;
pub mod filter;
#[doc(hidden)]
pub mod flood;
pub mod flows;
pub mod generate;
pub mod iface;
pub mod iflink;
pub mod last_apply;
pub mod layout;
pub mod lock;
#[doc(hidden)]
pub mod netns;
pub mod pins;
pub mod preflight;
pub mod process;
pub mod program;
pub mod report;
pub mod serve;
pub mod sources;
pub mod synguard;
pub mod top;
#[doc(hidden)]
pub mod traffic;
