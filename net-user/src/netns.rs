//! A network namespace joined to the host by a veth pair: where `netxdp demo` and the tests
//! send traffic, so that no real interface is touched.
//!
//! The host end stays in the root namespace (netxdp attaches there: bpffs is not visible
//! from `ip netns exec`); the peer end lives in the namespace, which sends the traffic.
//! Neighbour entries are static, IPv6 autoconfiguration is off on both ends, and the two MLD
//! reports of bringing the peer up are over when `create` returns, so the only frames
//! crossing the pair afterwards are the ones a caller sends.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! let net = netxdp::netns::VethNet::create("doc", 7)?; // netxdp-doc-PID, 198.18.7.0/30
//! let sent = net.run_in_namespace(|| std::net::UdpSocket::bind("0.0.0.0:0")?
//!     .send_to(b"hello", (netxdp::netns::VethNet::host_v4(7), 9)))?;
//! # Ok(()) }
//! ```

use std::{
    fs::File,
    net::{Ipv4Addr, Ipv6Addr},
    process::Command,
    thread,
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use nix::sched::{CloneFlags, setns};

use crate::iface::IfaceName;

/// Runs `ip ARGS`, failing with its stderr.
pub fn ip(args: &[&str]) -> Result<()> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .context("running `ip` (iproute2 is needed to create namespaces and veth pairs)")?;
    if !output.status.success() {
        bail!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// A namespace and a veth pair, removed on drop.
#[derive(Debug)]
pub struct VethNet {
    namespace: String,
    host_if: IfaceName,
    peer_if: IfaceName,
    subnet: u8,
    /// Transmit and receive queues of each end.
    queues: usize,
}

impl VethNet {
    /// Creates namespace `netxdp-TAG-PID` and veth pair `nxTAG<pid>h` (root namespace) /
    /// `nxTAG<pid>p` (namespace), addressed within 198.18.SUBNET.0/30 and fd00:SUBNET::/64.
    pub fn create(tag: &str, subnet: u8) -> Result<Self> {
        Self::with_queues(tag, subnet, 1)
    }

    /// As [`VethNet::create`], each end with `queues` transmit and receive queues: a frame
    /// sent on the peer's transmit queue N arrives on the host's receive queue N.
    pub fn with_queues(tag: &str, subnet: u8, queues: usize) -> Result<Self> {
        let pid = std::process::id() % 100_000;
        let name = |end: char| {
            IfaceName::new(format!("nx{tag}{pid}{end}"))
                .with_context(|| format!("tag {tag:?} does not make an interface name"))
        };
        let net = VethNet {
            namespace: format!("netxdp-{tag}-{pid}"),
            host_if: name('h')?,
            peer_if: name('p')?,
            subnet,
            queues,
        };
        // On failure part-way, `net`'s drop removes whatever was made.
        net.build()?;
        Ok(net)
    }

    fn build(&self) -> Result<()> {
        let (ns, host, peer) = (
            &self.namespace,
            self.host_if.as_str(),
            self.peer_if.as_str(),
        );
        let (host_mac, peer_mac) = (Self::host_mac(self.subnet), Self::peer_mac(self.subnet));
        let host_v4 = format!("{}/30", Self::host_v4(self.subnet));
        let peer_v4 = format!("{}/30", Self::peer_v4(self.subnet));
        let host_v6 = format!("{}/64", Self::host_v6(self.subnet));
        let peer_v6 = format!("{}/64", Self::peer_v6(self.subnet));
        ip(&["netns", "add", ns])?;
        let queues = self.queues.to_string();
        let queues = ["numtxqueues", &queues, "numrxqueues", &queues];
        ip(&[
            &["link", "add", host, "address", &host_mac][..],
            &queues,
            &["type", "veth", "peer", "name", peer, "address", &peer_mac],
            &queues,
            &["netns", ns],
        ]
        .concat())?;
        // No link-local addresses: no router solicitations or DAD on the wire.
        ip(&["link", "set", "dev", host, "addrgenmode", "none"])?;
        ip(&["-n", ns, "link", "set", "dev", peer, "addrgenmode", "none"])?;
        ip(&["addr", "add", &host_v4, "dev", host])?;
        ip(&["addr", "add", &host_v6, "dev", host, "nodad"])?;
        ip(&["-n", ns, "addr", "add", &peer_v4, "dev", peer])?;
        ip(&["-n", ns, "addr", "add", &peer_v6, "dev", peer, "nodad"])?;
        // Static neighbours both ways: no ARP or neighbour discovery on the wire.
        let (subnet, root) = (self.subnet, Vec::new());
        let inside = vec!["-n", ns.as_str()];
        for (netns, dev, mac, v4, v6) in [
            (
                &root,
                host,
                &peer_mac,
                Self::peer_v4(subnet),
                Self::peer_v6(subnet),
            ),
            (
                &inside,
                peer,
                &host_mac,
                Self::host_v4(subnet),
                Self::host_v6(subnet),
            ),
        ] {
            for addr in [v4.to_string(), v6.to_string()] {
                let neigh = [
                    "neigh",
                    "replace",
                    &addr,
                    "lladdr",
                    mac,
                    "dev",
                    dev,
                    "nud",
                    "permanent",
                ];
                ip(&[netns.as_slice(), &neigh].concat())?;
            }
        }
        // Bringing the peer up sends two MLD reports (for fd00:N::2's solicited-node
        // group), spread over up to a second: make them go at once, then let them pass.
        let mld_interval =
            format!("/proc/sys/net/ipv6/conf/{peer}/mldv2_unsolicited_report_interval");
        self.run_in_namespace(move || std::fs::write(&mld_interval, "10"))?;
        ip(&["-n", ns, "link", "set", "dev", "lo", "up"])?;
        ip(&["link", "set", "dev", host, "up"])?;
        ip(&["-n", ns, "link", "set", "dev", peer, "up"])?;
        thread::sleep(Duration::from_millis(300));
        Ok(())
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The end in the root namespace, where netxdp attaches.
    pub fn host_if(&self) -> &str {
        self.host_if.as_str()
    }

    /// [`Self::host_if`], as netxdp takes it.
    pub fn host_iface(&self) -> &IfaceName {
        &self.host_if
    }

    /// The end inside the namespace.
    pub fn peer_if(&self) -> &str {
        self.peer_if.as_str()
    }

    pub fn host_v4(subnet: u8) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, subnet, 1)
    }

    pub fn peer_v4(subnet: u8) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, subnet, 2)
    }

    pub fn host_v6(subnet: u8) -> Ipv6Addr {
        Ipv6Addr::new(0xfd00, subnet as u16, 0, 0, 0, 0, 0, 1)
    }

    pub fn peer_v6(subnet: u8) -> Ipv6Addr {
        Ipv6Addr::new(0xfd00, subnet as u16, 0, 0, 0, 0, 0, 2)
    }

    /// The host end's MAC address: frames crafted in the namespace must carry it, or the
    /// host drops them as addressed to another host.
    pub fn host_mac(subnet: u8) -> String {
        format!("02:4e:58:00:{subnet:02x}:01")
    }

    pub fn peer_mac(subnet: u8) -> String {
        format!("02:4e:58:00:{subnet:02x}:02")
    }

    pub fn subnet(&self) -> u8 {
        self.subnet
    }

    /// Runs `work` on a thread that has joined the namespace, and returns its result.
    pub fn run_in_namespace<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce() -> std::io::Result<T> + Send + 'static,
    {
        self.spawn_in_namespace(work)
            .join()
            .map_err(|_| anyhow::anyhow!("the traffic thread panicked"))?
    }

    /// Starts `work` on a thread that joins the namespace first.
    pub fn spawn_in_namespace<T, F>(&self, work: F) -> thread::JoinHandle<Result<T>>
    where
        T: Send + 'static,
        F: FnOnce() -> std::io::Result<T> + Send + 'static,
    {
        let path = format!("/run/netns/{}", self.namespace);
        thread::spawn(move || -> Result<T> {
            let ns = File::open(&path).with_context(|| format!("opening {path}"))?;
            // Only this thread moves: network namespaces are per thread.
            setns(ns, CloneFlags::CLONE_NEWNET).context("joining the namespace")?;
            Ok(work()?)
        })
    }
}

impl Drop for VethNet {
    fn drop(&mut self) {
        // Deleting the namespace deletes the peer end, and with it the pair; the explicit
        // link delete covers a pair whose peer never reached the namespace.
        let _ = ip(&["link", "del", self.host_if.as_str()]);
        let _ = ip(&["netns", "del", &self.namespace]);
    }
}
