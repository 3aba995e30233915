//! [`Frame`] over the live packet, for net-common's parser.

use aya_ebpf::{
    cty::c_void, helpers::bpf_loop, macros::map, maps::PerCpuArray, programs::XdpContext,
};
use net_common::frame::{Frame, Step};

/// Where a walk's state lives while `bpf_loop` runs it, one per CPU. On the stack, the state's
/// exact values (the offsets of each path through the parser) would make the verifier check
/// the loop body again for every turn; read from a map value they are unknown, and one check
/// covers every turn.
#[map(name = "WALK")]
static WALK: PerCpuArray<WalkState> = PerCpuArray::with_max_entries(1, 0);

/// Room for a walk's state: 64 bytes, 8-aligned.
#[repr(C, align(8))]
struct WalkState([u8; 64]);

/// The packet between `data` and `data_end`.
#[derive(Clone, Copy)]
pub struct XdpFrame {
    start: usize,
    end: usize,
}

impl XdpFrame {
    #[inline(always)]
    pub fn new(ctx: &XdpContext) -> Self {
        Self {
            start: ctx.data(),
            end: ctx.data_end(),
        }
    }
}

impl Frame for XdpFrame {
    #[inline(always)]
    fn len(&self) -> usize {
        self.end - self.start
    }

    #[inline(always)]
    fn bytes<const N: usize>(&self, offset: usize) -> Option<[u8; N]> {
        // The verifier accepts a packet read only after comparing the pointer it reads
        // through against data_end, so the check is written on pointers, not lengths.
        let at = self.start + offset;
        if at + N > self.end {
            return None;
        }
        // SAFETY: [at, at + N) lies within the packet, as just checked.
        Some(unsafe { core::ptr::read_unaligned(at as *const [u8; N]) })
    }

    /// The turns run through `bpf_loop`: the verifier checks [`turn`] once, however many
    /// turns the walk takes, where an unrolled loop would be checked once per turn and path.
    #[inline(always)]
    fn repeat<S: Step<Self>>(&self, turns: u32, state: &mut S) {
        const {
            assert!(size_of::<S>() <= size_of::<WalkState>());
            assert!(align_of::<S>() <= align_of::<WalkState>());
        }
        let Some(scratch) = WALK.get_ptr_mut(0) else {
            return;
        };
        let scratch = scratch.cast::<S>();
        // SAFETY: the scratch value is this CPU's own, large and aligned enough for `S`
        // (checked above); `S` is moved there and back bitwise, and XDP does not preempt
        // itself.
        unsafe { scratch.write(core::ptr::read(state)) };
        let mut walk = Walk {
            frame: *self,
            state: scratch,
        };
        // SAFETY: `turn::<S>` has the signature bpf_loop calls, and `walk` outlives the call;
        // then the state goes back where it came from.
        unsafe {
            bpf_loop(turns, turn::<S> as *mut c_void, (&raw mut walk).cast(), 0);
            core::ptr::write(state, scratch.read());
        }
    }
}

/// What [`turn`] is given: the frame (its packet pointers, spilled to the caller's stack,
/// keep their type for the verifier) and where the walk's state is.
#[repr(C)]
struct Walk<S> {
    frame: XdpFrame,
    state: *mut S,
}

/// One turn of [`XdpFrame::repeat`]: 0 to go on, 1 to stop, as bpf_loop wants.
#[inline(never)]
extern "C" fn turn<S: Step<XdpFrame>>(_index: u32, walk: *mut c_void) -> i64 {
    // SAFETY: bpf_loop passes back the pointer `repeat` gave it, whose state pointer is the
    // scratch map value `repeat` filled.
    let (frame, state) = unsafe {
        let walk = &*walk.cast::<Walk<S>>();
        (walk.frame, &mut *walk.state)
    };
    if state.step(&frame) { 0 } else { 1 }
}
