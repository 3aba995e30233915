//! What packaging promises an operator, tested without systemd and without installing:
//! netxdp@.service's own ExecStart and ExecStop lines run for real against a veth pair, the
//! example in /etc/netxdp/README is a valid rules file, and without root every command that
//! touches the kernel says so in one line. (`cargo xtask deb --check` installs the package.)

mod support;

use std::{
    fs,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    process::{Command, Output},
    time::Duration,
};

use netxdp::{netns::VethNet, traffic};
use serde_json::Value;
use support::{DetachOnDrop, PATIENCE, eventually, kernel_available, xdp_on_link};

const UNIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/netxdp@.service");
const ETC_README: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/README");
/// Where the package puts the binary, as the unit names it.
const INSTALLED_BINARY: &str = "/usr/sbin/netxdp";
const RULES_DIR: &str = "/etc/netxdp";

/// The values of `key=` lines in the unit's [Service] section, in order.
fn service_lines(unit: &str, key: &str) -> Vec<String> {
    let mut in_service = false;
    let mut lines = Vec::new();
    for line in unit.lines().map(str::trim) {
        if line.starts_with('[') {
            in_service = line == "[Service]";
        } else if in_service && let Some(value) = line.strip_prefix(&format!("{key}=")) {
            lines.push(value.to_owned());
        }
    }
    lines
}

/// A unit's command line as systemd would run it for instance `iface`, with the freshly
/// built binary in place of the installed one. The unit uses no quoting and no prefixes
/// (`-`, `@`, `+`), which this would have to handle: the assertions say so.
fn command_for(line: &str, iface: &str) -> Vec<String> {
    assert!(
        !line.contains(['"', '\'', '$', '\\']) && !line.starts_with(['-', '@', '+', '!', ':']),
        "the unit's command {line:?} needs systemd's quoting rules: extend this test"
    );
    let words: Vec<String> = line
        .replace("%I", iface)
        .replace("%i", iface)
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        words[0], INSTALLED_BINARY,
        "the unit runs the binary where the package installs it"
    );
    words
}

fn run(words: &[String]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_netxdp"))
        .args(&words[1..])
        .output()
        .expect("run netxdp")
}

fn run_ok(words: &[String]) -> String {
    let output = run(words);
    assert!(
        output.status.success(),
        "{words:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// /etc/netxdp/IFACE.toml, written for the test and removed on drop, with /etc/netxdp if
/// the test made it (an installed package's directory stays).
struct RulesFile {
    path: PathBuf,
    made_dir: bool,
}

impl RulesFile {
    fn write(iface: &str, text: &str) -> Self {
        let made_dir = !Path::new(RULES_DIR).exists();
        fs::create_dir_all(RULES_DIR).expect("create /etc/netxdp");
        let path = Path::new(RULES_DIR).join(format!("{iface}.toml"));
        let file = RulesFile { path, made_dir };
        fs::write(&file.path, text).expect("write the rules file");
        file
    }
}

impl Drop for RulesFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
        if self.made_dir {
            let _ = fs::remove_dir(RULES_DIR);
        }
    }
}

fn rules_json(iface: &str) -> Value {
    let text = run_ok(&[
        INSTALLED_BINARY.to_owned(),
        "rule".into(),
        "list".into(),
        iface.into(),
        "--json".into(),
    ]);
    serde_json::from_str(&text).expect("JSON")
}

