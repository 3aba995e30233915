//! `netxdp apply IFACE FILE --watch`: the rules file put in force again at each change, as
//! an editor, config management (a rename over the file) and a Kubernetes ConfigMap mount (a
//! `..data` symlink swap) make them; a bad file keeps the rules in force and says so, in the
//! log, in `status` and in `serve`'s metrics.

mod support;

use std::{
    io::{BufRead as _, BufReader},
    os::unix::fs::symlink,
    path::Path,
    process::{ChildStderr, Command, Stdio},
    sync::mpsc::{Receiver, channel},
};

use serde_json::Value;
use support::{
    KillOnDrop, PATIENCE, TempDir, attached_veth, eventually, kernel_available, ok, rules_json,
};

/// A rules file with one drop rule per port.
fn rules(ports: &[u16]) -> String {
    let mut text = String::from("policy = \"pass\"\n");
    for port in ports {
        text.push_str(&format!(
            "\n[[rule]]\naction = \"drop\"\nproto = \"udp\"\ndport = {port}\n"
        ));
    }
    text
}

/// The ports the rules in force on `iface` drop, in order.
fn ports_in_force(iface: &str) -> Vec<String> {
    rules_json(iface)["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|rule| rule["dport"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// The lines of a child's stderr, as they come.
fn lines(stderr: ChildStderr) -> Receiver<String> {
    let (send, receive) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if send.send(line).is_err() {
                break;
            }
        }
    });
    receive
}

/// The next line that contains `wanted`, waiting (patiently) for it.
fn next_line(log: &Receiver<String>, wanted: &str) -> String {
    loop {
        match log.recv_timeout(PATIENCE) {
            Ok(line) if line.contains(wanted) => return line,
            Ok(_) => {}
            Err(error) => panic!("no line with {wanted:?}: {error}"),
        }
    }
}

/// Replaces `path` by renaming a new file over it, as config management does.
fn replace(path: &Path, text: &str) {
    let partial = path.with_extension("partial");
    std::fs::write(&partial, text).expect("write");
    std::fs::rename(&partial, path).expect("rename");
}

/// The `last_apply` of `iface` in `status --json`.
fn last_apply(iface: &str) -> Value {
    let status: Value = serde_json::from_str(&ok(&["status", "--json"])).expect("JSON");
    status["interfaces"]
        .as_array()
        .and_then(|all| all.iter().find(|entry| entry["iface"] == iface))
        .map(|entry| entry["last_apply"].clone())
        .expect("the interface in status")
}

#[test]
fn apply_watch_follows_a_changing_file_and_keeps_the_last_good_set() {
    let test = "apply_watch_follows_a_changing_file_and_keeps_the_last_good_set";
    if !kernel_available(test) {
        return;
    }
    let (_net, iface, _detach) = attached_veth("rld", 57);
    let dir = TempDir::new("reload");
    let file = dir.0.join("rules.toml");
    std::fs::write(&file, rules(&[9])).expect("write");
    let file_arg = file.to_str().expect("utf-8");

    let mut watching = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_netxdp"))
            .args(["apply", &iface, file_arg, "--watch"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start apply --watch"),
    );
    let log = lines(watching.0.stderr.take().expect("stderr"));
    next_line(&log, "1 added");
    assert_eq!(ports_in_force(&iface), ["9"]);

    // Written in place, as an editor saves.
    std::fs::write(&file, rules(&[9, 10])).expect("write");
    let line = next_line(&log, "netxdp: applied");
    assert!(
        line.contains("1 added, 0 removed, 0 changed, 1 unchanged"),
        "{line}"
    );
    assert_eq!(ports_in_force(&iface), ["9", "10"]);

    // Renamed over, as config management writes.
    replace(&file, &rules(&[11]));
    let line = next_line(&log, "netxdp: applied");
    assert!(line.contains("1 added, 2 removed"), "{line}");
    assert_eq!(ports_in_force(&iface), ["11"]);

    // A bad file: said so, the set in force kept, and status says so too.
    replace(
        &file,
        "policy = \"pass\"\n\n[[rule]]\naction = \"drop\"\ndport = 12\n",
    );
    let line = next_line(&log, "stay as they were");
    assert!(
        line.contains("line 5") && line.contains("ports need proto"),
        "{line}"
    );
    assert_eq!(ports_in_force(&iface), ["11"]);
    let last = last_apply(&iface);
    assert_eq!(last["ok"], false, "{last}");
    assert!(
        last["outcome"]
            .as_str()
            .is_some_and(|outcome| outcome.contains("line 5")),
        "{last}"
    );
    let text = ok(&["status"]);
    assert!(text.contains("FAILED, the rules before it stay"), "{text}");

    // Put right: in force, and status says so.
    replace(&file, &rules(&[11, 12]));
    next_line(&log, "netxdp: applied");
    assert_eq!(ports_in_force(&iface), ["11", "12"]);
    assert_eq!(last_apply(&iface)["ok"], true);

    // SIGTERM ends it, with exit 0.
    let pid = nix::unistd::Pid::from_raw(watching.0.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    let status = eventually(
        || watching.0.try_wait().expect("wait"),
        |status| status.is_some(),
    )
    .expect("apply --watch ends on SIGTERM");
    assert!(status.success(), "{status}");
}

#[test]
fn apply_watch_follows_a_configmap_mount() {
    let test = "apply_watch_follows_a_configmap_mount";
    if !kernel_available(test) {
        return;
    }
    let (_net, iface, _detach) = attached_veth("rcm", 58);
    // As the kubelet lays a ConfigMap out: the file is a symlink through `..data`, itself a
    // symlink to a timestamped directory that an update replaces whole.
    let dir = TempDir::new("configmap");
    let version = |name: &str, text: &str| {
        std::fs::create_dir(dir.0.join(name)).expect("mkdir");
        std::fs::write(dir.0.join(name).join("rules.toml"), text).expect("write");
    };
    version("..2026_11_27_01", &rules(&[20]));
    symlink("..2026_11_27_01", dir.0.join("..data")).expect("symlink");
    symlink("..data/rules.toml", dir.0.join("rules.toml")).expect("symlink");
    let file = dir.0.join("rules.toml");

    let mut watching = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_netxdp"))
            .args(["apply", &iface, file.to_str().expect("utf-8"), "--watch"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start apply --watch"),
    );
    let log = lines(watching.0.stderr.take().expect("stderr"));
    next_line(&log, "netxdp: applied");
    assert_eq!(ports_in_force(&iface), ["20"]);

    // The update: a new directory, `..data_tmp` pointed at it, renamed over `..data`.
    version("..2026_11_27_02", &rules(&[20, 21]));
    symlink("..2026_11_27_02", dir.0.join("..data_tmp")).expect("symlink");
    std::fs::rename(dir.0.join("..data_tmp"), dir.0.join("..data")).expect("swap");
    std::fs::remove_dir_all(dir.0.join("..2026_11_27_01")).expect("remove the old version");
    let line = next_line(&log, "netxdp: applied");
    assert!(line.contains("1 added"), "{line}");
    assert_eq!(ports_in_force(&iface), ["20", "21"]);
}
