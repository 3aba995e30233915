//! One lock per interface: attach, detach, apply and rule changes started together, in
//! seeded random mixes, each end in one whole state: attached with one whole rule set, or
//! detached with no pins and no XDP program. A command that loses a race fails with a message
//! about the state it found, never with a half-made one ("No such file", "File exists").

mod support;

use std::process::{Command, Stdio};

use netxdp::{
    filter::FilterMaps,
    lock::{IfaceLock, WAIT_ENV},
    netns::VethNet,
};
use support::{DetachOnDrop, TempDir, kernel_available, pins, xdp_on_link};

/// Commands started together per round, and rounds.
const AT_ONCE: usize = 4;
const ROUNDS: usize = 16;

#[test]
fn concurrent_attach_detach_apply_and_rule_changes_end_in_one_whole_state() {
    let test = "concurrent_attach_detach_apply_and_rule_changes_end_in_one_whole_state";
    if !kernel_available(test) {
        return;
    }
    let net = VethNet::create("lk", 50).expect("veth pair");
    let iface = net.host_if().to_owned();
    let _detach = DetachOnDrop(iface.clone());
    let dir = TempDir::new("locking");
    let file = |name: &str, rules: &str| {
        let path = dir.0.join(name);
        std::fs::write(&path, rules).expect("write the rules file");
        path.to_str().expect("utf-8").to_owned()
    };
    let first = file(
        "first.toml",
        "[[rule]]\naction = \"drop\"\nproto = \"udp\"\ndport = 9\n\n\
         [[rule]]\naction = \"drop\"\nsrc = \"198.18.50.0/30\"\nproto = \"tcp\"\n",
    );
    let second = file(
        "second.toml",
        "policy = \"drop\"\n\n[[rule]]\naction = \"pass\"\nproto = \"icmp\"\n\n\
         [[rule]]\naction = \"pass\"\ndst = \"198.18.50.1\"\nproto = \"tcp\"\ndport = 22\n\n\
         [[rule]]\naction = \"drop\"\nproto = \"udp\"\nsport = \"1-1023\"\n",
    );
    let operations: Vec<Vec<&str>> = vec![
        vec!["attach", &iface, "--mode", "skb"],
        vec!["detach", &iface],
        vec!["apply", &iface, &first],
        vec!["apply", &iface, &second],
        vec!["rule", "add", &iface, "--action", "drop", "--proto", "47"],
        vec!["policy", &iface, "drop"],
    ];
    let seed = std::env::var("NETXDP_SEED")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(0x6c6f_636b);
    let mut state: u64 = seed;
    // SplitMix64: a seeded choice of operations, reproducible from the seed printed.
    let mut next = |bound: usize| {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) % bound as u64) as usize
    };
    let (mut attached_rounds, mut detached_rounds) = (0, 0);
    for round in 0..ROUNDS {
        let picked: Vec<&Vec<&str>> = (0..AT_ONCE)
            .map(|_| &operations[next(operations.len())])
            .collect();
        let children: Vec<_> = picked
            .iter()
            .map(|args| {
                Command::new(env!("CARGO_BIN_EXE_netxdp"))
                    .args(args.iter())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("spawn netxdp")
            })
            .collect();
        for (child, args) in children.into_iter().zip(&picked) {
            let output = child.wait_with_output().expect("wait for netxdp");
            let stderr = String::from_utf8_lossy(&output.stderr);
            for torn in ["No such file", "File exists", "busy"] {
                assert!(
                    !stderr.contains(torn),
                    "seed {seed:#x}, round {round}: `netxdp {}` saw a torn state: {stderr}",
                    args.join(" ")
                );
            }
        }

        let context = format!("seed {seed:#x}, round {round}, ran {picked:?}");
        let pins = pins(&iface);
        if pins.is_attached() {
            attached_rounds += 1;
            assert_ne!(
                xdp_on_link(&iface),
                "none",
                "{context}: pinned but not on the link"
            );
            let maps = FilterMaps::read_pins(&pins).expect("the filter's maps");
            maps.verify()
                .unwrap_or_else(|e| panic!("{context}: the rule set in force is not whole: {e}"));
            maps.load().expect("the rule set in force");
        } else {
            detached_rounds += 1;
            assert!(
                !pins.dir().exists(),
                "{context}: detached but pins are left"
            );
            assert_eq!(
                xdp_on_link(&iface),
                "none",
                "{context}: an XDP program is left"
            );
        }
    }
    // The mix reached both ends more than once, so both were checked.
    assert!(
        attached_rounds > 1 && detached_rounds > 1,
        "seed {seed:#x}: {attached_rounds} rounds ended attached, {detached_rounds} detached"
    );
}

#[test]
fn a_busy_interface_is_waited_for_then_named_with_its_holder() {
    let test = "a_busy_interface_is_waited_for_then_named_with_its_holder";
    if !kernel_available(test) {
        return;
    }
    let (_net, iface, _detach) = support::attached_veth("lw", 51);
    let held = IfaceLock::acquire(&iface.parse().expect("a name")).expect("the lock");
    let output = Command::new(env!("CARGO_BIN_EXE_netxdp"))
        .args(["rule", "add", &iface, "--action", "drop", "--proto", "47"])
        .env(WAIT_ENV, "300")
        .output()
        .expect("run netxdp");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{iface} is busy: netxdp process {}",
            std::process::id()
        )) && stderr.contains("waited 0.3 s"),
        "{stderr}"
    );
    assert!(
        support::rules_json(&iface)["rules"]
            .as_array()
            .is_some_and(Vec::is_empty)
    );
    // Released, the same command goes through.
    drop(held);
    support::ok(&["rule", "add", &iface, "--action", "drop", "--proto", "47"]);
    assert_eq!(
        support::rules_json(&iface)["rules"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
}
