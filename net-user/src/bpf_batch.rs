//! Batched map operations (BPF_MAP_LOOKUP_BATCH, BPF_MAP_UPDATE_BATCH, BPF_MAP_DELETE_BATCH),
//! which aya 0.14 does not wrap: thousands of elements per system call where one each would
//! take thousands of calls. Arrays and hash maps have them (Linux 5.6 and later); LPM tries
//! do not.

use std::{
    io,
    os::fd::{AsRawFd as _, BorrowedFd},
};

use aya::Pod;

use crate::bpf_syscall::{BPF_MAP_DELETE_BATCH, BPF_MAP_LOOKUP_BATCH, BPF_MAP_UPDATE_BATCH, bpf};

/// Elements per call, at most: a table of tens of thousands takes a few calls.
const CHUNK: usize = 4096;
/// Bytes of values per call, at most, so that large values (a 128 KiB array element, a
/// per-CPU value on hundreds of CPUs) do not make large buffers.
const CHUNK_BYTES: usize = 4 << 20;
/// Elements per lookup call, at least: a hash map's lookup needs room for its fullest
/// bucket (ENOSPC otherwise), which holds a few.
const LOOKUP_MIN: usize = 256;

/// Elements per call for values of `value_bytes` each, at least `least`.
fn chunk(value_bytes: usize, least: usize) -> usize {
    (CHUNK_BYTES / value_bytes.max(1)).clamp(least, CHUNK)
}

/// The batch part of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Where a lookup goes on from: an array's last index read, a hash map's next bucket. Both
/// are a u32 (a hash map's is, whatever its keys).
type Token = u32;

/// One BPF_MAP_LOOKUP_BATCH: up to `capacity` elements after `after` (from the start when
/// `None`). Returns how many it read, and where the next call goes on from (`None`: the map
/// has no more).
///
/// # Safety
/// `keys` must have room for `capacity` of the map's keys, `values` for `capacity` of its
/// values as the kernel copies them out (a per-CPU map's: one per possible CPU, each padded
/// to 8 bytes).
unsafe fn lookup_raw(
    fd: BorrowedFd<'_>,
    after: Option<Token>,
    keys: *mut u8,
    values: *mut u8,
    capacity: usize,
) -> io::Result<(usize, Option<Token>)> {
    let token = after.unwrap_or(0);
    let mut next: Token = 0;
    let mut attr = BatchAttr {
        in_batch: after.map_or(0, |_| (&raw const token) as u64),
        out_batch: (&raw mut next) as u64,
        keys: keys as u64,
        values: values as u64,
        count: capacity as u32,
        map_fd: fd.as_raw_fd() as u32,
        ..BatchAttr::default()
    };
    // SAFETY: the buffers are as the caller promises; the tokens are u32s, as the kernel
    // reads and writes them for arrays (u32 keys) and hash maps (bucket numbers).
    match unsafe { bpf(BPF_MAP_LOOKUP_BATCH, &mut attr) } {
        Ok(_) => Ok((attr.count as usize, Some(next))),
        // The last batch: what it read, and nothing after.
        Err(error) if error.raw_os_error() == Some(libc::ENOENT) => Ok((attr.count as usize, None)),
        Err(error) => Err(error),
    }
}

/// Which elements a lookup visits: those after a token (from the first when `None`), at most
/// so many.
type Range = (Option<Token>, usize);

/// The elements of the map `fd` that `range` says: `each(key, values)` with `per_key` values
/// `V` per key, `stride` bytes apart in the kernel's copy. Returns how many it visited.
fn for_each_values<K: Pod, V: Pod>(
    fd: BorrowedFd<'_>,
    (mut after, limit): Range,
    per_key: usize,
    stride: usize,
    mut each: impl FnMut(&K, &[V]),
) -> io::Result<usize> {
    let chunk = chunk(per_key * stride, LOOKUP_MIN);
    // SAFETY: `K` is Pod: zeros are a valid key.
    let mut keys = vec![unsafe { std::mem::zeroed::<K>() }; chunk];
    let mut bytes = vec![0u8; chunk * per_key * stride];
    let mut values = Vec::with_capacity(per_key);
    let mut visited = 0;
    while visited < limit {
        // SAFETY: room for `chunk` keys `K` (the map's, as the caller promises) and `chunk`
        // x `per_key` values of `stride` bytes.
        let (got, next) = unsafe {
            lookup_raw(
                fd,
                after,
                keys.as_mut_ptr().cast(),
                bytes.as_mut_ptr(),
                chunk.min(limit - visited),
            )
        }?;
        visited += got;
        for (index, key) in keys.iter().take(got).enumerate() {
            values.clear();
            values.extend((0..per_key).map(|each| {
                let at = (index * per_key + each) * stride;
                // SAFETY: `at + size_of::<V>()` is inside `bytes`, which holds `got` x
                // `per_key` values of `stride` bytes; V is Pod, so any bytes are a value.
                unsafe { std::ptr::read_unaligned(bytes.as_ptr().add(at).cast::<V>()) }
            }));
            each(key, &values);
        }
        match next {
            Some(next) if got > 0 => after = Some(next),
            _ => break,
        }
    }
    Ok(visited)
}

