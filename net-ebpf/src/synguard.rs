//! The SYN-flood guard (see `net_common::synguard`): SYNs to guarded ports answered with a
//! SYN-ACK carrying the kernel's own cookie, sent back out (XDP_TX); ACKs to a listener
//! checked against their cookie.
//!
//! Only untagged frames with a plain IPv4 header (no options) or an IPv6 header followed
//! directly by TCP are answered; anything else goes to the stack, whose own cookies then
//! apply. The SYN-ACK carries the MSS option alone: connections made through it have no
//! window scaling, SACK or timestamps, as with the stack's cookies without timestamps.

use aya_ebpf::{
    bindings::{BPF_F_CURRENT_NETNS, bpf_sock, tcphdr, xdp_action},
    cty::c_void,
    helpers::{
        bpf_sk_release, bpf_skc_lookup_tcp, bpf_tcp_check_syncookie, bpf_tcp_gen_syncookie,
        bpf_xdp_adjust_tail,
    },
    macros::map,
    maps::{Array, PerCpuArray, ProgramArray},
    programs::XdpContext,
};
use net_common::{
    parse::{Fragment, L3, L4, Packet, Transport},
    rule::address_words,
    synguard::{SynGuard, SynGuardCounters, tcp_flag},
};

#[map(name = "SYNGUARD")]
static SYNGUARD: Array<SynGuard> = Array::pinned(1, 0);

#[map(name = "SYNGUARD_STATS")]
static SYNGUARD_STATS: PerCpuArray<SynGuardCounters> = PerCpuArray::pinned(1, 0);

/// `netxdp_synguard`, for the packets [`wants`] picks.
#[map(name = "SYNGUARD_PROG")]
pub static SYNGUARD_PROG: ProgramArray = ProgramArray::pinned(1, 0);

const ETH_LEN: usize = 14;
/// Room the frame is given after the TCP header's start, so that the verifier can prove any
/// header length it allows ([`tcp_len`]) within the frame.
const TCP_ROOM: usize = 80;
/// The SYN-ACK's TCP header: 20 bytes and the MSS option.
const SYNACK_TCP_LEN: usize = 24;
const TCP_LISTEN: u32 = 10;

/// Whether `packet`, which the rules passed, is a SYN or an ACK to a guarded port.
#[inline(always)]
pub fn wants(packet: &Packet) -> bool {
    if packet.l4 != L4::Tcp || packet.vlan_tags != 0 || packet.fragment != Fragment::None {
        return false;
    }
    let Transport::Ports { dst, tcp_flags, .. } = packet.transport() else {
        return false;
    };
    let kind = tcp_flags & (tcp_flag::SYN | tcp_flag::ACK | tcp_flag::RST | tcp_flag::FIN);
    if kind != tcp_flag::SYN && kind != tcp_flag::ACK {
        return false;
    }
    SYNGUARD
        .get(0)
        .is_some_and(|guard| guard.enabled != 0 && guard.guards(dst))
}

/// What the guard did with a packet.
pub enum Guarded {
    /// Answered: the frame is now the SYN-ACK.
    Answered,
    Pass,
    Drop,
}

