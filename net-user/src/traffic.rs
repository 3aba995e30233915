//! Real traffic from kernel sockets, for `demo` and the end-to-end tests: ICMP and ICMPv6
//! echo, UDP bursts and streams, and TCP connection attempts. Every loop is bounded by a
//! count.

use std::{
    io,
    mem::MaybeUninit,
    net::{IpAddr, SocketAddr, TcpStream, UdpSocket},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use net_common::checksum::internet_checksum;
use socket2::{Domain, Protocol, Socket, Type};

/// Sends `count` UDP datagrams of `payload` to `to`; returns how many the kernel accepted.
pub fn udp_burst(to: SocketAddr, count: usize, payload: &[u8]) -> io::Result<usize> {
    udp_burst_with(udp_sender(to)?, to, count, payload)
}

/// [`udp_burst`] from the address `from` (one of this namespace's), as fast as the socket
/// takes them.
pub fn udp_burst_from(
    from: IpAddr,
    to: SocketAddr,
    count: usize,
    payload: &[u8],
) -> io::Result<usize> {
    udp_burst_with(
        UdpSocket::bind(SocketAddr::new(from, 0))?,
        to,
        count,
        payload,
    )
}

fn udp_burst_with(
    socket: UdpSocket,
    to: SocketAddr,
    count: usize,
    payload: &[u8],
) -> io::Result<usize> {
    let mut sent = 0;
    for _ in 0..count {
        socket.send_to(payload, to)?;
        sent += 1;
    }
    Ok(sent)
}

/// A socket on an ephemeral port of `to`'s family.
fn udp_sender(to: SocketAddr) -> io::Result<UdpSocket> {
    let bind: SocketAddr = match to {
        SocketAddr::V4(_) => "0.0.0.0:0".parse().expect("literal address"),
        SocketAddr::V6(_) => "[::]:0".parse().expect("literal address"),
    };
    UdpSocket::bind(bind)
}

/// Sends datagrams of `payload` to `to`, some 30,000 a second, until `stop` is set or `limit`
/// have gone: a steady stream for a test to change the filter under. Returns how many the
/// kernel accepted.
pub fn udp_stream(
    to: SocketAddr,
    payload: &[u8],
    stop: &AtomicBool,
    limit: usize,
) -> io::Result<usize> {
    let socket = udp_sender(to)?;
    let mut sent = 0;
    while sent < limit && !stop.load(Ordering::Relaxed) {
        for _ in 0..32 {
            socket.send_to(payload, to)?;
            sent += 1;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(sent)
}

/// A bound UDP socket that counts what reaches it: proof that datagrams got through.
pub struct UdpSink {
    socket: UdpSocket,
}

impl UdpSink {
    pub fn bind(at: SocketAddr) -> io::Result<Self> {
        Ok(Self {
            socket: UdpSocket::bind(at)?,
        })
    }

    /// Gives the socket room for `bytes` of datagrams (root may exceed `net.core.rmem_max`):
    /// for a flood read while it comes, which a default buffer would drop from.
    pub fn with_room(self, bytes: usize) -> io::Result<Self> {
        nix::sys::socket::setsockopt(&self.socket, nix::sys::socket::sockopt::RcvBufForce, &bytes)
            .map_err(io::Error::from)?;
        Ok(self)
    }

    /// Receives until `expected` datagrams came (waiting for them up to `patience`, a bound
    /// for a stalled machine, not a deadline), then until nothing more has come for `quiet`;
    /// returns how many came. With `expected` 0, the same as [`UdpSink::drain`].
    pub fn receive(
        &self,
        expected: usize,
        patience: Duration,
        quiet: Duration,
    ) -> io::Result<usize> {
        let deadline = Instant::now() + patience;
        let mut buffer = [0u8; 2048];
        let mut received = 0;
        while received < expected {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(received);
            }
            if !self.receive_within(left, &mut buffer)? {
                return Ok(received);
            }
            received += 1;
        }
        Ok(received + self.drain(quiet)?)
    }

    /// Receives until nothing has arrived for `quiet`; returns how many datagrams came.
    pub fn drain(&self, quiet: Duration) -> io::Result<usize> {
        let mut buffer = [0u8; 2048];
        let mut received = 0;
        while self.receive_within(quiet, &mut buffer)? {
            received += 1;
        }
        Ok(received)
    }

    /// Receives one datagram into `buffer`, waiting at most `wait`: whether one came.
    fn receive_within(&self, wait: Duration, buffer: &mut [u8]) -> io::Result<bool> {
        self.socket.set_read_timeout(Some(wait))?;
        match self.socket.recv(buffer) {
            Ok(_) => Ok(true),
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Ok(false)
            }
            Err(error) => Err(error),
        }
    }
}

/// Sends `count` echo requests to `to`, one at a time, each waiting up to `wait` for its
/// reply; returns the number of replies. Like `ping -c COUNT -W WAIT`, from a raw socket.
pub fn ping(to: IpAddr, count: u16, wait: Duration) -> io::Result<u16> {
    let (domain, protocol, request_type, reply_type) = match to {
        IpAddr::V4(_) => (Domain::IPV4, Protocol::ICMPV4, 8u8, 0u8),
        IpAddr::V6(_) => (Domain::IPV6, Protocol::ICMPV6, 128u8, 129u8),
    };
    let socket = Socket::new(domain, Type::RAW, Some(protocol))?;
    let ident = (std::process::id() & 0xffff) as u16;
    let target = SocketAddr::new(to, 0).into();
    let mut replies = 0;
    for seq in 0..count {
        let mut request = [0u8; 16];
        request[0] = request_type;
        request[4..6].copy_from_slice(&ident.to_be_bytes());
        request[6..8].copy_from_slice(&seq.to_be_bytes());
        request[8..].copy_from_slice(b"netxdp!!");
        if to.is_ipv4() {
            // The kernel fills in the ICMPv6 checksum; ICMP's is ours to compute.
            let sum = internet_checksum(&request);
            request[2..4].copy_from_slice(&sum.to_be_bytes());
        }
        socket.send_to(&request, &target)?;
        if await_reply(&socket, to.is_ipv4(), reply_type, ident, seq, wait)? {
            replies += 1;
        }
    }
    Ok(replies)
}

fn await_reply(
    socket: &Socket,
    ipv4: bool,
    reply_type: u8,
    ident: u16,
    seq: u16,
    wait: Duration,
) -> io::Result<bool> {
    let deadline = Instant::now() + wait;
    let mut buf = [MaybeUninit::<u8>::uninit(); 1500];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        socket.set_read_timeout(Some(left))?;
        let len = match socket.recv(&mut buf) {
            Ok(len) => len,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(false);
            }
            Err(e) => return Err(e),
        };
        // SAFETY: recv initialised the first `len` bytes.
        let data: Vec<u8> = buf[..len]
            .iter()
            .map(|b| unsafe { b.assume_init() })
            .collect();
        // Raw IPv4 sockets deliver the IP header too; raw IPv6 sockets do not.
        let icmp = if ipv4 {
            let header_len = usize::from(data.first().copied().unwrap_or(0) & 0x0f) * 4;
            data.get(header_len..).unwrap_or(&[])
        } else {
            &data[..]
        };
        if icmp.len() >= 8
            && icmp[0] == reply_type
            && icmp[4..6] == ident.to_be_bytes()
            && icmp[6..8] == seq.to_be_bytes()
        {
            return Ok(true);
        }
    }
}

