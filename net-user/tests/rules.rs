//! Rules end to end: the real `netxdp` binary attached to a veth pair whose other end sits in
//! a namespace the test creates, rules added, deleted and applied, and real traffic from
//! kernel sockets that must reach its socket, or not, as the rules say; `apply` killed at
//! every stage, and a commit's wait for RCU.

mod support;

use std::{
    net::{IpAddr, SocketAddr},
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use netxdp::{netns::VethNet, traffic};
use serde_json::Value;
use support::{
    PATIENCE, attached_veth, eventually, fails, kernel_available, netxdp, ok, packets,
    rule_packets, rules_json, stats_snapshot, stderr, stdout, xdp_on_link,
};

#[test]
fn a_drop_rule_on_a_source_prefix_stops_ping_and_udp_until_deleted() {
    let test = "a_drop_rule_on_a_source_prefix_stops_ping_and_udp_until_deleted";
    if !kernel_available(test) {
        return;
    }
    let subnet = 15;
    let (net, iface, _detach) = attached_veth("dny", subnet);
    let host_v4 = VethNet::host_v4(subnet);
    let host_v6 = VethNet::host_v6(subnet);
    let sink = traffic::UdpSink::bind(SocketAddr::new(IpAddr::V4(host_v4), 9)).expect("bind");

    // The peer's /30, written with host bits set: accepted, normalised, and said so.
    let prefix = format!("{}/30", VethNet::peer_v4(subnet));
    let added = netxdp(&["rule", "add", &iface, "--action", "drop", "--src", &prefix]);
    assert!(added.status.success(), "{}", stderr(&added));
    assert!(
        stderr(&added).contains("normalised to 198.18.15.0/30"),
        "{}",
        stderr(&added)
    );
    let id: u64 = stdout(&added)
        .trim()
        .parse()
        .expect("rule add prints the id");

    let (pings, datagrams, pings_v6) = (3u16, 40usize, 2u16);
    // IPv4 pings wait `wait_v4` for a reply: briefly where none may come (a slow machine can
    // only make the check weaker), long where every one must.
    let send = move |wait_v4: Duration| {
        move || {
            let replies = traffic::ping(IpAddr::V4(host_v4), pings, wait_v4)?;
            traffic::udp_burst(SocketAddr::new(IpAddr::V4(host_v4), 9), datagrams, &[7; 32])?;
            let replies_v6 = traffic::ping(IpAddr::V6(host_v6), pings_v6, PATIENCE)?;
            Ok((replies, replies_v6))
        }
    };
    let sent_at = Instant::now();
    let (replies, replies_v6) = net
        .run_in_namespace(send(Duration::from_millis(300)))
        .expect("traffic");
    assert_eq!(replies, 0, "ping from the dropped prefix gets no reply");
    assert_eq!(replies_v6, pings_v6, "other traffic (IPv6) still passes");
    assert_eq!(sink.drain(Duration::from_millis(200)).expect("drain"), 0);
    let blocked = u64::from(pings) + datagrams as u64;
    let rules = eventually(
        || rules_json(&iface),
        |rules| rule_packets(rules, id) == blocked,
    );
    assert_eq!(rule_packets(&rules, id), blocked);
    let ago = rules["rules"][0]["last_hit_secs_ago"]
        .as_f64()
        .expect("a last hit");
    // No earlier than the traffic (a second of slack for the kernel's coarse clock and
    // rounding), however long the test took since.
    let since_sent = sent_at.elapsed().as_secs_f64() + 1.0;
    assert!(
        (0.0..since_sent).contains(&ago),
        "last hit {ago} s ago, traffic sent {since_sent} s ago: {rules}"
    );
    let record = eventually(
        || stats_snapshot(&iface),
        |record| record["total"]["packets"] == blocked + u64::from(pings_v6),
    );
    assert_eq!(packets(&record, "action", "drop"), blocked, "{record}");
    assert_eq!(
        packets(&record, "action", "pass"),
        u64::from(pings_v6),
        "{record}"
    );
    assert_eq!(record["matched"]["packets"], blocked, "{record}");

    ok(&["rule", "del", &iface, &id.to_string()]);
    assert_eq!(rules_json(&iface)["rules"], serde_json::json!([]));
    let (replies, _) = net.run_in_namespace(send(PATIENCE)).expect("traffic");
    assert_eq!(replies, pings, "rule del lets ping through again");
    assert_eq!(
        sink.receive(datagrams, PATIENCE, Duration::from_millis(200))
            .expect("receive"),
        datagrams
    );
    let record = stats_snapshot(&iface);
    assert_eq!(
        packets(&record, "action", "drop"),
        blocked,
        "nothing more dropped"
    );
}

#[test]
fn an_allow_list_passes_one_flow_and_neighbour_discovery_only() {
    let test = "an_allow_list_passes_one_flow_and_neighbour_discovery_only";
    if !kernel_available(test) {
        return;
    }
    let subnet = 16;
    let (net, iface, _detach) = attached_veth("alw", subnet);
    let (host_v4, host_v6) = (VethNet::host_v4(subnet), VethNet::host_v6(subnet));
    let sink = traffic::UdpSink::bind(SocketAddr::new(IpAddr::V4(host_v4), 9)).expect("bind");

    let peer = VethNet::peer_v4(subnet).to_string();
    let id: u64 = ok(&[
        "rule", "add", &iface, "--action", "pass", "--src", &peer, "--proto", "udp", "--dport", "9",
    ])
    .trim()
    .parse()
    .expect("id");
    assert!(ok(&["policy", &iface, "drop"]).contains("policy drop"));

    // The peer forgets the host's addresses, so it must resolve them with ARP and neighbour
    // discovery through the allow-list.
    for addr in [host_v4.to_string(), host_v6.to_string()] {
        netxdp::netns::ip(&[
            "-n",
            net.namespace(),
            "neigh",
            "del",
            &addr,
            "dev",
            net.peer_if(),
        ])
        .expect("forget a neighbour");
    }
    let (datagrams, datagrams_v6, pings) = (25usize, 10usize, 2u16);
    let (replies, neighbours) = net
        .run_in_namespace(move || {
            traffic::udp_burst(SocketAddr::new(IpAddr::V4(host_v4), 9), datagrams, &[1; 20])?;
            traffic::udp_burst(
                SocketAddr::new(IpAddr::V6(host_v6), 9),
                datagrams_v6,
                &[2; 20],
            )?;
            let replies = traffic::ping(IpAddr::V4(host_v4), pings, Duration::from_millis(300))?;
            Ok((replies, ()))
        })
        .expect("traffic");
    let () = neighbours;
    assert_eq!(replies, 0, "ping is not on the allow-list");
    assert_eq!(
        sink.receive(datagrams, PATIENCE, Duration::from_millis(300))
            .expect("receive"),
        datagrams,
        "the allowed flow arrives whole, after ARP resolved the host"
    );
    let table = Command::new("ip")
        .args(["-n", net.namespace(), "neigh", "show", "dev", net.peer_if()])
        .output()
        .expect("ip neigh");
    let table = String::from_utf8_lossy(&table.stdout);
    for addr in [host_v4.to_string(), host_v6.to_string()] {
        let line = table
            .lines()
            .find(|line| line.starts_with(&format!("{addr} ")));
        assert!(
            line.is_some_and(|line| line.contains("lladdr")),
            "the peer resolved {addr} through the drop policy:\n{table}"
        );
    }
    assert_eq!(rule_packets(&rules_json(&iface), id), datagrams as u64);
    // The IPv6 datagrams waited in the peer's neighbour queue until discovery resolved the
    // host, and may reach the program a moment after the sends returned.
    let dropped = (datagrams_v6 + usize::from(pings)) as u64;
    let record = eventually(
        || stats_snapshot(&iface),
        |record| packets(record, "action", "drop") == dropped,
    );
    assert_eq!(packets(&record, "action", "drop"), dropped, "{record}");
    assert!(packets(&record, "l3", "arp") >= 1, "{record}");
    assert_eq!(
        packets(&record, "action", "pass"),
        datagrams as u64 + packets(&record, "l3", "arp") + packets(&record, "l4", "icmpv6"),
        "only the flow, ARP and neighbour discovery pass: {record}"
    );
}

#[test]
fn bad_rules_fail_clearly_and_change_nothing() {
    let test = "bad_rules_fail_clearly_and_change_nothing";
    if !kernel_available(test) {
        return;
    }
    let (_net, iface, _detach) = attached_veth("brl", 17);
    ok(&[
        "rule", "add", &iface, "--action", "drop", "--proto", "udp", "--dport", "53",
    ]);
    let before = rules_json(&iface);

    let add = |extra: &[&str]| {
        let mut args = vec!["rule", "add", iface.as_str(), "--action", "drop"];
        args.extend_from_slice(extra);
        netxdp(&args)
    };
    for (extra, says) in [
        (&["--src", "198.18.0.300"][..], "198.18.0.300"),
        (&["--src", "198.18.0.0/33"], "/32"),
        (&["--proto", "udp", "--dport", "65536"], "65536"),
        (&["--proto", "udp", "--dport", "2000-1000"], "reversed"),
        (&["--proto", "bogus"], "bogus"),
    ] {
        let output = add(extra);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{extra:?}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains(says),
            "{extra:?}: {}",
            stderr(&output)
        );
    }
    for (extra, says) in [
        (
            &["--proto", "icmp", "--dport", "80"][..],
            "ports need proto tcp or udp",
        ),
        (&["--proto", "udp", "--dport", "53"], "already matches"),
        (
            &["--src", "198.18.0.0/24", "--dst", "fd00::/8"],
            "different families",
        ),
    ] {
        let output = add(extra);
        assert_eq!(output.status.code(), Some(1), "{extra:?}");
        assert!(
            stderr(&output).contains(says),
            "{extra:?}: {}",
            stderr(&output)
        );
    }
    let error = fails(&["rule", "del", &iface, "99"]);
    assert!(error.contains("no rule has id 99"), "{error}");

    let dir = tempfile_dir();
    let file = dir.join("bad.toml");
    std::fs::write(
        &file,
        "policy = \"drop\"\n[[rule]]\naction = \"drop\"\nsrc = \"10.0.0.1/40\"\n",
    )
    .expect("write");
    let error = fails(&["apply", &iface, file.to_str().expect("utf-8")]);
    assert!(error.contains("line 4") && error.contains("src"), "{error}");
    std::fs::write(&file, "[[rule]]\naction = \"drop\"\nsport = 5\n").expect("write");
    let error = fails(&["apply", &iface, file.to_str().expect("utf-8")]);
    assert!(error.contains("tcp or udp"), "{error}");

    assert_eq!(rules_json(&iface), before, "nothing changed");
    let error = fails(&["rule", "list", "nxnosuch0"]);
    assert!(error.contains("not attached to nxnosuch0"), "{error}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn apply_replaces_the_set_atomically_keeps_counters_and_survives_reattach() {
    let test = "apply_replaces_the_set_atomically_keeps_counters_and_survives_reattach";
    if !kernel_available(test) {
        return;
    }
    let subnet = 18;
    let (net, iface, _detach) = attached_veth("apl", subnet);
    let host_v4 = VethNet::host_v4(subnet);
    let kept: u64 = ok(&[
        "rule", "add", &iface, "--action", "drop", "--proto", "udp", "--dport", "9",
    ])
    .trim()
    .parse()
    .expect("id");
    let gone: u64 = ok(&["rule", "add", &iface, "--action", "drop", "--proto", "47"])
        .trim()
        .parse()
        .expect("id");
    net.run_in_namespace(move || {
        traffic::udp_burst(SocketAddr::new(IpAddr::V4(host_v4), 9), 7, &[3; 10])
    })
    .expect("traffic");
    let counted = eventually(
        || rule_packets(&rules_json(&iface), kept),
        |count| *count == 7,
    );
    assert_eq!(counted, 7);

    let dir = tempfile_dir();
    let file = dir.join("rules.toml");
    std::fs::write(
        &file,
        "policy = \"pass\"\nfragments = \"drop\"\n\n\
         [[rule]]\naction = \"drop\"\nproto = \"udp\"\ndport = 9\n\n\
         [[rule]]\naction = \"pass\"\npriority = 5\nsrc = \"198.18.18.0/30\"\nproto = \"tcp\"\n",
    )
    .expect("write");
    let path = file.to_str().expect("utf-8");
    let diff = ok(&["apply", &iface, path, "--dry-run"]);
    assert!(diff.contains(&format!("- rule {gone}")), "{diff}");
    assert!(diff.contains("+ rule"), "{diff}");
    assert!(diff.contains("fragments: policy -> drop"), "{diff}");
    assert_eq!(
        rules_json(&iface)["rules"].as_array().map(Vec::len),
        Some(2),
        "dry run"
    );

    let applied = support::netxdp(&["apply", &iface, path]);
    let said = support::stderr(&applied);
    assert!(applied.status.success(), "{said}");
    // One line by default, however many rules change.
    assert!(
        said.contains("1 added, 1 removed, 0 changed, 1 unchanged; fragments: policy -> drop"),
        "{said}"
    );
    assert!(!said.contains("+ rule"), "{said}");
    let status: Value = serde_json::from_str(&ok(&["status", "--json"])).expect("JSON");
    let entry = status["interfaces"]
        .as_array()
        .and_then(|all| all.iter().find(|i| i["iface"] == iface.as_str()))
        .expect("status lists the interface");
    // Rules on ports and protocol, and one on a source too: decision trees.
    assert_eq!(entry["classifier"], "trees", "{entry}");
    assert!(entry["trees"].as_u64() >= Some(1), "{entry}");
    let text = ok(&["status"]);
    assert!(text.contains("classified by"), "{text}");
    let record = rules_json(&iface);
    assert_eq!(record["fragments"], "drop");
    let ids: Vec<u64> = record["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|rule| rule["id"].as_u64().expect("id"))
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&kept) && !ids.contains(&gone), "{record}");
    assert_eq!(
        rule_packets(&record, kept),
        7,
        "a kept rule keeps its counters"
    );
    let again = ok(&["apply", &iface, path, "--dry-run"]);
    assert!(again.contains("= 2 rules unchanged"), "{again}");
    // --diff: the rule-by-rule account, as the dry run gives it, and applied.
    let diffed = support::netxdp(&["apply", &iface, path, "--diff"]);
    assert!(diffed.status.success());
    assert!(
        support::stderr(&diffed).contains("= 2 rules unchanged"),
        "{diffed:?}"
    );

    // Rules outlive the program: detach keeping them, attach again, and they are in force.
    ok(&["detach", &iface, "--keep-rules"]);
    assert_eq!(xdp_on_link(&iface), "none");
    ok(&["attach", &iface, "--mode", "skb"]);
    assert_eq!(
        rule_ids_and_counts(&rules_json(&iface)),
        rule_ids_and_counts(&record)
    );
    net.run_in_namespace(move || {
        traffic::udp_burst(SocketAddr::new(IpAddr::V4(host_v4), 9), 3, &[3; 10])
    })
    .expect("traffic");
    let counted = eventually(
        || rule_packets(&rules_json(&iface), kept),
        |count| *count == 10,
    );
    assert_eq!(counted, 10);
    let _ = std::fs::remove_dir_all(dir);
}

