//! `netxdp generate`: the man pages and shell completions that packaging installs, made from
//! the same clap definitions as `--help`, so the three never disagree.

use std::{
    fs,
    io::{self, Write as _},
    path::Path,
};

use anyhow::{Context as _, Result};
use clap::CommandFactory as _;
use clap_mangen::{
    Man,
    roff::{Roff, roman},
};

use crate::cli::{Cli, GenerateCommand};

/// Man pages go in section 8, system administration, as xdp-filter(8) and ip(8) do.
pub const MAN_SECTION: &str = "8";

pub fn run(command: GenerateCommand) -> Result<()> {
    match command {
        GenerateCommand::Man { dir } => {
            let pages = man_pages(&dir)?;
            eprintln!("wrote {} man pages to {}", pages, dir.display());
            Ok(())
        }
        GenerateCommand::Completion { shell } => {
            let mut out = io::stdout().lock();
            clap_complete::generate(shell, &mut completion_command(), "netxdp", &mut out);
            Ok(out.flush()?)
        }
    }
}

/// The command line as completions offer it. clap_complete would offer hidden commands too
/// (`generate`), so they are left out of this copy.
fn completion_command() -> clap::Command {
    let full = Cli::command();
    clap::Command::new("netxdp")
        .version(env!("CARGO_PKG_VERSION"))
        .subcommand_required(true)
        .args(full.get_arguments().cloned())
        .subcommands(
            full.get_subcommands()
                .filter(|sub| !sub.is_hide_set())
                .cloned(),
        )
}

/// Writes netxdp.8 and one page per visible subcommand (netxdp-attach.8,
/// netxdp-rule-add.8, ...) into `dir`; returns how many.
pub fn man_pages(dir: &Path) -> Result<usize> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut command = Cli::command().disable_help_subcommand(true);
    // Gives every subcommand its display name (netxdp-rule-add) and bin name (netxdp rule add).
    command.build();
    let mut written = 0;
    write_pages(&command, None, dir, &mut written)?;
    Ok(written)
}

fn write_pages(
    command: &clap::Command,
    parent: Option<&str>,
    dir: &Path,
    written: &mut usize,
) -> Result<()> {
    let name = command
        .get_display_name()
        .unwrap_or_else(|| command.get_name())
        .to_owned();
    let path = dir.join(format!("{name}.{MAN_SECTION}"));
    fs::write(&path, render_page(command, parent)?)
        .with_context(|| format!("writing {}", path.display()))?;
    *written += 1;
    for sub in command.get_subcommands().filter(|sub| !sub.is_hide_set()) {
        write_pages(sub, Some(&name), dir, written)?;
    }
    Ok(())
}

fn render_page(command: &clap::Command, parent: Option<&str>) -> Result<Vec<u8>> {
    let man = Man::new(command.clone())
        .section(MAN_SECTION)
        // The commit's date: a page built twice from one commit is the same page.
        .date(env!("NETXDP_GIT_DATE"))
        .manual("System Administration")
        .source(concat!("netxdp ", env!("CARGO_PKG_VERSION")));
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    if command.get_arguments().any(|arg| !arg.is_hide_set()) {
        man.render_options_section(&mut page)?;
    }
    if command.get_subcommands().any(|sub| !sub.is_hide_set()) {
        man.render_subcommands_section(&mut page)?;
    }
    let mut roff = Roff::default();
    if let Some(text) = command.get_after_help() {
        after_help(&mut roff, &text.to_string());
    }
    see_also(&mut roff, command, parent);
    roff.to_writer(&mut page)?;
    Ok(page)
}

/// The examples and notes of `--help`. clap_mangen would print them as one filled paragraph,
/// running the examples together: here a block headed `Examples:` (or `Keys:`) becomes a
/// section whose lines are kept as they are, and other blocks stay filled paragraphs.
fn after_help(roff: &mut Roff, text: &str) {
    let mut in_section = false;
    for block in text.split("\n\n") {
        let mut lines = block.lines().peekable();
        let heading = lines
            .peek()
            .filter(|first| first.ends_with(':') && !first.starts_with(' '))
            .map(|first| first.trim_end_matches(':').to_uppercase());
        if let Some(heading) = heading {
            lines.next();
            roff.control("SH", [heading.as_str()]);
            in_section = true;
            roff.control("nf", []).control("RS", ["4"]);
            for line in lines {
                roff.text([roman(line.trim_start())]);
            }
            roff.control("RE", []).control("fi", []);
        } else {
            if !in_section {
                roff.control("SH", ["NOTES"]);
                in_section = true;
            }
            roff.control("PP", []);
            roff.text([roman(
                block.split_whitespace().collect::<Vec<_>>().join(" "),
            )]);
        }
    }
}

fn see_also(roff: &mut Roff, command: &clap::Command, parent: Option<&str>) {
    let mut pages: Vec<String> = parent.into_iter().map(str::to_owned).collect();
    if parent.is_none() {
        pages.extend(
            command
                .get_subcommands()
                .filter(|sub| !sub.is_hide_set())
                .filter_map(|sub| sub.get_display_name().map(str::to_owned)),
        );
        pages.extend(["xdp-filter", "ip-link", "bpftool"].map(str::to_owned));
    }
    let refs: Vec<String> = pages
        .iter()
        .map(|page| format!("{page}({MAN_SECTION})"))
        .collect();
    roff.control("SH", ["SEE ALSO"]);
    roff.text([roman(refs.join(", "))]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_page_per_visible_command_with_examples_kept_line_by_line() {
        let dir = std::env::temp_dir().join(format!("netxdp-man-{}", std::process::id()));
        let count = man_pages(&dir).unwrap();
        let mut names: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names.len(), count);
        for page in [
            "netxdp.8",
            "netxdp-attach.8",
            "netxdp-rule.8",
            "netxdp-rule-add.8",
        ] {
            assert!(names.iter().any(|name| name == page), "{page} in {names:?}");
        }
        assert!(
            !names
                .iter()
                .any(|name| name.contains("generate") || name.contains("help")),
            "{names:?}"
        );
        let attach = fs::read_to_string(dir.join("netxdp-attach.8")).unwrap();
        assert!(attach.contains(".TH netxdp-attach 8"), "{attach}");
        assert!(attach.contains(".SH EXAMPLES\n.nf\n"), "{attach}");
        assert!(
            attach.contains("\nsudo netxdp attach veth0 \\-\\-mode skb\n"),
            "{attach}"
        );
        assert!(attach.contains("netxdp(8)"), "{attach}");
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn completions_offer_every_visible_command_and_no_hidden_one() {
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
        ] {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut completion_command(), "netxdp", &mut script);
            let script = String::from_utf8(script).unwrap();
            // fish spells options without their dashes (`-l keep-rules`).
            for word in ["attach", "detach", "apply", "mode", "keep-rules", "action"] {
                assert!(script.contains(word), "{shell}: {word}");
            }
            assert!(!script.contains("generate"), "{shell}");
        }
    }
}