/// Elements `first .. first + count` of the array map `fd`, whose values are `V`.
pub fn read_array<V: Pod>(fd: BorrowedFd<'_>, first: u32, count: u32) -> io::Result<Vec<V>> {
    let mut values = Vec::with_capacity(count as usize);
    // An array's token is the last index read: the first batch starts after `first - 1`.
    let range = (first.checked_sub(1), count as usize);
    let read = for_each_values(fd, range, 1, size_of::<V>(), |_: &u32, value: &[V]| {
        values.push(value[0]);
    })?;
    if read < count as usize {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("the array ended after {read} of {count} elements"),
        ));
    }
    Ok(values)
}

/// Elements `first .. first + count` of the per-CPU array `fd`, whose values are `V`:
/// `each(index, values)`, with one value per possible CPU (`cpus` of them).
pub fn read_per_cpu_array<V: Pod>(
    fd: BorrowedFd<'_>,
    first: u32,
    count: u32,
    cpus: usize,
    each: impl FnMut(&u32, &[V]),
) -> io::Result<()> {
    let range = (first.checked_sub(1), count as usize);
    // The kernel pads each CPU's value to 8 bytes.
    let stride = size_of::<V>().next_multiple_of(8);
    for_each_values(fd, range, cpus, stride, each).map(|_| ())
}

/// Every element of the map `fd`, whose keys are `K` and values `V`: `each(key, value)`.
pub fn for_each<K: Pod, V: Pod>(
    fd: BorrowedFd<'_>,
    mut each: impl FnMut(&K, &V),
) -> io::Result<()> {
    let all = (None, usize::MAX);
    for_each_values(fd, all, 1, size_of::<V>(), |key, value: &[V]| {
        each(key, &value[0]);
    })
    .map(|_| ())
}

/// Every element of the per-CPU map `fd` (hash or array), whose keys are `K` and values `V`:
/// `each(key, values)`, with one value per possible CPU (`cpus` of them).
pub fn for_each_per_cpu<K: Pod, V: Pod>(
    fd: BorrowedFd<'_>,
    cpus: usize,
    each: impl FnMut(&K, &[V]),
) -> io::Result<()> {
    let stride = size_of::<V>().next_multiple_of(8);
    for_each_values(fd, (None, usize::MAX), cpus, stride, each).map(|_| ())
}

/// One BPF_MAP_UPDATE_BATCH of `count` elements (flags BPF_ANY: create or replace).
///
/// # Safety
/// `keys` must hold `count` of the map's keys, `values` `count` of its values as the kernel
/// reads them in (a per-CPU map's: one per possible CPU, each padded to 8 bytes).
unsafe fn update_raw(
    fd: BorrowedFd<'_>,
    keys: *const u8,
    values: *const u8,
    count: usize,
) -> io::Result<()> {
    let mut attr = BatchAttr {
        keys: keys as u64,
        values: values as u64,
        count: count as u32,
        map_fd: fd.as_raw_fd() as u32,
        ..BatchAttr::default()
    };
    // SAFETY: as the caller promises.
    unsafe { bpf(BPF_MAP_UPDATE_BATCH, &mut attr) }.map(|_| ())
}