/// Answers a SYN, or checks an ACK, of `packet` (the frame in `ctx`, parsed).
#[inline(always)]
pub fn guard(ctx: &XdpContext, packet: &Packet) -> Guarded {
    let Transport::Ports { tcp_flags, .. } = packet.transport() else {
        return Guarded::Pass;
    };
    let ipv6 = packet.l3 == L3::Ipv6;
    let ip_len = if ipv6 { 40 } else { 20 };
    if !plain_headers(ctx, ipv6) {
        count(|c| c.unanswered += 1);
        return Guarded::Pass;
    }
    let Some(sk) = listener(ctx, packet, ipv6) else {
        if tcp_flags & tcp_flag::SYN != 0 {
            count(|c| c.unanswered += 1);
        }
        return Guarded::Pass;
    };
    // The cookie helpers read the TCP header by a length only known at run time: the frame is
    // made long enough for any first, so that the verifier can prove it.
    // The frame's length as parsed: arithmetic on the context's end pointer is not allowed.
    let frame_len = packet.len as i32;
    let grown = ((ETH_LEN + ip_len + TCP_ROOM) as i32 - frame_len).max(0);
    // SAFETY: the context is the program's own.
    if grown > 0 && unsafe { bpf_xdp_adjust_tail(ctx.ctx, grown) } != 0 {
        release(sk);
        count(|c| c.unanswered += 1);
        return Guarded::Pass;
    }
    let outcome = if tcp_flags & tcp_flag::SYN != 0 {
        answer(ctx, sk, ip_len, frame_len + grown)
    } else {
        check(ctx, sk, ip_len)
    };
    release(sk);
    match outcome {
        Guarded::Answered => count(|c| c.cookies += 1),
        Guarded::Pass => {
            if tcp_flags & tcp_flag::SYN != 0 {
                count(|c| c.unanswered += 1);
            } else {
                count(|c| c.acks_valid += 1);
            }
        }
        Guarded::Drop => count(|c| c.acks_invalid += 1),
    }
    if !matches!(outcome, Guarded::Answered) && grown > 0 {
        // SAFETY: as above; back to the frame as it came.
        unsafe { bpf_xdp_adjust_tail(ctx.ctx, -grown) };
    }
    outcome
}

/// Whether the frame's IP header is one the guard answers: IPv4 without options, or IPv6
/// followed directly by TCP.
#[inline(always)]
fn plain_headers(ctx: &XdpContext, ipv6: bool) -> bool {
    let data = ctx.data();
    if data + ETH_LEN + 40 > ctx.data_end() {
        return ipv6_short_is_ipv4(ctx, data, ipv6);
    }
    // SAFETY: within the bounds checked above.
    unsafe {
        if ipv6 {
            *((data + ETH_LEN + 6) as *const u8) == 6
        } else {
            *((data + ETH_LEN) as *const u8) == 0x45
        }
    }
}

/// A frame too short for an IPv6 header may still hold an IPv4 one and its TCP header.
#[inline(always)]
fn ipv6_short_is_ipv4(ctx: &XdpContext, data: usize, ipv6: bool) -> bool {
    if ipv6 || data + ETH_LEN + 20 > ctx.data_end() {
        return false;
    }
    // SAFETY: within the bounds checked above.
    unsafe { *((data + ETH_LEN) as *const u8) == 0x45 }
}

/// The socket the packet is for, if it is a listener; `None` otherwise (an established
/// connection's, which the guard leaves alone, or none).
#[inline(always)]
fn listener(ctx: &XdpContext, packet: &Packet, ipv6: bool) -> Option<*mut bpf_sock> {
    let Transport::Ports { src, dst, .. } = packet.transport() else {
        return None;
    };
    // `struct bpf_sock_tuple`: addresses, then ports, in network order. Every word is written
    // (an IPv4 tuple's unread tail with the addresses' other words): a zeroed array became a
    // call to a byte-at-a-time `memset`, on every SYN.
    let [s0, s1, s2, s3] = address_words(&packet.src);
    let [d0, d1, d2, d3] = address_words(&packet.dst);
    let [sport_high, sport_low] = src.to_be_bytes();
    let [dport_high, dport_low] = dst.to_be_bytes();
    let ports = u32::from_ne_bytes([sport_high, sport_low, dport_high, dport_low]);
    let (mut tuple, size) = if ipv6 {
        ([s0, s1, s2, s3, d0, d1, d2, d3, ports], 36)
    } else {
        ([s0, d0, ports, s1, s2, s3, d1, d2, d3], 12)
    };
    // SAFETY: the tuple outlives the call; its size is the one the family's union member has.
    let sk = unsafe {
        bpf_skc_lookup_tcp(
            ctx.ctx.cast(),
            tuple.as_mut_ptr().cast(),
            size,
            BPF_F_CURRENT_NETNS as u64,
            0,
        )
    };
    if sk.is_null() {
        return None;
    }
    // SAFETY: a socket the lookup returned, held until released.
    if unsafe { (*sk).state } != TCP_LISTEN {
        release(sk);
        return None;
    }
    Some(sk)
}

