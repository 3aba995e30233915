//! `netxdp synguard` with real traffic: a client in the namespace completes 100 TCP
//! connections to a guarded port while a flood of SYNs from spoofed sources hits it; the
//! guard answers every SYN with the kernel's cookie, the stack sends none of its own, and
//! accepts the connections from the guard's cookies. Then 10 over IPv6, answered the same way.

mod support;

use std::{
    net::{IpAddr, SocketAddr, TcpListener},
    sync::atomic::{AtomicBool, AtomicUsize, Ordering},
    time::Duration,
};

use net_common::testing::{Body, FrameSpec, Transport};
use netxdp::{netns::VethNet, traffic};
use serde_json::Value;
use support::{attached_veth, eventually, fails, kernel_available, netxdp, ok, stderr};

const PORT: u16 = 8022;
/// Spoofed SYNs in the flood.
const FLOOD: u32 = 20_000;

/// The host's TCP extension counter `name` (`/proc/net/netstat`).
fn tcp_ext(name: &str) -> u64 {
    let netstat = std::fs::read_to_string("/proc/net/netstat").expect("read /proc/net/netstat");
    let mut lines = netstat.lines().filter(|line| line.starts_with("TcpExt:"));
    let (names, values) = (lines.next().expect("names"), lines.next().expect("values"));
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(key, _)| *key == name)
        .and_then(|(_, value)| value.parse().ok())
        .expect("the counter")
}

/// `net.ipv4.tcp_syncookies`, set for the test and put back as it was, even on failure.
struct Syncookies(String);

const SYNCOOKIES: &str = "/proc/sys/net/ipv4/tcp_syncookies";

impl Syncookies {
    fn set(value: &str) -> Self {
        let was = std::fs::read_to_string(SYNCOOKIES).expect("read tcp_syncookies");
        std::fs::write(SYNCOOKIES, value).expect("write tcp_syncookies");
        Self(was)
    }
}

impl Drop for Syncookies {
    fn drop(&mut self) {
        let _ = std::fs::write(SYNCOOKIES, self.0.trim());
    }
}

fn mac(text: &str) -> [u8; 6] {
    let bytes: Vec<u8> = text
        .split(':')
        .map(|byte| u8::from_str_radix(byte, 16).expect("MAC"))
        .collect();
    bytes.try_into().expect("six bytes")
}

/// The guard's record in `status --json`.
fn guard_status(iface: &str) -> Value {
    let status: Value = serde_json::from_str(&ok(&["status", "--json"])).expect("JSON");
    status["interfaces"]
        .as_array()
        .and_then(|all| all.iter().find(|entry| entry["iface"] == iface))
        .map(|entry| entry["synguard"].clone())
        .expect("the interface in status")
}