/// Writes each `(key, value)` of `elements` into the map `fd`, whose keys are `K` and values
/// `V`, a chunk per system call. On an error, the elements before the failing one are
/// written, and none after.
pub fn update<'a, K: Pod, V: Pod>(
    fd: BorrowedFd<'_>,
    elements: impl IntoIterator<Item = (K, &'a V)>,
) -> io::Result<()> {
    let chunk = chunk(size_of::<V>(), 1);
    let mut keys = Vec::with_capacity(chunk);
    let mut values = Vec::with_capacity(chunk);
    let flush = |keys: &mut Vec<K>, values: &mut Vec<V>| {
        if keys.is_empty() {
            return Ok(());
        }
        // SAFETY: `keys` and `values` hold as many `K` keys and `V` values, the map's as the
        // caller promises.
        let result =
            unsafe { update_raw(fd, keys.as_ptr().cast(), values.as_ptr().cast(), keys.len()) };
        keys.clear();
        values.clear();
        result
    };
    for (key, value) in elements {
        keys.push(key);
        values.push(*value);
        if keys.len() == chunk {
            flush(&mut keys, &mut values)?;
        }
    }
    flush(&mut keys, &mut values)
}

/// Sets the per-CPU array `fd`'s elements `indices` to zero on every CPU (`cpus` possible
/// ones), whose values are `value_size` bytes.
pub fn zero_per_cpu(
    fd: BorrowedFd<'_>,
    indices: &[u32],
    value_size: usize,
    cpus: usize,
) -> io::Result<()> {
    let stride = value_size.next_multiple_of(8) * cpus;
    let chunk = chunk(stride, 1);
    let zeros = vec![0u8; chunk.min(indices.len()) * stride];
    for indices in indices.chunks(chunk) {
        // SAFETY: `indices` holds u32s (an array's keys) and `zeros` at least as many
        // per-CPU values of `cpus` values of `value_size` bytes, each padded to 8.
        unsafe { update_raw(fd, indices.as_ptr().cast(), zeros.as_ptr(), indices.len()) }?;
    }
    Ok(())
}