#[inline(always)]
fn release(sk: *mut bpf_sock) {
    // SAFETY: a socket a lookup returned, released once.
    unsafe { bpf_sk_release(sk.cast()) };
}

/// The TCP header's length, from its data offset, if it is a valid one (20 to 60 bytes).
/// Written as 20 plus a masked multiple of 4, which the verifier bounds to [20, 80] whatever
/// the optimiser makes of the range check: hence [`TCP_ROOM`].
#[inline(always)]
fn tcp_len(th: usize) -> Option<u32> {
    // SAFETY: the caller checked the header's bounds.
    let offset = unsafe { *((th + 12) as *const u8) } >> 4;
    let extra = (offset as u32).wrapping_sub(5) & 0x0f;
    (extra <= 10).then_some(20 + extra * 4)
}

/// Turns the SYN in the frame (`frame_len` bytes) into its SYN-ACK, with the listener's
/// cookie.
#[inline(always)]
fn answer(ctx: &XdpContext, sk: *mut bpf_sock, ip_len: usize, frame_len: i32) -> Guarded {
    let data = ctx.data();
    let th = data + ETH_LEN + ip_len;
    if th + TCP_ROOM > ctx.data_end() {
        return Guarded::Pass;
    }
    let Some(len) = tcp_len(th) else {
        return Guarded::Pass;
    };
    // SAFETY: the IP header and TCP_ROOM bytes after it are within the frame (checked above).
    let value = unsafe {
        bpf_tcp_gen_syncookie(
            sk.cast(),
            (data + ETH_LEN) as *mut c_void,
            ip_len as u32,
            th as *mut tcphdr,
            len,
        )
    };
    if value < 0 {
        return Guarded::Pass;
    }
    let cookie = value as u32;
    let mss = (value >> 32) as u16;
    // SAFETY: within the bounds checked above; the frame is rewritten in place, fields read
    // before they are overwritten.
    unsafe {
        let seq = u32::from_be((th as *const u32).add(1).read_unaligned());
        let ports = (th as *const u32).read_unaligned();
        let eth = data as *mut [u8; 6];
        let (to, from) = (eth.read_unaligned(), eth.add(1).read_unaligned());
        eth.write_unaligned(from);
        eth.add(1).write_unaligned(to);
        let mut sum = if ip_len == 40 {
            ipv6_reply(data + ETH_LEN)
        } else {
            ipv4_reply(data + ETH_LEN)
        };
        // Ports swapped, the cookie as our sequence number, theirs acknowledged.
        (th as *mut u32).write_unaligned(ports.rotate_left(16));
        (th as *mut u32).add(1).write_unaligned(cookie.to_be());
        (th as *mut u32)
            .add(2)
            .write_unaligned(seq.wrapping_add(1).to_be());
        let header: [u8; 16] = [
            0x60, // 24 bytes
            tcp_flag::SYN | tcp_flag::ACK,
            0xff,
            0xff, // window
            0,
            0, // checksum, below
            0,
            0, // urgent pointer
            2,
            4,
            (mss >> 8) as u8,
            mss as u8, // MSS
            0,
            0,
            0,
            0,
        ];
        ((th + 12) as *mut [u8; 12]).write_unaligned([
            header[0], header[1], header[2], header[3], header[4], header[5], header[6], header[7],
            header[8], header[9], header[10], header[11],
        ]);
        sum += SYNACK_TCP_LEN as u64 + 6;
        for word in 0..SYNACK_TCP_LEN / 2 {
            sum += u16::from_be(((th + word * 2) as *const u16).read_unaligned()) as u64;
        }
        ((th + 16) as *mut u16).write_unaligned(fold(sum).to_be());
    }
    let shrink = (ETH_LEN + ip_len + SYNACK_TCP_LEN) as i32 - frame_len;
    // SAFETY: the context is the program's own; the frame only shrinks.
    if unsafe { bpf_xdp_adjust_tail(ctx.ctx, shrink) } != 0 {
        return Guarded::Drop;
    }
    Guarded::Answered
}

