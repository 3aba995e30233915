//! `rule add|del|list`, `policy` and `apply`: each reads the rule set in force, changes it,
//! and commits it whole (see [`FilterMaps::commit`]).

use std::path::Path;

use anyhow::{Context as _, Result};
use net_common::rule::{ICMP_TYPE_ANY, PROTO_ANY, PortRange, Prefix};

use crate::{
    cli::{FragmentsArg, MalformedArg, PolicyArg, RuleArgs, RuleCommand},
    filter::{
        Changes, FilterMaps, NewRule, RuleSet, account,
        file::{self, parse_rules_file},
        limit::action_text,
        listing::RulesRecord,
        render,
        spec::{self, build_match},
    },
    iface::IfaceName,
    last_apply::LastApply,
    pins::PinDir,
    preflight,
    process::emit,
};

/// The filter maps of `iface`, locked for this command.
fn open(iface: &IfaceName) -> Result<FilterMaps> {
    preflight::require_privileges()?;
    preflight::ensure_bpffs()?;
    FilterMaps::from_pins(&PinDir::new(iface))
}

/// The rules file at `path`, read and checked, its notes told.
pub fn read_rules_file(iface: &IfaceName, path: &Path) -> Result<file::RulesFile> {
    let text = std::fs::read_to_string(path).map_err(|error| {
        let hint = if error.kind() == std::io::ErrorKind::NotFound {
            format!(
                " (`netxdp rule list {iface} --toml > {}` writes one from the rules in force)",
                path.display()
            )
        } else {
            String::new()
        };
        anyhow::Error::new(error)
            .context(format!("reading the rules file {}{hint}", path.display()))
    })?;
    let wanted = parse_rules_file(&text).with_context(|| format!("in {}", path.display()))?;
    for note in &wanted.notes {
        eprintln!("note: {}: {note}", path.display());
    }
    Ok(wanted)
}

/// The filter maps of `iface` for reading: no lock, so that a listing never waits for a
/// change under way (it sees the set before or after it).
fn open_for_reading(iface: &IfaceName) -> Result<FilterMaps> {
    preflight::require_privileges()?;
    preflight::ensure_bpffs()?;
    FilterMaps::read_pins(&PinDir::new(iface))
}

pub fn rule(command: RuleCommand) -> Result<()> {
    match command {
        RuleCommand::Add { iface, rule } => add(&iface, rule),
        RuleCommand::Del { iface, ids } => {
            let mut maps = open(&iface)?;
            let mut set = maps.load()?;
            for &id in &ids {
                set.remove(id)?;
            }
            maps.commit(&mut set)?;
            let ids: Vec<String> = ids.iter().map(u32::to_string).collect();
            eprintln!("deleted rule {} from {iface}", ids.join(", "));
            Ok(())
        }
        RuleCommand::List { iface, json, toml } => {
            let maps = open_for_reading(&iface)?;
            let set = maps.load()?;
            if toml {
                return emit(render::render_rules_file(&set).trim_end());
            }
            let counters = maps.counters(set.rules())?;
            let record = RulesRecord::new(iface.as_str(), &set, &counters);
            if json {
                emit(&serde_json::to_string(&record)?)
            } else {
                emit(record.to_text().trim_end())
            }
        }
    }
}

fn add(iface: &IfaceName, args: RuleArgs) -> Result<()> {
    let action = args.action_text();
    let limit = args.limit()?;
    let (src, src_note) = args.src.unwrap_or((Prefix::ANY, None));
    let (dst, dst_note) = args.dst.unwrap_or((Prefix::ANY, None));
    for note in [src_note, dst_note].into_iter().flatten() {
        eprintln!("note: {note}");
    }
    let matches = build_match(
        src,
        dst,
        args.proto.unwrap_or(PROTO_ANY),
        args.sport.unwrap_or(PortRange::ANY),
        args.dport.unwrap_or(PortRange::ANY),
        args.icmp_type.unwrap_or(ICMP_TYPE_ANY),
    )?;
    let mut maps = open(iface)?;
    let mut set = maps.load()?;
    let id = set.add(NewRule {
        action: args.action.into(),
        priority: args.priority,
        matches,
        limit,
    })?;
    maps.commit(&mut set)?;
    let action = set.get(id).map_or_else(|| action.to_owned(), action_text);
    eprintln!(
        "added rule {id} to {iface}: {action} {}",
        spec::match_text(&matches)
    );
    emit(&id.to_string())
}