/// Deletes `keys` from the hash map `fd`, whose keys are `K`, a chunk per system call. Every
/// key must be there: a missing one is an error (ENOENT), and the keys after it stay.
pub fn delete<K: Pod>(fd: BorrowedFd<'_>, keys: &[K]) -> io::Result<()> {
    for keys in keys.chunks(CHUNK) {
        let mut attr = BatchAttr {
            keys: keys.as_ptr() as u64,
            count: keys.len() as u32,
            map_fd: fd.as_raw_fd() as u32,
            ..BatchAttr::default()
        };
        // SAFETY: `keys` points to `count` keys `K`, the map's as the caller promises.
        unsafe { bpf(BPF_MAP_DELETE_BATCH, &mut attr) }?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::fd::{AsFd as _, OwnedFd};

    use super::*;
    use crate::bpf_syscall::{MapSpec, create_map};

    const HASH: u32 = 1;
    const ARRAY: u32 = 2;
    const PERCPU_HASH: u32 = 5;
    const PERCPU_ARRAY: u32 = 6;

    /// A value bigger than a word, not a multiple of 8 bytes.
    type Value = [u32; 5];

    /// A map of `map_type`, u32 keys, values of `value_size` bytes; `None` (the test skipped)
    /// without root, which creating BPF maps needs.
    fn map(test: &str, map_type: u32, value_size: usize, max_entries: u32) -> Option<OwnedFd> {
        if !nix::unistd::geteuid().is_root() {
            assert!(
                std::env::var("CI").is_err(),
                "{test}: BPF maps need root under CI"
            );
            eprintln!("SKIPPED {test}: creating BPF maps needs root");
            return None;
        }
        let spec = MapSpec {
            map_type,
            key_size: 4,
            value_size: value_size as u32,
            max_entries,
            ..MapSpec::default()
        };
        Some(create_map(spec).expect("a BPF map"))
    }

    fn value(key: u32) -> Value {
        [key, key * 3, !key, 7, key ^ 0x5a5a]
    }

    #[test]
    fn an_array_is_written_and_read_in_batches() {
        let test = "an_array_is_written_and_read_in_batches";
        let Some(array) = map(test, ARRAY, size_of::<Value>(), 10_000) else {
            return;
        };
        let values: Vec<Value> = (0..10_000).map(value).collect();
        update(
            array.as_fd(),
            (0..10_000).map(|key| (key, &values[key as usize])),
        )
        .expect("update batch");
        assert_eq!(
            read_array::<Value>(array.as_fd(), 0, 10_000).expect("all of it"),
            values
        );
        assert_eq!(
            read_array::<Value>(array.as_fd(), 4_321, 5_000).expect("a part"),
            values[4_321..9_321]
        );
        let past = read_array::<Value>(array.as_fd(), 9_000, 1_001).expect_err("past the end");
        assert_eq!(past.kind(), io::ErrorKind::UnexpectedEof, "{past}");
    }

    #[test]
    fn a_hash_map_is_written_listed_and_deleted_from_in_batches() {
        let test = "a_hash_map_is_written_listed_and_deleted_from_in_batches";
        let Some(hash) = map(test, HASH, size_of::<Value>(), 10_000) else {
            return;
        };
        let keys: Vec<u32> = (0..9_000).map(|key| key * 7919).collect();
        let values: Vec<Value> = keys.iter().copied().map(value).collect();
        update(hash.as_fd(), keys.iter().copied().zip(&values)).expect("update batch");
        let listed = |hash: &OwnedFd| {
            let mut listed = Vec::new();
            for_each(hash.as_fd(), |key: &u32, value: &Value| {
                listed.push((*key, *value))
            })
            .expect("lookup batch");
            listed.sort();
            listed
        };
        let mut want: Vec<(u32, Value)> = keys.iter().copied().zip(values).collect();
        want.sort();
        assert_eq!(listed(&hash), want);

        let (gone, kept): (Vec<_>, Vec<_>) = want.iter().partition(|(key, _)| key % 2 == 0);
        let gone: Vec<u32> = gone.iter().map(|(key, _)| *key).collect();
        delete(hash.as_fd(), &gone).expect("delete batch");
        assert_eq!(listed(&hash), kept);
        let missing = delete(hash.as_fd(), &gone[..1]).expect_err("a key not there");
        assert_eq!(missing.raw_os_error(), Some(libc::ENOENT), "{missing}");
    }

    #[test]
    fn per_cpu_maps_are_read_zeroed_and_listed_in_batches() {
        let test = "per_cpu_maps_are_read_zeroed_and_listed_in_batches";
        let Some(array) = map(test, PERCPU_ARRAY, size_of::<Value>(), 1_000) else {
            return;
        };
        let cpus = aya::util::nr_cpus().expect("possible CPUs");
        // Each CPU's value padded to 8 bytes, as the kernel lays them out.
        let stride = size_of::<Value>().next_multiple_of(8);
        let per_cpu = |key: u32| {
            let mut bytes = vec![0u8; cpus * stride];
            for cpu in 0..cpus {
                let value = value(key + cpu as u32);
                for (at, word) in value.iter().enumerate() {
                    let at = cpu * stride + at * 4;
                    bytes[at..at + 4].copy_from_slice(&word.to_ne_bytes());
                }
            }
            bytes
        };
        let keys: Vec<u32> = (0..1_000).collect();
        let bytes: Vec<u8> = keys.iter().flat_map(|&key| per_cpu(key)).collect();
        // SAFETY: 1,000 u32 keys and as many per-CPU values, laid out as the kernel reads them.
        unsafe { update_raw(array.as_fd(), keys.as_ptr().cast(), bytes.as_ptr(), 1_000) }
            .expect("update batch");
        zero_per_cpu(array.as_fd(), &[3, 500, 999], size_of::<Value>(), cpus).expect("zeroed");

        let mut read = Vec::new();
        read_per_cpu_array(array.as_fd(), 2, 998, cpus, |key, values: &[Value]| {
            read.push((*key, values.to_vec()));
        })
        .expect("lookup batch");
        assert_eq!(read.len(), 998);
        for (key, values) in read {
            let want: Vec<Value> = match key {
                3 | 500 | 999 => vec![[0; 5]; cpus],
                key => (0..cpus).map(|cpu| value(key + cpu as u32)).collect(),
            };
            assert_eq!(values, want, "element {key}");
        }

        let Some(hash) = map(test, PERCPU_HASH, size_of::<Value>(), 1_000) else {
            return;
        };
        let keys: Vec<u32> = (0..700).map(|key| key * 31 + 1).collect();
        let bytes: Vec<u8> = keys.iter().flat_map(|&key| per_cpu(key)).collect();
        // SAFETY: 700 u32 keys and as many per-CPU values, laid out as the kernel reads them.
        unsafe { update_raw(hash.as_fd(), keys.as_ptr().cast(), bytes.as_ptr(), 700) }
            .expect("update batch");
        let mut listed = Vec::new();
        for_each_per_cpu(hash.as_fd(), cpus, |key: &u32, values: &[Value]| {
            assert_eq!(values.len(), cpus);
            for (cpu, value) in values.iter().enumerate() {
                assert_eq!(*value, self::value(key + cpu as u32), "key {key}");
            }
            listed.push(*key);
        })
        .expect("lookup batch");
        listed.sort();
        assert_eq!(listed, keys);
    }
}