/// The IPv4 header of the reply, over the SYN's at `ip`: addresses swapped, fresh fields, its
/// checksum. Returns the sum of the TCP pseudo-header's addresses.
///
/// # Safety
/// `ip` points at 20 writable bytes.
#[inline(always)]
unsafe fn ipv4_reply(ip: usize) -> u64 {
    // SAFETY: the caller's promise.
    unsafe {
        let addrs = (ip + 12) as *mut u32;
        let (from, to) = (addrs.read_unaligned(), addrs.add(1).read_unaligned());
        addrs.write_unaligned(to);
        addrs.add(1).write_unaligned(from);
        let total = (20 + SYNACK_TCP_LEN) as u16;
        let fixed: [u8; 12] = [
            0x45,
            0,
            (total >> 8) as u8,
            total as u8,
            0,
            0, // id
            0x40,
            0, // don't fragment
            64,
            6, // TTL, TCP
            0,
            0, // checksum, below
        ];
        (ip as *mut [u8; 12]).write_unaligned(fixed);
        let mut sum = 0u64;
        for word in 0..10 {
            sum += u16::from_be(((ip + word * 2) as *const u16).read_unaligned()) as u64;
        }
        ((ip + 10) as *mut u16).write_unaligned(fold(sum).to_be());
        let mut pseudo = 0u64;
        for word in 0..4 {
            pseudo += u16::from_be(((ip + 12 + word * 2) as *const u16).read_unaligned()) as u64;
        }
        pseudo
    }
}

/// The IPv6 header of the reply, over the SYN's at `ip`; returns the sum of the TCP
/// pseudo-header's addresses.
///
/// # Safety
/// `ip` points at 40 writable bytes.
#[inline(always)]
unsafe fn ipv6_reply(ip: usize) -> u64 {
    // SAFETY: the caller's promise.
    unsafe {
        let addrs = (ip + 8) as *mut [u8; 16];
        let (from, to) = (addrs.read_unaligned(), addrs.add(1).read_unaligned());
        addrs.write_unaligned(to);
        addrs.add(1).write_unaligned(from);
        let payload = SYNACK_TCP_LEN as u16;
        (ip as *mut [u8; 8]).write_unaligned([
            0x60,
            0,
            0,
            0,
            (payload >> 8) as u8,
            payload as u8,
            6,
            64,
        ]);
        let mut pseudo = 0u64;
        for word in 0..16 {
            pseudo += u16::from_be(((ip + 8 + word * 2) as *const u16).read_unaligned()) as u64;
        }
        pseudo
    }
}

/// The ones' complement of the ones'-complement sum `sum`.
#[inline(always)]
fn fold(mut sum: u64) -> u16 {
    for _ in 0..4 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Checks the ACK in the frame against the listener's cookies.
#[inline(always)]
fn check(ctx: &XdpContext, sk: *mut bpf_sock, ip_len: usize) -> Guarded {
    let data = ctx.data();
    let th = data + ETH_LEN + ip_len;
    if th + TCP_ROOM > ctx.data_end() {
        return Guarded::Pass;
    }
    let Some(len) = tcp_len(th) else {
        return Guarded::Drop;
    };
    // SAFETY: the IP header and TCP_ROOM bytes after it are within the frame (checked above).
    let valid = unsafe {
        bpf_tcp_check_syncookie(
            sk.cast(),
            (data + ETH_LEN) as *mut c_void,
            ip_len as u32,
            th as *mut tcphdr,
            len,
        )
    };
    if valid == 0 {
        Guarded::Pass
    } else {
        Guarded::Drop
    }
}

#[inline(always)]
fn count(add: impl FnOnce(&mut SynGuardCounters)) {
    if let Some(counters) = SYNGUARD_STATS.get_ptr_mut(0) {
        // SAFETY: this CPU's own copy; XDP does not preempt itself.
        add(unsafe { &mut *counters });
    }
}

/// The verdict for the guard's outcome.
#[inline(always)]
pub fn action(outcome: &Guarded) -> u32 {
    match outcome {
        Guarded::Answered => xdp_action::XDP_TX,
        Guarded::Pass => xdp_action::XDP_PASS,
        Guarded::Drop => xdp_action::XDP_DROP,
    }
}
