//! Bounds-checked reads from a frame: the only way [`crate::parse`] touches packet bytes.

/// A frame the parser can read.
///
/// Implementations return `None` for any read that does not lie entirely within the frame;
/// that is the parser's only notion of "truncated". In the kernel the check is a comparison
/// against `data_end`, which is what the verifier needs to see before each access.
pub trait Frame {
    /// The frame's length in bytes, as received.
    fn len(&self) -> usize;

    /// The `N` bytes starting at `offset`, or `None` if they extend past the frame.
    fn bytes<const N: usize>(&self, offset: usize) -> Option<[u8; N]>;

    /// Whether the frame has no bytes at all.
    #[inline(always)]
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the frame holds at least `end` bytes.
    #[inline(always)]
    fn reaches(&self, end: usize) -> bool {
        end <= self.len()
    }

    /// Runs `state`'s step up to `turns` times, until a step returns `false`. The XDP
    /// program runs the turns through `bpf_loop`, whose body the verifier checks once, so a
    /// walk may be as long as the frame allows.
    #[inline(always)]
    fn repeat<S: Step<Self>>(&self, turns: u32, state: &mut S)
    where
        Self: Sized,
    {
        for _ in 0..turns {
            if !state.step(self) {
                break;
            }
        }
    }
}

/// One turn of a walk over a frame: see [`Frame::repeat`].
pub trait Step<F: Frame> {
    /// Takes one step; `false` ends the walk.
    fn step(&mut self, frame: &F) -> bool;
}

/// A frame held in memory: the host-side reference.
#[derive(Clone, Copy, Debug)]
pub struct SliceFrame<'a> {
    data: &'a [u8],
}

impl<'a> SliceFrame<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Self { data }
    }
}

impl Frame for SliceFrame<'_> {
    fn len(&self) -> usize {
        self.data.len()
    }

    fn bytes<const N: usize>(&self, offset: usize) -> Option<[u8; N]> {
        let end = offset.checked_add(N)?;
        self.data.get(offset..end)?.try_into().ok()
    }
}