#[test]
fn the_units_start_and_stop_lines_put_the_rules_file_in_force_and_remove_everything() {
    let test = "the_units_start_and_stop_lines_put_the_rules_file_in_force_and_remove_everything";
    if !kernel_available(test) {
        return;
    }
    let unit = fs::read_to_string(UNIT).expect("read the unit");
    let starts = service_lines(&unit, "ExecStart");
    let stops = service_lines(&unit, "ExecStopPost");
    let reloads = service_lines(&unit, "ExecReload");
    assert_eq!(starts.len(), 1, "attach with its rules: {starts:?}");
    assert_eq!(stops.len(), 1, "detach: {stops:?}");
    assert_eq!(reloads.len(), 1, "apply: {reloads:?}");
    assert!(
        service_lines(&unit, "ExecStop").is_empty(),
        "detach runs as ExecStopPost"
    );
    assert!(service_lines(&unit, "Type") == ["oneshot"]);
    assert!(service_lines(&unit, "RemainAfterExit") == ["yes"]);

    let subnet = 25;
    let net = VethNet::create("unt", subnet).expect("veth pair");
    let iface = net.host_if().to_owned();
    let _detach = DetachOnDrop(iface.clone());
    let starts: Vec<Vec<String>> = starts
        .iter()
        .map(|line| command_for(line, &iface))
        .collect();
    let stop = command_for(&stops[0], &iface);
    let reload = command_for(&reloads[0], &iface);
    assert!(
        starts[0]
            .windows(2)
            .any(|words| words[0] == "--rules" && words[1] == format!("/etc/netxdp/{iface}.toml")),
        "attach puts /etc/netxdp/IFACE.toml in force: {:?}",
        starts[0]
    );

    // Without its rules file the unit fails, naming the file and how to write one, and
    // attaches nothing.
    let missing = run(&starts[0]);
    let said = String::from_utf8_lossy(&missing.stderr);
    assert_eq!(missing.status.code(), Some(1), "{said}");
    assert!(
        said.contains(&format!("/etc/netxdp/{iface}.toml")) && said.contains("--toml >"),
        "{said}"
    );
    assert_eq!(xdp_on_link(&iface), "none", "nothing attached: {said}");
    assert!(!support::pins(&iface).dir().exists(), "no pins: {said}");

    let peer = VethNet::peer_v4(subnet);
    let _rules = RulesFile::write(
        &iface,
        &format!(
            "policy = \"pass\"\n\n\
             [[rule]]\naction = \"drop\"\nsrc = \"{peer}/32\"\nproto = \"udp\"\ndport = 9\n"
        ),
    );
    for start in &starts {
        run_ok(start);
    }
    // A second start (systemd restarting after a crash of its own, say) changes nothing.
    for start in &starts {
        run_ok(start);
    }
    assert_ne!(xdp_on_link(&iface), "none", "attached after start");
    let record = rules_json(&iface);
    let rules = record["rules"].as_array().expect("rules");
    assert_eq!(rules.len(), 1, "{record}");
    assert_eq!(rules[0]["action"], "drop", "{record}");
    assert_eq!(rules[0]["dport"], "9", "{record}");

    let host = IpAddr::V4(VethNet::host_v4(subnet));
    let dropped_sink = traffic::UdpSink::bind(SocketAddr::new(host, 9)).expect("bind 9");
    let passed_sink = traffic::UdpSink::bind(SocketAddr::new(host, 10)).expect("bind 10");
    let (dropped, passed) = (5usize, 4usize);
    net.run_in_namespace(move || {
        traffic::udp_burst(SocketAddr::new(host, 9), dropped, &[1; 16])?;
        traffic::udp_burst(SocketAddr::new(host, 10), passed, &[2; 16])
    })
    .expect("traffic");
    let quiet = Duration::from_millis(200);
    assert_eq!(
        dropped_sink.drain(quiet).expect("drain"),
        0,
        "port 9 dropped"
    );
    assert_eq!(
        passed_sink
            .receive(passed, PATIENCE, quiet)
            .expect("receive"),
        passed,
        "port 10 passed"
    );
    let record = eventually(
        || rules_json(&iface),
        |record| record["rules"][0]["packets"].as_u64() == Some(dropped as u64),
    );
    assert_eq!(
        record["rules"][0]["packets"].as_u64(),
        Some(dropped as u64),
        "{record}"
    );

    // Reload: an edited file swapped in whole, counters of the kept rule kept.
    std::fs::write(
        format!("{RULES_DIR}/{iface}.toml"),
        format!(
            "policy = \"pass\"\n\n\
             [[rule]]\naction = \"drop\"\nsrc = \"{peer}/32\"\nproto = \"udp\"\ndport = 9\n\n\
             [[rule]]\naction = \"drop\"\nproto = \"udp\"\ndport = 10\n"
        ),
    )
    .expect("edit the rules file");
    run_ok(&reload);
    let record = rules_json(&iface);
    assert_eq!(
        record["rules"].as_array().map(Vec::len),
        Some(2),
        "{record}"
    );
    assert_eq!(
        record["rules"][0]["packets"].as_u64(),
        Some(dropped as u64),
        "{record}"
    );

    run_ok(&stop);
    assert_eq!(xdp_on_link(&iface), "none", "no XDP program after stop");
    assert!(!support::pins(&iface).dir().exists(), "no pins after stop");
}