/// Attempts `count` TCP connections to `to` (a closed port answers with a reset: one SYN
/// each way), each bounded by `wait`; returns how many were accepted.
pub fn tcp_connects(to: SocketAddr, count: usize, wait: Duration) -> usize {
    (0..count)
        .filter(|_| TcpStream::connect_timeout(&to, wait).is_ok())
        .count()
}

/// Sends whole Ethernet frames, as built, out of `iface` (an AF_PACKET socket): for frames no
/// socket of the stack would send, such as malformed ones.
pub fn send_frames(iface: &str, frames: &[Vec<u8>]) -> io::Result<usize> {
    let ifindex = nix::net::if_::if_nametoindex(iface).map_err(io::Error::from)?;
    let socket = Socket::new(Domain::PACKET, Type::RAW, None)?;
    let mut storage = socket2::SockAddrStorage::zeroed();
    // SAFETY: sockaddr_ll is one of this platform's sockaddr types, and fits the storage.
    let link = unsafe { storage.view_as::<libc::sockaddr_ll>() };
    link.sll_family = libc::AF_PACKET as u16;
    link.sll_ifindex = ifindex as i32;
    link.sll_halen = 6;
    let length = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: the storage holds an initialised sockaddr_ll of `length` bytes.
    let address = unsafe { socket2::SockAddr::new(storage, length) };
    let mut sent = 0;
    for frame in frames {
        socket.send_to(frame, &address)?;
        sent += 1;
    }
    Ok(sent)
}

/// Pins the calling thread to the CPU it runs on. A veth pair, and XDP in skb mode, receive a
/// frame on the CPU that sent it: a pinned sender has netxdp meet all its frames on one CPU,
/// so that state kept per CPU (a flow's admission) sees them in the order sent.
pub fn pin_to_this_cpu() -> io::Result<()> {
    // SAFETY: sched_getcpu has no preconditions.
    let cpu = unsafe { libc::sched_getcpu() };
    let cpu = usize::try_from(cpu).map_err(|_| io::Error::last_os_error())?;
    let mut one = nix::sched::CpuSet::new();
    one.set(cpu).map_err(io::Error::from)?;
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &one).map_err(io::Error::from)
}