pub fn policy(
    iface: &IfaceName,
    policy: Option<PolicyArg>,
    fragments: Option<FragmentsArg>,
    malformed: Option<MalformedArg>,
) -> Result<()> {
    let mut maps = open(iface)?;
    let mut set = maps.load()?;
    if policy.is_some() || fragments.is_some() || malformed.is_some() {
        if let Some(policy) = policy {
            set.policy = policy.into();
        }
        if let Some(fragments) = fragments {
            set.fragments = fragments.into();
        }
        if let Some(malformed) = malformed {
            set.malformed = malformed.into();
        }
        maps.commit(&mut set)?;
    }
    emit(&describe_policy(iface, &set))
}

fn describe_policy(iface: &IfaceName, set: &RuleSet) -> String {
    format!(
        "{iface}: policy {}, fragments {}, malformed {} ({} rules)",
        set.policy.as_str(),
        set.fragments.as_str(),
        set.malformed.as_str(),
        set.rules().len()
    )
}

pub fn apply(iface: &IfaceName, path: &Path, dry_run: bool, diff: bool) -> Result<()> {
    // Before the file is read: without root, an unreadable file would hide the real problem.
    preflight::require_privileges()?;
    if dry_run {
        let plan = Plan::make(iface, path)?;
        return emit(account::render_changes(&plan.before, &plan.after, &plan.changes).trim_end());
    }
    let applied = put_in_force(iface, path)?;
    if diff {
        eprint!("{}", applied.diff);
    } else {
        eprintln!("{}", applied.summary);
    }
    emit(&format!(
        "applied {} to {}",
        path.display(),
        describe_policy(iface, &applied.after)
    ))
}

/// What a rules file would change.
struct Plan {
    maps: FilterMaps,
    before: RuleSet,
    after: RuleSet,
    changes: Changes,
}

impl Plan {
    fn make(iface: &IfaceName, path: &Path) -> Result<Self> {
        let wanted = read_rules_file(iface, path)?;
        let maps = open(iface)?;
        let before = maps.load()?;
        let (after, changes) = wanted.applied_to(&before)?;
        Ok(Self {
            maps,
            before,
            after,
            changes,
        })
    }
}

/// A rules file put in force.
pub struct Applied {
    /// One line: how many rules were added, removed, changed and kept; settings changed.
    pub summary: String,
    /// Every rule added, removed or changed.
    pub diff: String,
    pub after: RuleSet,
}

/// Reads the rules file at `path` and puts it in force on `iface`, atomically, and records
/// the outcome for `status` and `serve` ([`LastApply`]); on any error the rules in force
/// stay.
pub fn put_in_force(iface: &IfaceName, path: &Path) -> Result<Applied> {
    let applied = Plan::make(iface, path).and_then(|mut plan| {
        plan.maps.commit(&mut plan.after)?;
        Ok(Applied {
            summary: account::summarize_changes(&plan.before, &plan.after, &plan.changes),
            diff: account::render_changes(&plan.before, &plan.after, &plan.changes),
            after: plan.after,
        })
    });
    let outcome = match &applied {
        Ok(applied) => Ok(applied.summary.clone()),
        Err(error) => Err(anyhow::anyhow!("{error:#}")),
    };
    if let Err(error) = LastApply::new(path, &outcome).record(iface) {
        tracing::warn!("recording the outcome of apply: {error:#}");
    }
    applied
}
