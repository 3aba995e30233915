//! The command line's parsing, tested: what clap accepts and refuses.
use clap::CommandFactory;
use net_common::rule::PortRange;

use super::*;

fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("netxdp").chain(args.iter().copied()))
}

#[test]
fn definition_is_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn attach_defaults_to_auto_mode() {
    let cli = parse(&["attach", "eth0"]).unwrap();
    assert!(
        matches!(cli.command, Command::Attach { ref iface, mode: ModeRequest::Auto, force: false, .. } if iface == "eth0")
    );
    let cli = parse(&["attach", "eth0", "--mode", "skb"]).unwrap();
    assert!(matches!(
        cli.command,
        Command::Attach {
            mode: ModeRequest::Skb,
            ..
        }
    ));
}

#[test]
fn the_flow_table_is_sized_in_bytes_with_binary_suffixes() {
    let size = |args: &[&str]| match parse(args).map(|cli| cli.command) {
        Ok(Command::Attach { flows, .. }) => Ok(flows.flow_table_size),
        Ok(_) => panic!("not attach"),
        Err(error) => Err((error.exit_code(), error.to_string())),
    };
    assert_eq!(size(&["attach", "eth0"]), Ok(16 << 20));
    assert_eq!(
        size(&["attach", "eth0", "--flow-table-size", "512K"]),
        Ok(512 << 10)
    );
    assert_eq!(
        size(&["attach", "eth0", "--flow-table-size", "1G"]),
        Ok(1 << 30)
    );
    for (bad, says) in [
        ("1024", "outside 256K..=4G"),
        ("8G", "outside 256K..=4G"),
        ("lots", "a size such as 16M"),
    ] {
        let (code, message) = size(&["attach", "eth0", "--flow-table-size", bad]).unwrap_err();
        assert_eq!(code, 2, "{bad}");
        assert!(message.contains(says), "{bad}: {message}");
    }
    let error = parse(&["attach", "eth0", "--no-flows", "--flow-table-size", "1M"]);
    assert_eq!(error.map(|_| ()).unwrap_err().exit_code(), 2);
}

#[test]
fn unknown_mode_is_a_usage_error() {
    let error = parse(&["attach", "eth0", "--mode", "turbo"]).unwrap_err();
    assert_eq!(error.exit_code(), 2);
    assert!(error.to_string().contains("turbo"));
}

#[test]
fn stats_takes_many_interfaces_and_fractional_intervals() {
    let cli = parse(&["stats", "a", "b", "-i", "0.5", "-c", "3", "--json"]).unwrap();
    let Command::Stats {
        ifaces,
        sampling,
        json,
    } = cli.command
    else {
        panic!()
    };
    assert_eq!(ifaces, ["a", "b"]);
    assert_eq!(sampling.interval, Duration::from_millis(500));
    assert_eq!(sampling.count.map(NonZeroU64::get), Some(3));
    assert!(json);
}

#[test]
fn rule_metrics_are_all_none_or_top_n() {
    let metrics = |args: &[&str]| match parse(args).map(|cli| cli.command) {
        Ok(Command::Serve { rule_metrics, .. }) => Ok(rule_metrics),
        Ok(_) => panic!("not serve"),
        Err(error) => Err(error.exit_code()),
    };
    assert_eq!(metrics(&["serve"]), Ok(None));
    assert_eq!(
        metrics(&["serve", "--rule-metrics", "all"]),
        Ok(Some(RuleMetrics::All))
    );
    assert_eq!(
        metrics(&["serve", "--rule-metrics", "none"]),
        Ok(Some(RuleMetrics::None))
    );
    for top in ["top=20", "top 20", "top20"] {
        assert_eq!(
            metrics(&["serve", "--rule-metrics", top]),
            Ok(Some(RuleMetrics::Top(20)))
        );
    }
    for bad in ["top", "top=0", "top=x", "some"] {
        assert_eq!(metrics(&["serve", "--rule-metrics", bad]), Err(2), "{bad}");
    }
}

#[test]
fn bad_intervals_and_counts_are_refused() {
    for args in [
        &["stats", "-i", "0"][..],
        &["stats", "-i", "soon"],
        &["stats", "-i", "-1"],
        &["stats", "-c", "0"],
        &["demo", "--seconds", "0"],
    ] {
        let error = parse(args).unwrap_err();
        assert_eq!(error.exit_code(), 2, "{args:?}");
    }
}