#[test]
fn the_example_in_etc_netxdp_readme_is_a_valid_rules_file() {
    let readme = fs::read_to_string(ETC_README).expect("read");
    let example: String = readme
        .split_once("An example, for eth0.toml:")
        .expect("the README has an example")
        .1
        .lines()
        .filter_map(|line| line.strip_prefix("    ").or(line.is_empty().then_some("")))
        .map(|line| format!("{line}\n"))
        .collect();
    let file = netxdp::filter::file::parse_rules_file(&example)
        .unwrap_or_else(|error| panic!("{error}\n{example}"));
    assert_eq!(file.rules.len(), 2, "{example}");
}

#[test]
fn without_root_every_kernel_command_says_so_in_one_line() {
    let test = "without_root_every_kernel_command_says_so_in_one_line";
    if !kernel_available(test) {
        return;
    }
    // A copy that `nobody` can reach: the target directory may sit under /root.
    let dir = std::env::temp_dir().join(format!("netxdp-noroot-{}", std::process::id()));
    fs::create_dir_all(&dir).expect("temp dir");
    let binary = dir.join("netxdp");
    fs::copy(env!("CARGO_BIN_EXE_netxdp"), &binary).expect("copy");
    let rules = dir.join("rules.toml");
    fs::write(&rules, "policy = \"pass\"\n").expect("write");
    use std::os::unix::fs::PermissionsExt as _;
    for (path, mode) in [(&dir, 0o755), (&binary, 0o755), (&rules, 0o644)] {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
    }
    // A child that another test thread forked while the copy was open for writing holds
    // that descriptor until it execs, and meanwhile the copy cannot be run (ETXTBSY).
    let ran = eventually(
        || Command::new(&binary).arg("--version").output(),
        |ran| !matches!(ran, Err(error) if error.raw_os_error() == Some(libc::ETXTBSY)),
    );
    ran.expect("run the copy");
    let rules = rules.to_str().expect("utf-8");
    let commands: &[&[&str]] = &[
        &["attach", "lo"],
        &["attach", "lo", "--mode", "native"],
        &["detach", "lo"],
        &["flows", "lo"],
        &["rule", "add", "lo", "--action", "drop"],
        &["rule", "del", "lo", "1"],
        &["rule", "list", "lo"],
        &["policy", "lo"],
        &["policy", "lo", "drop"],
        &["apply", "lo", rules],
        &["apply", "lo", "/nonexistent.toml"],
        &["ban", "add", "lo", "198.18.0.1", "--for", "1m"],
        &["ban", "del", "lo", "198.18.0.1"],
        &["bans", "lo"],
        &["status"],
        &["stats", "--count", "1"],
        &["top", "--count", "1"],
        &["watch", "lo", "--count", "1"],
        &["serve"],
        &["demo", "--seconds", "1"],
    ];
    let mut failures = Vec::new();
    for args in commands {
        let output = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&binary)
            .args(*args)
            .output()
            .expect("setpriv (util-linux)");
        let said = String::from_utf8_lossy(&output.stderr);
        let one_line = said.lines().count() == 1;
        if output.status.code() != Some(1)
            || !one_line
            || !said.contains("needs root (or CAP_BPF and CAP_NET_ADMIN)")
            || !said.contains("sudo")
        {
            failures.push(format!("{args:?}: {} {said}", output.status));
        }
    }
    let _ = fs::remove_dir_all(&dir);
    assert!(failures.is_empty(), "{failures:#?}");
}