/// Each rule's id, match and counters, without the time since its last hit.
fn rule_ids_and_counts(record: &Value) -> Vec<Value> {
    let mut rules = record["rules"].as_array().expect("rules").clone();
    for rule in &mut rules {
        rule.as_object_mut()
            .expect("object")
            .remove("last_hit_secs_ago");
    }
    rules
}

/// A fresh private directory for a test's files.
fn tempfile_dir() -> std::path::PathBuf {
    static COUNT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "netxdp-e2e-{}-{}",
        std::process::id(),
        COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// A rules file of `rules`, and its rules' matches, sorted.
fn generated_rules_file(
    dir: &Path,
    name: &str,
    rules: Vec<net_common::rulegen::GenRule>,
) -> (String, Vec<net_common::rule::Match>) {
    use netxdp::filter::{RuleSet, render::render_rules_file};
    let rules = support::new_rules(rules);
    let mut set = RuleSet::default();
    set.replace(&rules).expect("valid rules");
    let path = dir.join(name);
    std::fs::write(&path, render_rules_file(&set)).expect("write the rules file");
    (
        path.to_str().expect("utf-8").to_owned(),
        sorted_matches(&set),
    )
}

/// The matches of a rule set, sorted: ids (and so the order of equal priorities) differ
/// between a file and the set it was applied over.
fn sorted_matches(set: &netxdp::filter::RuleSet) -> Vec<net_common::rule::Match> {
    let mut matches: Vec<_> = set.rules().iter().map(|rule| rule.matches).collect();
    matches.sort();
    matches
}

/// Reads `stderr` of a child until a line equal to `wanted`: `Ok` then, or `Err` with all it
/// said if it ended first. The bound only keeps a hung child from hanging the test.
fn await_line(stderr: std::process::ChildStderr, wanted: &str) -> Result<(), String> {
    use std::io::BufRead as _;
    let (lines, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut said = String::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match received.recv_timeout(left) {
            Ok(line) if line == wanted => return Ok(()),
            Ok(line) => {
                said.push_str(&line);
                said.push('\n');
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                return Err(format!("no {wanted:?} within 60 s; it said:\n{said}"));
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                return Err(format!("it ended without {wanted:?}; it said:\n{said}"));
            }
        }
    }
}

#[test]
fn killing_apply_at_any_moment_leaves_the_old_or_the_new_set_whole() {
    use aya::programs::{TestRun, TestRunOptions, Xdp};
    use aya_obj::programs::XdpAttachType;
    use net_common::{frame::SliceFrame, parse::parse, rule::classify};
    use netxdp::filter::{
        FilterMaps,
        stages::{COMMIT_STAGES, PAUSE_AT_ENV},
    };

    let test = "killing_apply_at_any_moment_leaves_the_old_or_the_new_set_whole";
    if !kernel_available(test) {
        return;
    }
    let (_net, iface, _detach) = attached_veth("kil", 19);
    let dir = tempfile_dir();
    // The old set overlaps too densely for decision trees and takes the bit-vector search;
    // the new one, a firewall's, takes trees: each apply switches classifier too.
    let old_rules = net_common::rulegen::random_rules(1, 4_000);
    let new_rules = net_common::classbench::rules(net_common::classbench::Profile::Fw, 2, 4_000);
    let mut headers = net_common::classbench::trace(&new_rules, 3, 250 * COMMIT_STAGES.len())
        .into_iter()
        .map(|header| header.frame);
    let (old_file, old) = generated_rules_file(&dir, "old.toml", old_rules);
    let (new_file, new) = generated_rules_file(&dir, "new.toml", new_rules);
    assert_ne!(old, new);

    let pins = support::pins(&iface);
    let program = Xdp::from_pin(pins.prog(), XdpAttachType::Interface).expect("pinned program");
    let mut frames = net_common::rulegen::PoolFrameGenerator::new(3);
    let flipped = COMMIT_STAGES
        .iter()
        .position(|stage| *stage == "flipped")
        .expect("a stage after the flip");
    // Every stage of the commit, each in every run: the apply stops there by itself (a
    // test-only hook) and is killed while it waits, whatever the machine's speed.
    for (index, stage) in COMMIT_STAGES.iter().enumerate() {
        // The set in force is old: kill an apply of the new one at `stage`.
        ok(&["apply", &iface, &old_file]);
        let mut child = Command::new(env!("CARGO_BIN_EXE_netxdp"))
            .args(["apply", &iface, &new_file])
            .env(PAUSE_AT_ENV, stage)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn netxdp apply");
        let stderr = child.stderr.take().expect("stderr");
        let paused = await_line(stderr, &format!("paused at {stage}"));
        let _ = child.kill();
        let _ = child.wait();
        if let Err(problem) = paused {
            panic!("apply never paused at {stage}: {problem}");
        }

        let in_force = FilterMaps::from_pins(&pins)
            .and_then(|maps| {
                // Whole tables, whether the apply before the killed one rewrote the
                // generation whole or only what differed.
                maps.verify()?;
                maps.load()
            })
            .expect("load the rule set");
        let matches = sorted_matches(&in_force);
        let (want, which) = if index < flipped {
            (&old, "old")
        } else {
            (&new, "new")
        };
        assert!(
            matches == *want,
            "killed at {stage}: the set in force should be the {which} one, whole ({} rules, \
             old {}, new {})",
            matches.len(),
            matches == old,
            matches == new,
        );
        // And the kernel classifies with exactly that set, by the classifier it compiles to.
        let trees = FilterMaps::from_pins(&pins)
            .and_then(|maps| maps.active_config())
            .expect("config")
            .trees;
        assert_eq!(
            trees > 0,
            matches == new,
            "killed at {stage}: {trees} trees"
        );
        for frame in (0..250).flat_map(|_| [frames.next_frame(), headers.next().expect("header")]) {
            let want = classify(
                in_force.rules(),
                in_force.policy,
                in_force.fragments,
                in_force.malformed,
                &parse(&SliceFrame::new(&frame)),
            );
            let run = program
                .test_run(TestRunOptions {
                    data_in: Some(&frame),
                    ..TestRunOptions::new()
                })
                .expect("test run");
            assert_eq!(run.return_value, want.action as u32, "killed at {stage}");
        }
    }
    // A killed apply leaves nothing in the way of the next one.
    ok(&["apply", &iface, &new_file]);
    let maps = FilterMaps::from_pins(&pins).expect("maps");
    assert!(sorted_matches(&maps.load().expect("load")) == new);
    drop(maps);
    eprintln!(
        "{test}: killed an apply of 4,000 rules at each of {} stages",
        COMMIT_STAGES.len()
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// A commit waits for an RCU grace period (the kernel's update of a map-in-map returned:
/// `synchronized`) before it touches the generation the previous commit flipped out, writes
/// each map of it after deleting from it, and flips last: the stages as one `apply` reaches
/// them, in order (the test-only hook prints each).
#[test]
fn a_commit_waits_for_rcu_before_it_touches_the_generation_flipped_out() {
    use std::io::BufRead as _;

    use netxdp::filter::{
        FilterMaps,
        stages::{COMMIT_STAGES, PAUSE_AT_ENV},
    };

    let test = "a_commit_waits_for_rcu_before_it_touches_the_generation_flipped_out";
    if !kernel_available(test) {
        return;
    }
    let (_net, iface, _detach) = attached_veth("rcu", 47);
    let dir = tempfile_dir();
    let random = net_common::rulegen::random_rules;
    let (old_file, _) = generated_rules_file(&dir, "old.toml", random(4, 2_000));
    let (new_file, new) = generated_rules_file(&dir, "new.toml", random(5, 2_000));
    // Twice: both generations have held a set, and the next commit rewrites one of them.
    ok(&["apply", &iface, &old_file]);
    ok(&["apply", &iface, &new_file]);
    ok(&["apply", &iface, &old_file]);

    // Stops at the last stage only, to collect every line before it; then goes on.
    let mut child = Command::new(env!("CARGO_BIN_EXE_netxdp"))
        .args(["apply", &iface, &new_file])
        .env(PAUSE_AT_ENV, "flipped")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn netxdp apply");
    let stdin = child.stdin.take().expect("stdin");
    let mut lines = std::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
    let mut stages = Vec::new();
    for line in lines.by_ref() {
        let line = line.expect("stderr of netxdp apply");
        if line == "paused at flipped" {
            break;
        }
        if let Some(stage) = line.strip_prefix("commit at ") {
            stages.push(stage.to_owned());
        }
    }
    // Goes on; the rest of what it says is read, so that it can say it.
    drop(stdin);
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().expect("netxdp apply");
    assert!(
        status.success(),
        "apply went on after the pause: {status}, {rest:?}"
    );

    let at = |stage: &str| {
        stages
            .iter()
            .position(|reached| reached == stage)
            .unwrap_or_else(|| panic!("the commit never reached {stage}: {stages:?}"))
    };
    let mut sorted = stages.clone();
    sorted.sort();
    let mut every: Vec<String> = COMMIT_STAGES
        .iter()
        .map(|stage| stage.to_string())
        .collect();
    every.sort();
    assert_eq!(sorted, every, "each stage once: {stages:?}");
    assert_eq!(
        stages[..3],
        ["synchronize", "synchronized", "counters"],
        "the wait returns before anything is written"
    );
    for stage in COMMIT_STAGES {
        if let Some(name) = stage.strip_prefix("write ")
            && let Some(cleared) = stages.iter().position(|s| *s == format!("clear {name}"))
        {
            assert!(
                cleared < at(stage),
                "{name} is cleared, then written: {stages:?}"
            );
        }
    }
    let written = COMMIT_STAGES
        .iter()
        .filter(|stage| stage.starts_with("write "));
    assert!(
        written
            .map(|stage| at(stage))
            .all(|index| index < at("flip")),
        "every map is written before the flip: {stages:?}"
    );
    assert_eq!(stages.last().map(String::as_str), Some("flipped"));

    let maps = FilterMaps::from_pins(&support::pins(&iface)).expect("maps");
    maps.verify().expect("the new set whole");
    assert!(sorted_matches(&maps.load().expect("load")) == new);
    let _ = std::fs::remove_dir_all(dir);
}