#[test]
fn a_client_connects_through_a_spoofed_syn_flood_answered_with_cookies() {
    let test = "a_client_connects_through_a_spoofed_syn_flood_answered_with_cookies";
    if !kernel_available(test) {
        return;
    }
    let subnet = 62;
    let (net, iface, _detach) = attached_veth("syn", subnet);
    let host = VethNet::host_v4(subnet);
    let at = SocketAddr::new(IpAddr::V4(host), PORT);
    let listener = TcpListener::bind(at).expect("listen");
    listener.set_nonblocking(true).expect("non-blocking");
    let at_v6 = SocketAddr::new(IpAddr::V6(VethNet::host_v6(subnet)), PORT);
    let listener_v6 = TcpListener::bind(at_v6).expect("listen on IPv6");
    listener_v6.set_nonblocking(true).expect("non-blocking");
    let accepted = AtomicUsize::new(0);
    let done = AtomicBool::new(false);
    let wait = Duration::from_secs(5);

    /// Ends the accepting thread when the test's body ends, passing or failing.
    struct Done<'a>(&'a AtomicBool);
    impl Drop for Done<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    std::thread::scope(|scope| {
        let _done = Done(&done);
        scope.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                let mut idle = true;
                for listener in [&listener, &listener_v6] {
                    if listener.accept().is_ok() {
                        accepted.fetch_add(1, Ordering::Relaxed);
                        idle = false;
                    }
                }
                if idle {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        });
        let connect = |count: usize| {
            net.run_in_namespace(move || Ok(traffic::tcp_connects(at, count, wait)))
                .expect("connect")
        };
        // Unguarded, the stack answers itself.
        assert_eq!(connect(3), 3, "connections before the guard");

        let usage = netxdp(&["synguard", &iface, "--ports", "22,http"]);
        assert_eq!(usage.status.code(), Some(2), "a usage error");
        assert!(
            stderr(&usage).contains("`http` is not a port"),
            "{}",
            stderr(&usage)
        );
        {
            let _once = Syncookies::set("1");
            let said = fails(&["synguard", &iface, "--ports", "22"]);
            assert!(said.contains("net.ipv4.tcp_syncookies = 2"), "{said}");
        }
        assert!(guard_status(&iface).is_null(), "refused, nothing changed");
        let _always = Syncookies::set("2");
        let said = ok(&["synguard", &iface, "--ports", &format!("22,{PORT}")]);
        assert!(said.contains(&format!("on ports 22,{PORT}")), "{said}");

        let stack_cookies = tcp_ext("SyncookiesSent");
        let stack_accepted = tcp_ext("SyncookiesRecv");
        let (host_mac, peer_mac) = (
            mac(&VethNet::host_mac(subnet)),
            mac(&VethNet::peer_mac(subnet)),
        );
        let flood: Vec<Vec<u8>> = (0..FLOOD)
            .map(|n| {
                let [_, a, b, c] = (n + 1).to_be_bytes();
                let mut frame = FrameSpec {
                    vlans: Vec::new(),
                    body: Body::Ipv4 {
                        src: [10, a, b, c],
                        dst: host.octets(),
                        fragment: 0,
                        option_words: 0,
                        transport: Transport::Tcp {
                            sport: 40_000 + (n % 20_000) as u16,
                            dport: PORT,
                            flags: 0x02,
                            payload: 0,
                        },
                    },
                }
                .build();
                frame[..6].copy_from_slice(&host_mac);
                frame[6..12].copy_from_slice(&peer_mac);
                frame
            })
            .collect();
        let peer_if = net.peer_if().to_owned();
        let flooding = net.spawn_in_namespace(move || traffic::send_frames(&peer_if, &flood));
        let connected = connect(100);
        let sent = flooding.join().expect("flood").expect("send the flood");
        assert_eq!(sent, FLOOD as usize);
        assert_eq!(
            connected, 100,
            "every connection completed through the flood"
        );
        // At least: a SYN retransmitted under the flood is answered again, and the late ACK to
        // that answer carries a cookie as valid as the first, from which the stack makes a
        // connection of its own (as it would from its own cookies).
        let all = eventually(|| accepted.load(Ordering::Relaxed), |n| *n >= 103);
        assert!(all >= 103, "the listener accepted them all: {all}");

        let guard = eventually(
            || guard_status(&iface),
            |guard| guard["cookies"].as_u64() >= Some(u64::from(FLOOD) + 100),
        );
        assert!(
            guard["cookies"].as_u64() >= Some(u64::from(FLOOD) + 100),
            "every SYN answered from XDP: {guard}"
        );
        assert!(guard["acks_valid"].as_u64() >= Some(100), "{guard}");
        assert_eq!(
            tcp_ext("SyncookiesSent"),
            stack_cookies,
            "the stack answered no SYN itself"
        );
        assert!(
            tcp_ext("SyncookiesRecv") >= stack_accepted + 100,
            "the stack made the connections from the guard's cookies"
        );

        // IPv6 too: the guard answers for the IPv6 listener, and the stack takes its cookies.
        let before = guard_status(&iface);
        let connected = net
            .run_in_namespace(move || Ok(traffic::tcp_connects(at_v6, 10, wait)))
            .expect("connect over IPv6");
        assert_eq!(connected, 10, "every IPv6 connection completed");
        let after = guard_status(&iface);
        let grew = |field: &str| {
            after[field]
                .as_u64()
                .zip(before[field].as_u64())
                .map(|(a, b)| a - b)
        };
        assert!(grew("cookies") >= Some(10), "{before} -> {after}");
        assert!(grew("acks_valid") >= Some(10), "{before} -> {after}");
        let all = eventually(|| accepted.load(Ordering::Relaxed), |n| *n >= 113);
        assert!(all >= 113, "{all}");

        // An ACK whose cookie no SYN was given: dropped, and counted for it.
        let before = guard_status(&iface);
        let mut forged = FrameSpec {
            vlans: Vec::new(),
            body: Body::Ipv4 {
                src: [10, 9, 9, 9],
                dst: host.octets(),
                fragment: 0,
                option_words: 0,
                transport: Transport::Tcp {
                    sport: 12_345,
                    dport: PORT,
                    flags: 0x10,
                    payload: 0,
                },
            },
        }
        .build();
        forged[..6].copy_from_slice(&host_mac);
        forged[6..12].copy_from_slice(&peer_mac);
        let peer_if = net.peer_if().to_owned();
        net.run_in_namespace(move || traffic::send_frames(&peer_if, &[forged]))
            .expect("send the forged ACK");
        let after = eventually(
            || guard_status(&iface),
            |after| after["acks_invalid"].as_u64() > before["acks_invalid"].as_u64(),
        );
        assert_eq!(
            after["acks_invalid"].as_u64(),
            before["acks_invalid"].as_u64().map(|n| n + 1),
            "the forged ACK dropped for its cookie: {before} -> {after}"
        );

        let said = ok(&["synguard", &iface, "off"]);
        assert!(said.contains("SYN guard off"), "{said}");
        assert_eq!(connect(3), 3, "unguarded again");
    });
}