#[test]
fn serve_listens_on_loopback_by_default_and_takes_an_address() {
    let Command::Serve { listen, .. } = parse(&["serve"]).unwrap().command else {
        panic!()
    };
    assert_eq!(listen, "127.0.0.1:9469".parse().unwrap());
    let Command::Serve { listen, .. } = parse(&["serve", "--listen", "[::]:9100"]).unwrap().command
    else {
        panic!()
    };
    assert_eq!(listen, "[::]:9100".parse().unwrap());
    for bad in ["localhost", "127.0.0.1", "127.0.0.1:70000", "9469"] {
        let error = parse(&["serve", "--listen", bad]).unwrap_err();
        assert_eq!(error.exit_code(), 2, "{bad}");
    }
}

#[test]
fn top_takes_interfaces_and_sampling() {
    let Command::Top { ifaces, sampling } = parse(&["top"]).unwrap().command else {
        panic!()
    };
    assert!(ifaces.is_empty());
    assert_eq!(sampling.interval, Duration::from_secs(1));
    let Command::Top { ifaces, sampling } = parse(&["top", "eth0", "eth1", "-i", "0.5", "-c", "2"])
        .unwrap()
        .command
    else {
        panic!()
    };
    assert_eq!(ifaces, ["eth0", "eth1"]);
    assert_eq!(sampling.interval, Duration::from_millis(500));
    assert_eq!(sampling.count.map(NonZeroU64::get), Some(2));
}

#[test]
fn every_command_refuses_a_name_no_interface_can_have_as_a_usage_error() {
    let commands: [&[&str]; 11] = [
        &["attach", "IF"],
        &["detach", "IF"],
        &["flows", "IF"],
        &["rule", "add", "IF", "--action", "drop"],
        &["rule", "del", "IF", "1"],
        &["rule", "list", "IF"],
        &["policy", "IF"],
        &["apply", "IF", "rules.toml"],
        &["stats", "lo", "IF"],
        &["top", "IF"],
        &["watch", "IF"],
    ];
    let with = |command: &[&'static str], name: &'static str| -> Vec<&'static str> {
        command
            .iter()
            .map(|&arg| if arg == "IF" { name } else { arg })
            .collect()
    };
    for command in commands {
        assert!(parse(&with(command, "lo")).is_ok(), "{command:?}");
        for (bad, why) in [
            ("..", "refuses"),
            (".", "refuses"),
            ("", "empty"),
            ("../x", "'/'"),
            ("a/b", "'/'"),
            ("eth0:1", "':'"),
            ("a b", "whitespace"),
            ("sixteen-bytes-xx", "at most 15"),
        ] {
            let args = with(command, bad);
            let error = parse(&args).unwrap_err();
            assert_eq!(error.exit_code(), 2, "{args:?}");
            let text = error.to_string();
            assert!(text.contains(why), "{args:?}: {text}");
        }
    }
}

#[test]
fn interface_is_required() {
    assert!(parse(&["attach"]).is_err());
    assert!(parse(&["detach"]).is_err());
}

#[test]
fn rule_add_parses_every_field_and_refuses_bad_ones_as_usage_errors() {
    let cli = parse(&[
        "rule",
        "add",
        "eth0",
        "--action",
        "drop",
        "--src",
        "198.18.0.5/24",
        "--proto",
        "udp",
        "--dport",
        "1000-2000",
        "--priority",
        "7",
    ])
    .unwrap();
    let Command::Rule(RuleCommand::Add { iface, rule }) = cli.command else {
        panic!()
    };
    assert_eq!(iface, "eth0");
    assert_eq!(rule.action, RuleActionArg::Drop);
    assert!(rule.src.as_ref().is_some_and(|(_, note)| note.is_some()));
    assert_eq!(
        rule.dport,
        Some(PortRange {
            first: 1000,
            last: 2000
        })
    );
    assert_eq!(rule.priority, 7);
    for bad in [
        &["--src", "198.18.0.300"][..],
        &["--dport", "70000"],
        &["--dport", "2000-1000"],
        &["--proto", "sctpx"],
        &["--icmp-type", "256"],
    ] {
        let args: Vec<&str> = ["rule", "add", "eth0", "--action", "drop"]
            .into_iter()
            .chain(bad.iter().copied())
            .collect();
        assert_eq!(parse(&args).unwrap_err().exit_code(), 2, "{bad:?}");
    }
    assert!(
        parse(&["rule", "add", "eth0"]).is_err(),
        "--action is required"
    );
}
